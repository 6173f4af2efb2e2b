"""``s2m predict --model FILE.onnx``: segment images with an exported model and onnxruntime.

Needs numpy, Pillow, onnxruntime (and scikit-image for CLAHE plans, tifffile for TIFF inputs); torch,
MONAI and albumentations are never imported. The ONNX file written by ``s2m export`` carries the run's
plan, class count and threshold in its ``metadata_props`` (:func:`s2mnet.deploy.export.deployment_metadata`),
so the predictor reproduces the torch ``s2m predict`` step by step:

1. :func:`s2mnet.data.io.read_image` → :func:`s2mnet.data.preprocessing.preprocess` (the same
   functions the torch path calls);
2. resize to the plan's size, or gaussian-blended sliding windows in patch mode, optionally with 8-way
   test-time augmentation (:func:`s2mnet.data.preprocessing.predict_whole_image`, numpy ports of
   the torch/MONAI steps);
3. sigmoid/softmax, back to the image's size, threshold (binary, {0, 255} PNG) or argmax (class-index
   PNG), written as ``OUTPUT/<stem>.png`` (:mod:`s2mnet.data.mask_files`); optionally the probabilities
   and overlays of :mod:`s2mnet.inference.extras`.

It runs on the CPU, or on a GPU with ``device="cuda"`` when the ``onnxruntime-gpu`` package provides
``CUDAExecutionProvider`` (:func:`onnx_providers`).

Masks agree with the torch predictor's except for pixels whose probability lies within float rounding
(~1e-6) of the threshold.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2mnet.data.checks import mask_fractions, prediction_warnings
from s2mnet.data.io import read_image
from s2mnet.data.mask_files import MaskOutput, check_inputs, input_images, output_paths
from s2mnet.data.preprocessing import (
    BatchPredictor,
    dihedral_average,
    logits_to_probs,
    predict_whole_image,
    preprocess,
    probs_to_mask,
)
from s2mnet.errors import DataError, S2MError, first_line
from s2mnet.inference.extras import PredictionExtras
from s2mnet.io_utils import parse_json

# Same spelling as s2mnet.deploy.export.METADATA_PREFIX (not imported: that module imports torch).
_PREFIX = "s2mnet."
_CUDA_PROVIDER = "CUDAExecutionProvider"


@dataclass(frozen=True)
class OnnxSegmenter:
    """An exported model ready for inference: the onnxruntime session and its deployment metadata."""

    path: Path
    session: Any
    plan: dict
    num_classes: int
    threshold: float
    class_names: list[str]

    @property
    def binary(self) -> bool:
        """One output channel: sigmoid and a threshold (else softmax and argmax)."""
        return self.num_classes == 1

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """``(B, C, h, w)`` float32 → ``(B, K, h, w)`` logits.

        Raises:
            S2MError: onnxruntime failed, or the network gave another number of channels than the
                metadata's class count (naming the model file).
        """
        try:
            logits = self.session.run(None, {"image": np.ascontiguousarray(batch, np.float32)})[0]
        except Exception as exc:  # onnxruntime raises its own exception types
            raise S2MError(
                f"{self.path}: onnxruntime failed on this model ({first_line(exc)[:200]})"
            ) from None
        if logits.ndim != 4 or logits.shape[1] != self.num_classes:
            raise S2MError(_channel_mismatch(self.path, logits.shape, self.num_classes))
        return logits

    def probs(self, batch: np.ndarray) -> np.ndarray:
        """``(B, C, h, w)`` float32 → ``(B, K, h, w)`` probabilities (sigmoid / softmax)."""
        return logits_to_probs(self.logits(batch))

    def predict_mask(self, image: np.ndarray, tta: bool = False, source: Path | None = None) -> np.ndarray:
        """``(H, W)`` uint8 mask of a :func:`read_image` array, at the image's size."""
        return self.mask_of(self.predict_probs(image, tta=tta, source=source))

    def predict_probs(self, image: np.ndarray, tta: bool = False, source: Path | None = None) -> np.ndarray:
        """``(K, H, W)`` float32 probabilities of a :func:`read_image` array, at the image's size."""
        try:
            prepared = preprocess(image, self.plan)
        except ValueError as exc:
            raise DataError(f"{source or 'image'}: {exc} (the model {self.path.name} expects that)") from None
        predictor: BatchPredictor = dihedral_average(self.probs) if tta else self.probs
        return predict_whole_image(prepared.transpose(2, 0, 1), self.plan, predictor).astype(np.float32)

    def mask_of(self, probs: np.ndarray) -> np.ndarray:
        """The hard mask of :meth:`predict_probs` output (threshold, or argmax for multi-class)."""
        return probs_to_mask(probs, self.threshold)


def load_onnx_model(path: str | os.PathLike, device: str = "cpu") -> OnnxSegmenter:
    """Open an ``s2m export`` ONNX file with onnxruntime and read its deployment metadata.

    Args:
        path: the ``.onnx`` file.
        device: ``"cpu"``, ``"cuda"`` (onnxruntime's ``CUDAExecutionProvider``, from the
            ``onnxruntime-gpu`` package) or ``"auto"`` (CUDA when that provider is installed, else CPU).

    Raises:
        S2MError: a missing file, a file that is not ONNX, an ONNX model without s2mnet metadata (not
            written by ``s2m export``), one whose input does not match its metadata, an unknown device,
            or ``"cuda"`` without the CUDA provider.
    """
    path = Path(path)
    if not path.is_file():
        raise S2MError(f"{path}: ONNX model file not found")
    providers = onnx_providers(device)
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise S2MError(f"{path}: not a valid ONNX model ({first[:200]})") from None
    meta = session.get_modelmeta().custom_metadata_map
    if _PREFIX + "plan" not in meta:
        raise S2MError(f"{path}: no s2mnet metadata; export the model with `s2m export --run RUN`")
    try:
        plan = parse_json(meta[_PREFIX + "plan"], f"{path} (metadata {_PREFIX}plan)")
        num_classes = int(meta[_PREFIX + "num_classes"])
        threshold = float(meta.get(_PREFIX + "threshold", "0.5"))
        class_names = parse_json(meta.get(_PREFIX + "class_names", "[]"), f"{path} (metadata)")
    except (KeyError, ValueError) as exc:
        raise S2MError(f"{path}: damaged s2mnet metadata ({exc})") from None
    _check_metadata(path, plan, num_classes, threshold)
    if plan.get("label_mode") == "multilabel":
        raise S2MError(f"{path}: multi-label (overlapping regions) models are not supported by --model yet")
    _check_input(path, session, int(plan.get("in_channels", 3)))
    declared = session.get_outputs()[0].shape
    if len(declared) != 4 or (isinstance(declared[1], int) and declared[1] != num_classes):
        raise S2MError(_channel_mismatch(path, declared, num_classes))
    return OnnxSegmenter(path, session, plan, num_classes, threshold, class_names)


def onnx_providers(device: str) -> list[str]:
    """onnxruntime execution providers for ``--device`` (``auto``, ``cpu`` or ``cuda``).

    Raises:
        S2MError: an unknown device, or ``cuda`` when ``onnxruntime.get_available_providers()`` has no
            ``CUDAExecutionProvider`` (the CPU-only ``onnxruntime`` package is installed).
    """
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):
        raise S2MError(f"--device {device}: the ONNX predictor runs on auto, cpu or cuda")
    has_cuda = _CUDA_PROVIDER in ort.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise S2MError(
            "--device cuda: onnxruntime's CUDA provider is not installed (this onnxruntime runs on the "
            "CPU only); pip install onnxruntime-gpu, or use --device cpu"
        )
    cpu = ["CPUExecutionProvider"]
    return [_CUDA_PROVIDER, *cpu] if device != "cpu" and has_cuda else cpu


def predict_onnx_paths(
    model_path: str | os.PathLike,
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    tta: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    warn: Callable[[str], None] | None = None,
    device: str = "cpu",
    probabilities: bool = False,
    overlays: bool = False,
) -> list[Path]:
    """Segment image files / folders with an exported ONNX model; masks as ``s2m predict --run`` writes.

    Args:
        model_path: an ``.onnx`` file written by ``s2m export``.
        inputs: image files or folders (their image files, sorted by name), or one of those.
        output_dir: where the masks go (created if needed).
        tta: 8-way dihedral test-time augmentation.
        overwrite: allow replacing existing mask files of the same names.
        progress: show a progress bar; ``None`` → when standard error is a terminal.
        warn: called with each warning line (:func:`s2mnet.data.checks.prediction_warnings`).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (:func:`onnx_providers`).
        probabilities: also write ``OUTPUT/probabilities/<stem>.npy`` (:mod:`s2mnet.inference.extras`).
        overlays: also write ``OUTPUT/overlays/<stem>.png``, the prediction's contour on the image.

    Returns:
        The written mask paths, in input order. All or nothing, as ``s2m predict --run``
        (:class:`~s2mnet.data.mask_files.MaskOutput`).
    """
    images = input_images(inputs)
    check_inputs(images)
    outputs = output_paths(images, output_dir, overwrite)
    extras = PredictionExtras(images, output_dir, overwrite, probabilities, overlays)
    model = load_onnx_model(model_path, device)
    pairs: Any = list(zip(images, outputs, strict=True))
    if progress or (progress is None and sys.stderr.isatty()):
        from tqdm import tqdm

        pairs = tqdm(pairs, desc="predict", unit="image")
    written, fractions = [], []
    with MaskOutput(output_dir, overwrite) as staged:
        for position, (source, target) in enumerate(pairs):
            image = read_image(source)
            probs = model.predict_probs(image, tta=tta, source=source)
            mask = model.mask_of(probs)
            extras.write(staged, position, probs, image, mask)
            fractions.extend(mask_fractions([mask]))
            staged.write(target, mask, model.binary)
            written.append(target)
    for line in prediction_warnings(fractions) if warn is not None else []:
        warn(line)
    return written


def _check_metadata(path: Path, plan: Any, num_classes: int, threshold: float) -> None:
    """The metadata's plan and counts pass the run-folder checks (no huge allocation from a hostile file)."""
    from s2mnet.engine.rundir import NUM_CLASSES_RANGE, validate_stored_plan

    try:
        validate_stored_plan(plan, path, "plan.")
    except S2MError as exc:
        raise S2MError(str(exc)) from None
    if not NUM_CLASSES_RANGE[0] <= num_classes <= NUM_CLASSES_RANGE[1] or not 0.0 < threshold < 1.0:
        raise S2MError(f"{path}: damaged s2mnet metadata (num_classes {num_classes}, threshold {threshold})")


def _channel_mismatch(path: Path, shape: Any, num_classes: int) -> str:
    """The one-line error of a network whose output channels disagree with its metadata."""
    shown = "x".join(map(str, shape))
    return (
        f"{path}: the network outputs shape {shown} but its metadata says num_classes={num_classes}; "
        "the file's metadata does not belong to this network (export it again with s2m export)"
    )


def _check_input(path: Path, session: Any, channels: int) -> None:
    """The graph must take ``image`` (B, C, H, W) with C = the metadata's ``in_channels``."""
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != "image" or len(inputs[0].shape) != 4:
        found = ", ".join(f"{item.name}{item.shape}" for item in inputs)
        raise S2MError(f"{path}: expected one input 'image' (batch, channels, H, W), found {found}")
    declared = inputs[0].shape[1]
    if isinstance(declared, int) and declared != channels:
        raise S2MError(
            f"{path}: the network takes {declared} channel(s) but its metadata says in_channels={channels}"
        )
