"""Parameter-matched self-attention mixer: the fair "attention instead of SSTM" comparison.

It stands exactly where SSTM stands (after MRF-SE in every encoder stage) and mixes ALL H·W tokens with
multi-head self-attention through PyTorch's fused ``scaled_dot_product_attention``. To make the
comparison about the mixing operation and not about capacity, it is a standard pre-norm transformer
block whose MLP width is chosen so the block's parameter count equals the SSTM it replaces (within
10%; :func:`matched_mlp_hidden`). No positional embedding is added (its size would depend on H, W);
position reaches the tokens through the zero-padded convolutions before it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attention_core_params(channels: int) -> int:
    """Parameters of the block without MLP: LayerNorm, qkv and output projections (with biases)."""
    return 4 * channels * channels + 6 * channels


def matched_mlp_hidden(channels: int, target_params: int) -> int:
    """MLP hidden width h so that the block has ``target_params`` parameters (h = 0: no MLP).

    MLP parameters are ``2C (LayerNorm) + C·h + h + h·C + C``.
    """
    remaining = target_params - attention_core_params(channels) - 3 * channels
    return max(0, round(remaining / (2 * channels + 1)))


class AttentionMixer(nn.Module):
    """``x + Drop(MHSA(LN(x)))`` then ``x + Drop(MLP(LN(x)))`` over all tokens of ``(B, C, H, W)``.

    Args:
        channels: C.
        heads: attention heads (C must be divisible by it).
        mlp_hidden: hidden width of the GELU MLP; 0 disables the MLP.
        dropout: dropout on both residual branches.
    """

    def __init__(self, channels: int, heads: int = 4, mlp_hidden: int = 0, dropout: float = 0.1) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention heads ({heads}) must divide the channels ({channels})")
        self.heads = heads
        self.norm1 = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.mlp = (
            nn.Sequential(
                nn.LayerNorm(channels),
                nn.Linear(channels, mlp_hidden),
                nn.GELU(),
                nn.Linear(mlp_hidden, channels),
            )
            if mlp_hidden > 0
            else None
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
        q, k, v = self.qkv(self.norm1(tokens)).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        tokens = tokens + self.dropout(self.proj(attended))
        if self.mlp is not None:
            tokens = tokens + self.dropout(self.mlp(tokens))
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)
