"""Inference-only speed options: BatchNorm folding, channels-last memory format and fused-op rewrites.

All of them leave the function unchanged (up to float rounding; tested to 1e-4 in float32). ``s2m predict``,
``s2m evaluate`` and volume prediction run :func:`optimize_for_inference` on the loaded model, ``s2m export``
runs :func:`fold_batchnorm` (docs/speed.md, "Round two"); never during training (folded BN no longer
updates its statistics).
The rewrites work on an eval-mode copy; the model passed in (and its ``state_dict``) is never touched.

The fused-op rewrite (``fuse_ops=True``) targets what a profile of the eager forward at 352² shows
besides the convolutions (docs/model.md, "Efficiency"): memory-bound element-wise passes over large
feature maps. It uses oneDNN's convolution post-ops (``torch.ops.mkldnn._convolution_pointwise``, the same
kernels ``torch.compile``'s inductor emits for these patterns on CPU) and is active only for float32 CPU
tensors with autograd off and outside tracing/compilation; otherwise every rewritten block runs the
original composition of ops. oneDNN offers no ELU post-op through PyTorch, so ELUs stay separate (in place).
"""

from __future__ import annotations

import copy
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from s2mnet.models.blocks import BFD, MRFSE
from s2mnet.models.spectral import half_spectrum_filter
from s2mnet.models.sstm import SSTM

_ONEDNN = torch.ops.mkldnn  # oneDNN fused convolutions (the kernels inductor emits for these patterns)


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


def _onednn_fusable(x: torch.Tensor) -> bool:
    """Whether the oneDNN fused kernels may run: float32 CPU, no autograd (they have no backward), eager."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and torch.backends.mkldnn.is_available()
    )


def _conv_args(conv: nn.Conv2d) -> tuple[list[int], list[int], list[int], int]:
    return list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups


def _plain_conv(conv: nn.Conv2d) -> bool:
    return conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


def conv_act(conv: nn.Conv2d, x: torch.Tensor, act: str) -> torch.Tensor:
    """``act(conv(x))`` for ``act`` = ``"relu"`` | ``"sigmoid"``, one oneDNN call (post-op) when possible."""
    if _onednn_fusable(x) and _plain_conv(conv):
        args = _conv_args(conv)
        return _ONEDNN._convolution_pointwise(x, conv.weight, conv.bias, *args, act, [], "")
    out = conv(x)
    return torch.relu_(out) if act == "relu" else torch.sigmoid(out)


class ConvAct(nn.Module):
    """``conv`` followed by ReLU or Sigmoid (:func:`conv_act`)."""

    def __init__(self, conv: nn.Conv2d, act: str) -> None:
        super().__init__()
        self.conv = conv
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv_act(self.conv, x, self.act)


_FUSABLE_ACTS = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid"}


def fuse_conv_activations(model: nn.Module) -> nn.Module:
    """In every ``nn.Sequential``, replace ``Conv2d [→ Identity…] → ReLU | Sigmoid`` by one :class:`ConvAct`
    (the activation slot becomes ``nn.Identity``). Run after :func:`fold_batchnorm`. In place."""
    for module in list(model.modules()):
        if not isinstance(module, nn.Sequential):
            continue
        names = [name for name, _ in module.named_children()]
        for i, name in enumerate(names):
            conv = getattr(module, name)
            if not (isinstance(conv, nn.Conv2d) and _plain_conv(conv)):
                continue
            follower = next(
                (n for n in names[i + 1 :] if not isinstance(getattr(module, n), nn.Identity)), None
            )
            act = _FUSABLE_ACTS.get(type(getattr(module, follower))) if follower else None
            if act is not None:
                setattr(module, name, ConvAct(conv, act))
                setattr(module, follower, nn.Identity())
    return model


class InferenceMRFSE(nn.Module):
    """Eval-mode MRF-SE (same submodules and names as :class:`~s2mnet.models.blocks.MRFSE`, same function),
    for a block whose BatchNorms are folded.

    * no 3F-channel concatenation: the fuse conv ``W·[b₁ ‖ b₂ ‖ b₃] + c`` is computed as three 1×1 convs
      on the branch outputs, each accumulating into the previous result through oneDNN's ``add`` post-op
      (the concatenation buffer, a 3F-channel map at stage 1, is never written);
    * the SE scale is folded into the projection weights (``W·(s ⊙ h) = (W·diag s)·h``; per sample),
      which removes a multiply pass over the F-channel map;
    * the residual addition is the projection conv's ``add`` post-op.
    """

    def __init__(self, block: MRFSE) -> None:
        super().__init__()
        folded = [block.fuse[1], block.project[1], *(branch[1] for branch in block.branches)]
        if not all(isinstance(bn, nn.Identity) for bn in folded):
            raise ValueError("InferenceMRFSE needs an MRF-SE block with folded BatchNorms (fold_batchnorm)")
        self.expand, self.branches, self.fuse = block.expand, block.branches, block.fuse
        self.se, self.project = block.se, block.project

    def _branches_and_fuse(self, h: torch.Tensor) -> torch.Tensor:
        fuse = self.fuse[0]
        width = h.shape[1]
        args = _conv_args(fuse)
        out = None
        for i, (conv, _, elu) in enumerate(self.branches):
            branch = F.elu_(conv(h), elu.alpha)
            weight = fuse.weight[:, i * width : (i + 1) * width]
            if out is None:
                out = _ONEDNN._convolution_pointwise(branch, weight, fuse.bias, *args, "none", [], "")
            else:
                out = _ONEDNN._convolution_pointwise.binary(
                    branch, out, weight, None, *args, "add", None, None, [], None
                )
        return F.elu_(out, self.fuse[2].alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        project = self.project[0]
        if not (_onednn_fusable(x) and _plain_conv(project) and _plain_conv(self.fuse[0])):
            h = self.expand(x)
            h = self.fuse(torch.cat([branch(h) for branch in self.branches], dim=1))
            return x + self.project(h * self.se(h))
        h = self._branches_and_fuse(self.expand(x))
        scale = self.se(h)  # (B, F, 1, 1)
        outputs = []
        for sample, sample_x, sample_scale in zip(h.split(1), x.split(1), scale.split(1), strict=True):
            weight = project.weight * sample_scale.view(1, -1, 1, 1)
            outputs.append(
                _ONEDNN._convolution_pointwise.binary(
                    sample, sample_x, weight, project.bias, *_conv_args(project), "add", None, None, [], None
                )
            )
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


class InferenceBFD(nn.Module):
    """Eval-mode BFD (same submodules and names as :class:`~s2mnet.models.blocks.BFD`, same function):
    the routing ``region + (refined − region)·β`` is one ``torch.lerp`` pass instead of three."""

    def __init__(self, block: BFD) -> None:
        super().__init__()
        self.routing = block.routing
        self.region, self.boundary, self.refine, self.fusion = (
            block.region,
            block.boundary,
            block.refine,
            block.fusion,
        )

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        deep = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        region = self.region(torch.cat([deep, skip], dim=1))
        beta = self.boundary(region)
        refined = self.refine(region * beta)
        if self.routing == "none":
            return self.fusion(torch.cat([region, refined], dim=1))
        if self.routing == "hard":
            beta = (beta > 0.5).to(beta.dtype)
        return self.fusion(torch.lerp(region, refined, beta))


class InferenceSSTM(nn.Module):
    """Eval-mode SSTM (same submodules and names as :class:`~s2mnet.models.sstm.SSTM`, same function) for
    channels-last tensors:

    * the spectral branch transforms the ``(B, H, W, C)`` view over its H, W axes, so the FFTs read and
      write channels-last memory directly (no layout copies before ``rfft2``, after ``irfft2`` and before
      the fusion conv's concatenation); the half-spectrum filter is cached per map size (the copy's
      weights are frozen);
    * the gate conv and its sigmoid are one oneDNN call, the gating multiply and the bottleneck ELU run in
      place, the residual addition is added into the LayerNorm output.
    """

    def __init__(self, block: SSTM) -> None:
        super().__init__()
        self.spectral, self.spatial = block.spectral, block.spatial
        self.fusion, self.norm = block.fusion, block.norm
        self._filters: dict[tuple[int, int], torch.Tensor] = {}

    def _spectral_nhwc(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        key = (height, width, x.dtype, x.device)
        filt = self._filters.get(key)
        if filt is None:
            weight = self.spectral.filter
            weight = weight if weight.is_complex() else weight.to(x.dtype)  # cfilter: keep the phase
            filt = half_spectrum_filter(weight, height, width).permute(1, 2, 0).contiguous()
            self._filters = {key: filt}  # one size at a time: a sliding window reuses it
        tokens = x.permute(0, 2, 3, 1)  # (B, H, W, C), contiguous for a channels-last x
        spectrum = torch.fft.rfft2(tokens, dim=(1, 2), norm="ortho")[:, :, : filt.shape[1]]
        filtered = torch.fft.irfft2(spectrum * filt, s=(height, width), dim=(1, 2), norm="ortho")
        return filtered.permute(0, 3, 1, 2)

    def _spatial(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.spatial
        gated = conv_act(branch.gate, x, "sigmoid").mul_(x)
        return branch.up(F.elu_(branch.down(gated)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = (
            _onednn_fusable(x)
            and x.is_contiguous(memory_format=torch.channels_last)
            and (self.spectral is None or self.spectral.impl == "fft")
        )
        if not fast:
            parts = [branch(x) for branch in (self.spectral, self.spatial) if branch is not None]
            return x + self.norm(self.fusion(torch.cat(parts, dim=1)))
        parts = []
        if self.spectral is not None:
            parts.append(self._spectral_nhwc(x))
        if self.spatial is not None:
            parts.append(self._spatial(x))
        fused = self.fusion(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0])
        return self.norm(fused).add_(x)


def _replace_blocks(model: nn.Module) -> nn.Module:
    """Swap every MRF-SE / BFD / SSTM submodule for its inference form (in place; returns the new root)."""
    replacements = {MRFSE: InferenceMRFSE, BFD: InferenceBFD, SSTM: InferenceSSTM}
    if type(model) in replacements:
        return replacements[type(model)](model)
    for name, child in model.named_children():
        setattr(model, name, _replace_blocks(child))
    return model


def optimize_for_inference(
    model: nn.Module, fold_bn: bool = True, channels_last: bool = True, fuse_ops: bool = True
) -> nn.Module:
    """Eval-mode copy of ``model`` with BN folded, weights in channels-last layout and fused-op rewrites.

    Feed it ``x.contiguous(memory_format=torch.channels_last)`` for the full benefit (oneDNN then runs the
    1×1 convolutions as plain GEMMs without layout reorders). ``fuse_ops`` (needs ``fold_bn``) replaces
    conv+ReLU/Sigmoid pairs by fused oneDNN calls and MRF-SE / BFD by :class:`InferenceMRFSE` /
    :class:`InferenceBFD`; turn it off before ``torch.compile`` (inductor does its own fusion).
    """
    model = copy.deepcopy(model).eval()
    if fold_bn:
        fold_batchnorm(model)
        if fuse_ops:
            fuse_conv_activations(model)
            model = _replace_blocks(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
