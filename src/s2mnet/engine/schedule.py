"""Learning-rate schedule of the paper's recipe: linear warm-up, then cosine decay to a floor.

method.md §4: "lr 1e-4, 10-epoch linear warm-up then cosine to 1e-6". Built from torch's own schedulers
(``LinearLR`` followed by ``CosineAnnealingLR`` inside ``SequentialLR``) so that the schedule has a
standard ``state_dict`` for resuming. It is stepped once per optimiser step (iteration), which keeps the
warm-up smooth when a run has few epochs; epochs are converted to steps by the caller.
"""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

#: Warm-up starts at this fraction of the base learning rate (``LinearLR`` cannot start at exactly 0).
WARMUP_START_FACTOR = 0.01


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, min_lr: float
) -> LRScheduler:
    """Linear warm-up over ``warmup_steps`` then cosine annealing to ``min_lr`` at ``total_steps``.

    Args:
        optimizer: its param groups' ``lr`` are the peak learning rates.
        total_steps: number of ``scheduler.step()`` calls in the whole run (≥ 1).
        warmup_steps: steps of linear warm-up from ``WARMUP_START_FACTOR × lr`` to ``lr``
            (0 = no warm-up).
        min_lr: the learning rate reached at the end of the cosine.

    Returns:
        A scheduler to step after every optimiser step. The learning rate at step ``t`` is
        ``lr·(f + (1−f)·t/W)`` for ``t < W`` and ``min_lr + (lr − min_lr)·(1 + cos(π(t−W)/(T−W)))/2`` after.
    """
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps - 1)
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps), eta_min=min_lr)
    if warmup_steps == 0:
        return cosine
    warmup = LinearLR(optimizer, start_factor=WARMUP_START_FACTOR, end_factor=1.0, total_iters=warmup_steps)
    return SequentialLR(optimizer, schedulers=[warmup, cosine], milestones=[warmup_steps])
