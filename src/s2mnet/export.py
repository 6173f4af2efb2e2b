"""Export a model to ONNX with dynamic batch, H and W, and check it against PyTorch.

onnxruntime cannot run the ``DFT`` node that the dynamo exporter emits for ``rfft2``/``irfft2`` when H, W
are dynamic ("Shape mismatch attempting to re-use buffer"), so SSTM's spectral branch is exported with
its exact partial-DFT matmul form (:func:`s2mnet.models.spectral.band_filter_matmul`, same weights, same
output). The ``official`` SSTM flavour (full complex FFT over (W, C) + resizing) is not exportable.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from s2mnet.errors import S2MError
from s2mnet.io_utils import atomic_path
from s2mnet.models.sstm import SSTM
from s2mnet.models.sstm_official import OfficialSSTM


class ExportError(S2MError):
    """A model that cannot be exported, or an export that does not reproduce PyTorch."""


def prepare_for_export(model: nn.Module) -> nn.Module:
    """Eval-mode copy of ``model`` whose SSTMs use the matmul spectral form (exportable)."""
    model = copy.deepcopy(model).eval()
    if any(isinstance(m, OfficialSSTM) for m in model.modules()):
        raise ExportError("the 'official' SSTM flavour (complex FFT over (W, C)) cannot be exported to ONNX")
    for module in model.modules():
        if isinstance(module, SSTM):
            module.set_spectral_impl("matmul")
    return model


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example_size: tuple[int, int] = (64, 64),
    check_sizes: tuple[tuple[int, int], ...] = ((64, 64),),
    atol: float = 1e-4,
) -> dict[str, float]:
    """Export ``model`` to ``path`` (ONNX, dynamic batch/H/W) and verify it with onnxruntime.

    Args:
        model: a model from :func:`s2mnet.models.create_model` (its ``config['in_channels']`` is used).
        path: the ``.onnx`` file, written atomically.
        example_size: (H, W) of the tracing example.
        check_sizes: (H, W) sizes on which the ONNX output is compared with the PyTorch eager output.
        atol: maximum allowed absolute difference.

    Returns:
        ``{"HxW": max_abs_diff}`` for each checked size.

    Raises:
        ExportError: the flavour cannot be exported, or the outputs differ by more than ``atol``.
    """
    import onnxruntime as ort

    reference = copy.deepcopy(model).eval()
    exportable = prepare_for_export(model)
    in_channels = int(getattr(model, "config", {}).get("in_channels", 3))
    example = torch.randn(1, in_channels, *example_size)
    height, width = torch.export.Dim("height", min=2, max=4096), torch.export.Dim("width", min=2, max=4096)
    batch = torch.export.Dim("batch", min=1, max=1024)
    path = Path(path)
    with atomic_path(path) as tmp:
        program = torch.onnx.export(
            exportable,
            (example,),
            dynamo=True,
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={"x": {0: batch, 2: height, 3: width}},
            external_data=False,
        )
        program.save(str(tmp))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diffs: dict[str, float] = {}
    generator = torch.Generator().manual_seed(0)
    for h, w in check_sizes:
        x = torch.randn(1, in_channels, h, w, generator=generator)
        with torch.no_grad():
            expected = reference(x).numpy()
        got = session.run(None, {"image": x.numpy()})[0]
        diff = float(np.abs(got - expected).max())
        diffs[f"{h}x{w}"] = diff
        if not diff <= atol:
            raise ExportError(f"{path}: ONNX output differs from PyTorch by {diff:.2e} at {h}×{w} (> {atol})")
    return diffs
