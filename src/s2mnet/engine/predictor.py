"""Whole-image inference: resize or sliding-window, optional 8-way test-time augmentation.

The plan (``plan.json``) decides how an image of any size is segmented, exactly as it was trained:

* ``mode == "resize"`` (compact objects; the paper's 352×352 protocol): the image is resized to the
  square ``plan["size"]`` with bilinear interpolation, ignoring the aspect ratio as the paper does, and
  the probabilities are resized back to the input's size with bilinear interpolation. Both resizes
  antialias when they shrink (``F.interpolate(antialias=True)``): training shrinks large images with
  an area filter, and plain bilinear sampling of a 6× smaller grid would alias textures (speckle).
* ``mode == "patch"`` (thin structures on large images, e.g. fundus vessels at native resolution):
  MONAI ``sliding_window_inference`` with windows of ``plan["patch_size"]``, ``plan.get("overlap", 0.5)``
  overlap and gaussian blending of the probabilities (so window borders, where a convolutional network
  sees less context, count less).

Test-time augmentation (paper §4, "optional 8-way TTA") averages the probabilities over the 8 elements
of the dihedral group (identity, 3 rotations by 90°, and the same after a horizontal flip), each
undone before averaging. It is applied to every network input (the resized image, or each window), so
it composes with both modes and costs 8 forward passes per input.

Multi-label plans (``plan["label_mode"] == "multilabel"``, overlapping regions, :mod:`s2mnet.data.labels`)
get one sigmoid per channel instead of a softmax, and :func:`probs_to_mask` thresholds each channel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from torch import nn

Predictor = Callable[[torch.Tensor], torch.Tensor]


def predict_probs(
    model: nn.Module,
    image: torch.Tensor | np.ndarray,
    plan: dict,
    tta: bool = False,
    device: str | torch.device | None = None,
    amp: bool = False,
) -> torch.Tensor:
    """Class probabilities of one preprocessed image at its own size.

    Args:
        model: a segmentation network, ``(B, C, h, w)`` → logits ``(B, K, h, w)``; call ``model.eval()``
            before (this function does not change the model's mode).
        image: ``(C, H, W)`` float, already through ``s2mnet.data.preprocess``.
        plan: the run's plan: ``mode`` ("resize" | "patch"), ``size`` or ``patch_size`` (int or
            ``[h, w]``), optional ``overlap`` (default 0.5) and ``sw_batch_size`` (windows per forward
            pass; default the training ``batch_size``, else 4).
        tta: average over the 8 dihedral transforms.
        device: where the input goes (the model must already be there); ``None`` → the device of the
            model's parameters.
        amp: float16 autocast on CUDA (off by default: cuFFT in half precision only supports
            power-of-two sizes, which SSTM's FFT does not guarantee).

    Returns:
        ``(K, H, W)`` float32 probabilities on the CPU: sigmoid for one channel or a multi-label plan,
        softmax over K > 1 otherwise.
    """
    x = torch.as_tensor(image, dtype=torch.float32)
    if x.ndim != 3:
        raise ValueError(f"expected a (C, H, W) image, got shape {tuple(x.shape)}")
    if device is None:
        device = next(iter(model.parameters()), torch.empty(0)).device
    device = torch.device(device)
    height, width = x.shape[-2:]
    x = x[None].to(device)

    predictor: Predictor = _probabilities(model, multilabel=plan.get("label_mode") == "multilabel")
    if tta:
        predictor = _dihedral_average(predictor)
    mode = plan.get("mode", "resize")
    with (
        torch.inference_mode(),
        torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"),
    ):
        if mode == "resize":
            resized = _resize(x, _pair(plan["size"]))
            probs = _resize(predictor(resized), (height, width))
        elif mode == "patch":
            probs = sliding_window_inference(
                x,
                roi_size=_pair(plan["patch_size"]),
                sw_batch_size=int(plan.get("sw_batch_size") or plan.get("batch_size") or 4),
                predictor=predictor,
                overlap=float(plan.get("overlap", 0.5)),
                mode="gaussian",
            )
        else:
            raise ValueError(f"plan mode must be 'resize' or 'patch', got {mode!r}")
    return probs[0].float().cpu()


def probs_to_mask(probs: torch.Tensor, threshold: float = 0.5, multilabel: bool = False) -> np.ndarray:
    """Hard mask from :func:`predict_probs` output.

    Args:
        probs: ``(K, H, W)`` probabilities.
        threshold: for one channel (or each multi-label channel), foreground where ``p > threshold``
            (paper: 0.5). Multi-class masks take the argmax (no threshold).
        multilabel: threshold every channel independently (overlapping regions).

    Returns:
        ``(H, W)`` uint8: {0, 1} for one channel, class indices 0..K-1 for multi-class; ``(K, H, W)``
        uint8 {0, 1} region masks for multi-label.
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    if multilabel:
        return (probs > threshold).to(torch.uint8).cpu().numpy()
    mask = probs[0] > threshold if probs.shape[0] == 1 else probs.argmax(dim=0)
    return mask.to(torch.uint8).cpu().numpy()


def _probabilities(model: nn.Module, multilabel: bool = False) -> Predictor:
    """Network logits → probabilities (sigmoid for one channel or multi-label, softmax otherwise)."""

    def predict(batch: torch.Tensor) -> torch.Tensor:
        # channels-last: the layout the training step and optimize_for_inference's fused blocks use
        logits = model(batch.contiguous(memory_format=torch.channels_last)).float()
        return torch.sigmoid(logits) if multilabel or logits.shape[1] == 1 else torch.softmax(logits, dim=1)

    return predict


def _dihedral_average(predictor: Predictor) -> Predictor:
    """Average ``predictor`` over the 8 flips × 90° rotations of its input, each mapped back."""

    def predict(batch: torch.Tensor) -> torch.Tensor:
        total = None
        for flip in (False, True):
            flipped = batch.flip(-1) if flip else batch
            for turns in range(4):
                out = predictor(torch.rot90(flipped, turns, dims=(-2, -1)))
                out = torch.rot90(out, -turns, dims=(-2, -1))
                out = out.flip(-1) if flip else out
                total = out if total is None else total + out
        return total / 8

    return predict


def _resize(batch: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with antialiasing when shrinking (close to the area filter training uses)."""
    return F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    height, width = size
    return (int(height), int(width))


#: Probability threshold of a foreground pixel (binary and multi-label); multi-class uses argmax.
THRESHOLD = 0.5


def predict_mask(
    model: torch.nn.Module,
    image: np.ndarray,
    plan: dict,
    tta: bool = False,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Hard mask ``(H, W)`` uint8 of one image as read by ``s2mnet.data.read_image``, at its own size.

    Multi-label plans give ``(C, H, W)`` region masks (each channel thresholded at 0.5).

    Preprocesses with ``s2mnet.data.preprocess`` (the same function as training); if that changes the
    size, the probabilities are resized back (bilinear) before thresholding.
    """
    probs = predict_image_probs(model, image, plan, tta=tta, device=device)
    return mask_of_probs(probs, plan)


def predict_image_probs(
    model: torch.nn.Module,
    image: np.ndarray,
    plan: dict,
    tta: bool = False,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """``(K, H, W)`` float32 probabilities of one image as read by ``s2mnet.data.read_image``, at its size.

    ``model`` is any module that maps ``(B, C, h, w)`` to logits (one network or an ensemble of them);
    :func:`mask_of_probs` turns the result into the mask :func:`predict_mask` returns.
    """
    from s2mnet.data.preprocessing import preprocess

    height, width = image.shape[:2]
    probs = predict_probs(model, _channels_first(preprocess(image, plan)), plan, tta=tta, device=device)
    if probs.shape[-2:] != (height, width):
        probs = F.interpolate(probs[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    return probs


def mask_of_probs(probs: torch.Tensor, plan: dict) -> np.ndarray:
    """The hard mask of :func:`predict_image_probs` output (threshold 0.5 or argmax, as the plan says)."""
    return probs_to_mask(probs, THRESHOLD, multilabel=plan.get("label_mode") == "multilabel")


def _channels_first(image: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``preprocess`` output, an ``(H, W, C)`` array, → ``(C, H, W)`` float tensor (tensors are kept)."""
    if isinstance(image, torch.Tensor):
        return image.float()
    return torch.from_numpy(np.ascontiguousarray(np.asarray(image, np.float32).transpose(2, 0, 1)))
