"""Export a trained model to ONNX or ``torch.export`` with dynamic batch, H and W, verified on the spot.

onnxruntime cannot run the ``DFT`` node that the dynamo exporter emits for ``rfft2``/``irfft2`` when H, W
are dynamic ("Shape mismatch attempting to re-use buffer"), so SSTM's spectral branch is exported with
its exact partial-DFT matmul form (:func:`s2mnet.models.spectral.band_filter_matmul`, same weights, same
output). The ``official`` SSTM flavour (full complex FFT over (W, C) + resizing) is not exportable.

Every export is written to a temporary file, reloaded (onnxruntime for ONNX, ``torch.export.load`` for
``.pt2``) and compared with the PyTorch eager model at each check size; only when every maximum absolute
difference is within ``atol`` is the file moved onto the requested path. A mismatch leaves nothing
behind.

An ONNX file exported from a run carries what a predictor needs in its ``metadata_props``
(:data:`METADATA_PREFIX` keys, see :func:`deployment_metadata`), so ``s2m predict --model FILE.onnx``
(:mod:`s2mnet.deploy.onnx_predict`) needs nothing else.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from s2mnet import __version__
from s2mnet.errors import ExportError
from s2mnet.io_utils import atomic_path
from s2mnet.models.fusion import fold_batchnorm
from s2mnet.models.sstm import SSTM
from s2mnet.models.sstm_official import OfficialSSTM

FORMATS = ("onnx", "torch-export")
#: Default (H, W) check sizes: a square one and a non-square one that is no multiple of 32.
DEFAULT_CHECK_SIZES = ((64, 64), (96, 80))
#: ONNX ``metadata_props`` keys written by :func:`deployment_metadata` all start with this.
METADATA_PREFIX = "s2mnet."
ATOL = 1e-4
# Example batch of the trace: 2, because torch.export specialises a size-1 axis to the constant 1.
_EXAMPLE_BATCH = 2


def prepare_for_export(model: nn.Module) -> nn.Module:
    """Eval-mode copy of ``model`` whose SSTMs use the matmul spectral form (exportable) and whose
    BatchNorms are folded into the convolutions before them (:func:`s2mnet.models.fusion.fold_batchnorm`:
    the same function to float rounding, one node fewer per convolution; the export is checked against
    the unfolded model)."""
    model = copy.deepcopy(model).eval()
    if any(isinstance(m, OfficialSSTM) for m in model.modules()):
        raise ExportError("the 'official' SSTM flavour (complex FFT over (W, C)) cannot be exported to ONNX")
    fold_batchnorm(model)
    for module in model.modules():
        if isinstance(module, SSTM):
            module.set_spectral_impl("matmul")
    return model


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example_size: tuple[int, int] = (64, 64),
    check_sizes: Sequence[tuple[int, int]] = ((64, 64),),
    atol: float = ATOL,
    metadata: dict[str, str] | None = None,
) -> dict[str, float]:
    """Export ``model`` to ``path`` (ONNX, dynamic batch/H/W) and verify it with onnxruntime.

    Args:
        model: a model from :func:`s2mnet.models.create_model` (its ``config['in_channels']`` is used).
        path: the ``.onnx`` file; written only if the check passes (atomically).
        example_size: (H, W) of the tracing example.
        check_sizes: (H, W) sizes on which the ONNX output is compared with the PyTorch eager output.
        atol: maximum allowed absolute difference of the logits.
        metadata: stored in the model's ``metadata_props``.

    Returns:
        ``{"HxW": max_abs_diff}`` for each checked size.

    Raises:
        ExportError: the flavour cannot be exported, or the outputs differ by more than ``atol``.
    """
    import onnx
    import onnxruntime as ort

    reference = copy.deepcopy(model).eval()
    exportable = prepare_for_export(model)
    example = torch.randn(_EXAMPLE_BATCH, _in_channels(model), *example_size)
    path = Path(path)
    with atomic_path(path) as tmp:
        with _trace_errors(path, example_size), _quiet_exporter():
            program = torch.onnx.export(
                exportable,
                (example,),
                dynamo=True,
                input_names=["image"],
                output_names=["logits"],
                dynamic_shapes=_dynamic_axes(),
                external_data=False,
                verbose=False,
            )
        program.save(str(tmp))
        if metadata:
            proto = onnx.load(str(tmp))
            onnx.helper.set_model_props(proto, metadata)
            onnx.save(proto, str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        diffs = _compare(
            reference, lambda x: session.run(None, {"image": x.numpy()})[0], check_sizes, path, atol
        )
    return diffs


def export_torch(
    model: nn.Module,
    path: str | Path,
    example_size: tuple[int, int] = (64, 64),
    check_sizes: Sequence[tuple[int, int]] = ((64, 64),),
    atol: float = ATOL,
) -> dict[str, float]:
    """Export ``model`` with ``torch.export`` (dynamic batch/H/W) to a ``.pt2`` file, reload and verify.

    The SSTMs keep their matmul spectral form here too: one traced graph for every deployment format.
    Reload with ``torch.export.load(path).module()`` (no pickled code is executed).

    Args and returns: as :func:`export_onnx`.
    """
    reference = copy.deepcopy(model).eval()
    exportable = prepare_for_export(model)
    example = torch.randn(_EXAMPLE_BATCH, _in_channels(model), *example_size)
    path = Path(path)
    with atomic_path(path) as tmp:
        with _trace_errors(path, example_size), _quiet_exporter():
            program = torch.export.export(exportable, (example,), dynamic_shapes=_dynamic_axes())
        torch.export.save(program, tmp)
        reloaded = torch.export.load(tmp).module()

        def run_reloaded(x: torch.Tensor) -> np.ndarray:
            with torch.no_grad():
                return reloaded(x).numpy()

        diffs = _compare(reference, run_reloaded, check_sizes, path, atol)
    return diffs


def deployment_metadata(run_config: dict[str, Any], plan: dict[str, Any]) -> dict[str, str]:
    """What a predictor needs besides the network, as ONNX ``metadata_props`` (string values).

    Keys (all prefixed by :data:`METADATA_PREFIX`): ``version`` (s2mnet), ``model`` (name),
    ``in_channels``, ``num_classes`` (1 = sigmoid output, K > 1 = softmax over K classes),
    ``class_names`` (JSON list), ``threshold`` (binary foreground where p > threshold), ``plan`` (the
    run's plan as JSON: preprocessing, ``mode`` resize/patch, ``size``/``patch_size``, ``overlap``).
    """
    from s2mnet.engine.predictor import THRESHOLD

    model_config = run_config.get("model", {})
    num_classes = int(plan.get("num_classes", run_config.get("num_classes", 1)))
    in_channels = int(plan.get("in_channels", model_config.get("in_channels", 3)))
    values = {
        "version": __version__,
        "model": str(model_config.get("name", "unknown")),
        "in_channels": str(in_channels),
        "num_classes": str(num_classes),
        "class_names": json.dumps(run_config.get("classes") or []),
        "threshold": str(THRESHOLD),
        "plan": json.dumps({**plan, "in_channels": in_channels, "num_classes": num_classes}),
        "input": "image: float32 (batch, in_channels, H, W), preprocessed as the plan says",
        "output": "logits: float32 (batch, max(num_classes, 1), H, W)",
    }
    return {METADATA_PREFIX + key: value for key, value in values.items()}


def export_run(
    run_dir: str | Path,
    output: str | Path,
    which: str = "best",
    fmt: str = "onnx",
    check_sizes: Sequence[tuple[int, int]] = DEFAULT_CHECK_SIZES,
    atol: float = ATOL,
    folds: Sequence[int] | None = None,
) -> dict[str, float]:
    """Export a run's checkpoint (``s2m export``), verified at ``check_sizes``.

    A cross-validation run exports the ensemble of its folds as one model
    (:class:`s2mnet.engine.ensemble.FoldEnsemble`: averaged probabilities returned as logits), with the
    metadata of a single run, so that ``s2m predict --model`` runs it unchanged (docs/deploy.md).

    Args:
        run_dir: a folder written by ``s2m train``.
        output: the ``.onnx`` (``fmt="onnx"``) or ``.pt2`` (``fmt="torch-export"``) file.
        which: ``"best"`` or ``"last"`` checkpoint.
        fmt: one of :data:`FORMATS`.
        check_sizes: (H, W) sizes compared with PyTorch; the first one is the tracing example.
        atol: maximum allowed absolute difference of the logits.
        folds: the folds of a cross-validation run to ensemble (``None`` → all).

    Returns:
        ``{"HxW": max_abs_diff}`` for each checked size.
    """
    from s2mnet.engine.checkpoint import load_model
    from s2mnet.engine.rundir import run_plan

    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
    if not check_sizes:
        raise ExportError("at least one check size is needed")
    model, config = load_model(run_dir, which=which, device="cpu", **({"folds": folds} if folds else {}))
    example_size = tuple(check_sizes[0])
    if fmt == "onnx":
        metadata = deployment_metadata(config, run_plan(Path(run_dir), config))
        return export_onnx(model, output, example_size, check_sizes, atol, metadata)
    return export_torch(model, output, example_size, check_sizes, atol)


def _in_channels(model: nn.Module) -> int:
    return int(getattr(model, "config", {}).get("in_channels", 3))


def _dynamic_axes() -> tuple[dict[int, Any], ...]:
    """Batch, H and W dynamic; ``Dim.AUTO`` lets ``torch.export`` derive the valid range itself (the
    smallest H, W the network accepts depends on its depth, e.g. 33 for five levels)."""
    return ({0: torch.export.Dim.AUTO, 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO},)


def _compare(
    reference: nn.Module,
    exported,
    check_sizes: Sequence[tuple[int, int]],
    path: Path,
    atol: float,
) -> dict[str, float]:
    """Max |exported − reference| on a random input of each size; above ``atol`` → :class:`ExportError`."""
    diffs: dict[str, float] = {}
    generator = torch.Generator().manual_seed(0)
    for height, width in check_sizes:
        x = torch.randn(2, _in_channels(reference), height, width, generator=generator)
        with torch.no_grad():
            expected = reference(x).numpy()
        try:
            got = np.asarray(exported(x))
        except Exception as exc:  # onnxruntime / torch runtime errors on this size
            raise ExportError(
                f"{path}: the exported model fails at {height}×{width} ({_first_line(exc)})"
            ) from None
        if got.shape != expected.shape:
            raise ExportError(f"{path}: exported output shape {got.shape} != PyTorch {expected.shape}")
        diff = float(np.abs(got - expected).max())
        diffs[f"{height}x{width}"] = diff
        if not diff <= atol:
            raise ExportError(
                f"{path}: exported output differs from PyTorch by {diff:.2e} at {height}×{width} "
                f"(> {atol:g}); nothing written"
            )
    return diffs


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's notices that concern no s2mnet model ("torchvision is not installed",
    PyTorch-internal deprecation warnings); errors still propagate."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _trace_errors(path: Path, example_size: tuple[int, int]) -> Iterator[None]:
    """A failed trace (e.g. an example smaller than the network accepts) → one-line :class:`ExportError`."""
    try:
        yield
    except Exception as exc:
        height, width = example_size
        raise ExportError(f"{path}: export at {height}×{width} failed ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
