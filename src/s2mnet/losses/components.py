"""The five MASL components (method.md §3), each returning one value per sample.

Every function takes binary-segmentation tensors of shape (N, 1, H, W): ``logits`` (or ``prob`` =
sigmoid(logits)) and a float ``target`` in {0, 1}, and returns a (N,) tensor, so that MASL can apply
per-sample modulation before averaging. The authors' code works on probabilities with log(p + eps);
here the log-likelihood terms use logits (numerically safe for any logit, e.g. ±50).

MONAI is used where it fits: soft Dice / soft IoU are ``monai.losses.DiceLoss`` (``jaccard=True`` for
IoU) and the focal term is ``monai.losses.focal_loss.sigmoid_focal_loss`` (its function form, because γ
differs per sample and the ``FocalLoss`` class takes one scalar γ). The gradient-matching, compactness and
second-difference terms are new in this method and written here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.losses.focal_loss import sigmoid_focal_loss

from s2mnet.losses.descriptors import boundary_band, soft_compactness

COMPONENT_NAMES = ("core", "boundary", "structure", "scale", "texture")

CORE_MIX = (0.4, 0.3, 0.3)
"""core = 0.4·soft Dice + 0.3·soft IoU + 0.3·band-weighted BCE (method.md §3)."""

BAND_BCE_WEIGHT = 5.0
"""BCE pixel weight is 1 + 5·band, band = dilate5(y) − erode5(y)."""

BOUNDARY_OFFSETS = (1, 2, 4)
BOUNDARY_OFFSET_WEIGHTS = (0.5, 0.3, 0.2)

FOCAL_GAMMAS = (3.0, 2.0, 1.5)
"""Focal γ for scale s < 0.05, s < 0.20, otherwise (small structures get the sharpest focus)."""

FOCAL_SCALE_LIMITS = (0.05, 0.20)

_dice = DiceLoss(sigmoid=True, reduction="none")
_soft_iou = DiceLoss(sigmoid=True, jaccard=True, reduction="none")


def _per_sample_mean(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).mean(dim=1)


def core_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Region term: 0.4·softDice + 0.3·softIoU + 0.3·mean((1 + 5·band)·BCE), per sample.

    The weighted BCE is averaged over all pixels (not divided by Σ weight), as in the authors' code.
    """
    dice = _dice(logits, target).flatten(1).mean(dim=1)
    iou = _soft_iou(logits, target).flatten(1).mean(dim=1)
    pixel_weight = 1.0 + BAND_BCE_WEIGHT * boundary_band(target)
    bce = _per_sample_mean(
        F.binary_cross_entropy_with_logits(logits, target, reduction="none") * pixel_weight
    )
    dice_weight, iou_weight, bce_weight = CORE_MIX
    return dice_weight * dice + iou_weight * iou + bce_weight * bce


def _forward_difference(image: torch.Tensor, offset: int, dim: int) -> torch.Tensor:
    length = image.shape[dim]
    return image.narrow(dim, offset, length - offset) - image.narrow(dim, 0, length - offset)


def boundary_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-scale gradient matching Σ_s w_s (mean|Δ_y^s y − Δ_y^s p| + mean|Δ_x^s y − Δ_x^s p|), per sample.

    Δ^s is the forward difference at offset s ∈ {1, 2, 4} with weights (0.5, 0.3, 0.2). An offset not
    smaller than the image side contributes 0.
    """
    total = prob.new_zeros(prob.shape[0])
    for offset, weight in zip(BOUNDARY_OFFSETS, BOUNDARY_OFFSET_WEIGHTS, strict=True):
        for dim in (2, 3):
            if offset < prob.shape[dim]:
                residual = _forward_difference(target, offset, dim) - _forward_difference(prob, offset, dim)
                total = total + weight * _per_sample_mean(residual.abs())
    return total


def structure_loss(prob: torch.Tensor, target_compactness: torch.Tensor) -> torch.Tensor:
    """Shape term |κ(y) − κ(p)| with κ the differentiable compactness of :func:`soft_compactness`, per sample.

    Args:
        prob: (N, 1, H, W) probabilities.
        target_compactness: (N,) κ(y), the ``compactness`` descriptor (same estimator, so p = y gives 0).
    """
    return (target_compactness - soft_compactness(prob)).abs()


def shape_gate(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample factor in [0, 1] that fades the structure term in: the detached soft Dice of p and y.

    Our choice (the paper does not address it): κ(p) is one global number of the whole soft map, so while
    the prediction is still diffuse (background probabilities ≈ 0.1–0.4 over the whole image) its area and
    perimeter are those of the haze, not of an object, and matching κ(y) pushes the background *up*
    against the region terms. On BUSI (5 % foreground) that stalemate kept every probability below 0.5
    for hundreds of steps. Scaling the term by the current overlap (no gradient through the gate) leaves
    it inactive until a region has formed, then lets it act fully as p → y (gate → 1); empty targets,
    whose compactness is undefined, get 0 (the region terms already push those predictions to empty).
    """
    with torch.no_grad():
        overlap = (prob * target).flatten(1).sum(dim=1)
        total = prob.flatten(1).sum(dim=1) + target.flatten(1).sum(dim=1)
        return torch.where(total > 0, 2 * overlap / total.clamp_min(1e-6), torch.zeros_like(total))


def focal_gamma(scale: torch.Tensor) -> torch.Tensor:
    """Per-sample focal γ from the scale descriptor: 3.0 if s < 0.05, 2.0 if s < 0.20, else 1.5."""
    small, medium, large = FOCAL_GAMMAS
    small_limit, medium_limit = FOCAL_SCALE_LIMITS
    gamma = torch.full_like(scale, large)
    gamma = torch.where(scale < medium_limit, torch.full_like(scale, medium), gamma)
    return torch.where(scale < small_limit, torch.full_like(scale, small), gamma)


def scale_loss(logits: torch.Tensor, target: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Focal BCE (no α balancing) with the per-sample γ of :func:`focal_gamma`, mean over pixels."""
    gamma = focal_gamma(scale).view(-1, 1, 1, 1)
    return _per_sample_mean(sigmoid_focal_loss(logits, target, gamma=gamma))


def _second_difference(image: torch.Tensor, dim: int) -> torch.Tensor:
    length = image.shape[dim]
    return (
        image.narrow(dim, 2, length - 2)
        - 2 * image.narrow(dim, 1, length - 2)
        + image.narrow(dim, 0, length - 2)
    )


def texture_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Second-difference matching mean|∂²_y y − ∂²_y p| + mean|∂²_x y − ∂²_x p|, per sample.

    ∂² is the central second difference f[i+1] − 2f[i] + f[i−1]; a side shorter than 3 pixels contributes 0.
    """
    total = prob.new_zeros(prob.shape[0])
    for dim in (2, 3):
        if prob.shape[dim] >= 3:
            residual = _second_difference(target, dim) - _second_difference(prob, dim)
            total = total + _per_sample_mean(residual.abs())
    return total
