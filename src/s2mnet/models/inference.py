"""Inference-only speed options: BatchNorm folding and channels-last memory format.

Both leave the function unchanged (up to float rounding); they are used by ``s2m predict`` / the
benchmark, never during training (folded BN no longer updates its statistics).
"""

from __future__ import annotations

import copy
from itertools import pairwise

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``Conv2d → BatchNorm2d`` pair that sits consecutively in an ``nn.Sequential`` into the
    convolution (eval statistics), replacing the BN by ``nn.Identity``. Works in place; returns ``model``."""
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (_, first), (name, second) in pairwise(children):
            if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                fused = fuse_conv_bn_eval(first, second)
                first.weight, first.bias = fused.weight, fused.bias
                setattr(module, name, nn.Identity())
    return model


def optimize_for_inference(model: nn.Module, fold_bn: bool = True, channels_last: bool = True) -> nn.Module:
    """Eval-mode copy of ``model`` with BN folded and weights in channels-last layout.

    Feed it ``x.contiguous(memory_format=torch.channels_last)`` for the full benefit (oneDNN then runs the
    1×1 convolutions as plain GEMMs without layout reorders).
    """
    model = copy.deepcopy(model).eval()
    if fold_bn:
        fold_batchnorm(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
