"""Depthwise convolution with a faster CPU weight gradient for kernels wider than three columns.

MRF-SE runs depthwise 5×5 and 7×7 convolutions over its 6×-expanded maps (method.md §1). On the CPU,
oneDNN (what PyTorch calls for channels-last tensors) computes the depthwise weight gradient with a fast
kernel only when the kernel is at most three columns wide: measured at one thread on a stage-1 map at
256², batch 4 (144 channels, 128², channels-last), the weight gradient of a 3×3 kernel takes 15–20 ms, of a
7×3 kernel 26 ms, but of a 5×5 kernel 160–260 ms and of a 7×7 kernel 340–390 ms (docs/speed.md, "Round
two"). The column count alone decides (a 3×7 kernel is as slow as 7×7, a 7×1 kernel as fast as 3×3).

:class:`DepthwiseConv2d` keeps ``nn.Conv2d``'s parameters, ``state_dict`` keys and forward computation and
changes only how the weight gradient is computed: a ``k_h × k_w`` kernel is split into ⌈k_w/3⌉ blocks of
three columns, each block's gradient is the fast ``k_h × 3`` depthwise weight gradient of the input shifted
by the block's column offset (one shifted copy per block off the centre), and the blocks' columns are put
together. The sums are the same products in another order, so the gradient equals the plain one to float
rounding (tests/test_fast_paths.py). Everything else (the forward pass, the input gradient, GPUs, NCHW
tensors, inference, tracing and ``torch.compile``) goes through ``torch.nn.functional.conv2d`` unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: Widest kernel whose depthwise weight gradient oneDNN computes quickly (see the module docstring).
FAST_WIDTH = 3


def block_centres(width: int) -> list[int]:
    """Column offsets (relative to the kernel's centre) of the three-column blocks that cover an odd
    ``width``: ⌈width/3⌉ blocks spread evenly, the middle one centred when there is one (it then needs no
    shifted copy). Examples: 5 → [-1, 1], 7 → [-2, 0, 2], 9 → [-3, 0, 3]."""
    radius, blocks = width // 2, math.ceil(width / FAST_WIDTH)
    if blocks == 1:
        return [0]
    return [round(-(radius - 1) + i * 2 * (radius - 1) / (blocks - 1)) for i in range(blocks)]


def depthwise_weight_grad(grad: torch.Tensor, x: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Weight gradient ``(C, 1, k_h, k_w)`` of a stride-1, 'same'-padded depthwise convolution (odd ``k_w``)
    from three-column blocks (module docstring).

    The block centred ``d`` columns off the kernel centre sees ``x`` shifted by ``d``: its input is
    ``x[..., w + d − 1]`` for ``w`` in ``0 … W + 1`` (zero outside the map; a crop and a pad, one copy), its
    ``k_h × 3`` gradient with vertical padding ``k_h // 2`` and none horizontally holds the kernel columns
    ``d − 1, d, d + 1`` (relative to the centre). The centred block reads ``x`` itself with padding 1.
    """
    channels = x.shape[1]
    height, width = kernel
    radius = width // 2
    block_shape = torch.empty(channels, 1, height, FAST_WIDTH, dtype=x.dtype, device=x.device)
    columns: dict[int, torch.Tensor] = {}
    for centre in block_centres(width):
        if centre == 0:
            shifted, padding = x, [height // 2, 1]
        else:
            shifted = F.pad(x, (1 - centre, 1 + centre)).contiguous(memory_format=torch.channels_last)
            padding = [height // 2, 0]
        block = torch.ops.aten.convolution_backward(
            grad, shifted, block_shape, None, [1, 1], padding, [1, 1], False, [0, 0], channels,
            [False, True, False],
        )[1]  # fmt: skip
        for offset in range(FAST_WIDTH):
            column = centre + offset - 1 + radius
            if 0 <= column < width:
                columns.setdefault(column, block[..., offset])
    return torch.stack([columns[column] for column in range(width)], dim=-1)


class _DepthwiseConv(torch.autograd.Function):
    """Depthwise 'same' ``conv2d`` whose weight gradient is :func:`depthwise_weight_grad`."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = list(padding)
        return F.conv2d(x, weight, None, 1, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [1, 1], ctx.padding, [1, 1], False, [0, 0], weight.shape[0],
                [True, False, False],
            )[0]  # fmt: skip
        if ctx.needs_input_grad[1]:
            grad_w = depthwise_weight_grad(grad, x, tuple(weight.shape[-2:]))
        return grad_x, grad_w, None


class DepthwiseConv2d(nn.Conv2d):
    """Depthwise ``nn.Conv2d`` (``groups = in = out channels``, stride 1, 'same' padding, no bias) with the
    fast weight gradient of :func:`depthwise_weight_grad` on CPU channels-last training inputs.

    Same parameters, ``state_dict`` keys and outputs as the ``nn.Conv2d`` it stands for (checkpoints and the
    paper's parameter count are unchanged); BatchNorm folding and the inference rewrites treat it as a
    ``Conv2d``.
    """

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__(channels, channels, kernel_size, 1, kernel_size // 2, groups=channels, bias=False)

    def _fast(self, x: torch.Tensor) -> bool:
        return (
            self.kernel_size[1] > FAST_WIDTH
            and self.bias is None
            and torch.is_grad_enabled()
            and self.weight.requires_grad
            and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)
            and x.is_contiguous(memory_format=torch.channels_last)
            and not torch.compiler.is_compiling()
            and not torch.jit.is_tracing()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fast(x):
            return _DepthwiseConv.apply(x, self.weight, self.padding)
        return super().forward(x)


def as_plain_conv2d(model: nn.Module) -> nn.Module:
    """Replace every :class:`DepthwiseConv2d` in ``model`` by the ``nn.Conv2d`` it stands for (same weights,
    same names; in place; returns ``model``): the reference the rewrite is tested and benchmarked against
    (tests/test_fast_paths.py, benchmarks/speed_round2.py)."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, DepthwiseConv2d):
                plain = nn.Conv2d(
                    child.in_channels,
                    child.out_channels,
                    child.kernel_size,
                    child.stride,
                    child.padding,
                    groups=child.groups,
                    bias=child.bias is not None,
                ).to(device=child.weight.device, dtype=child.weight.dtype)
                plain.load_state_dict(child.state_dict())
                setattr(module, name, plain)  # a (C, 1, k, k) weight has one layout: no memory format
    return model
