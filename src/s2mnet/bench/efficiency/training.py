"""The timed training step: a real :class:`s2mnet.engine.trainer.Trainer` over a one-batch in-memory loader.

``s2m train`` builds a ``Trainer`` (:mod:`s2mnet.engine.train`) and calls ``Trainer.train_epoch`` once per
epoch. This benchmark constructs the same ``Trainer`` — no copy of its step — and times one call of
``train_epoch`` over a loader holding exactly one batch, so one timed call is one training step of
``s2m train``:

* the batch's host → device copy (``non_blocking`` on CUDA, from pinned memory as the training loader
  pins it) and, with ``channels_last``, the conversion of the images to NHWC;
* :class:`~s2mnet.engine.trainer.TrainStep`: the model under autocast (``--amp``; CUDA only, as in
  ``s2m train``, which trains in float32 on CPU), then the loss in float32;
* the finiteness check of the loss, ``zero_grad(set_to_none=True)``, backward through the (disabled
  unless fp16) gradient scaler, ``clip_grad_norm_`` of the model's parameters, the AdamW step over the
  model's parameters and the loss's learnable weights (MASL's w), the scheduler step;
* the per-epoch bookkeeping of a one-step epoch (re-seeding the random streams, ``loss.item()``), which
  ``s2m train`` pays once per epoch instead of once per step (tens of microseconds).

Not included: data loading and augmentation (the loader's workers), validation and checkpoints.
The recipe is the paper's (:func:`s2mnet.planning.recipe.add_training_recipe` for a 150-epoch plan: AdamW
lr 1e-4, β 0.9/0.999, weight decay 1e-4, 10 warm-up epochs then cosine to 1e-6, clipping 1.0); the
learning rate does not change the cost of a step. ``channels_last`` converts the model as ``s2m train
--channels-last`` does before the Trainer is built; ``compile`` is ``Trainer(compile=True)``, i.e.
``torch.compile`` of the training step as ``s2m train --compile`` (compilation happens in the first,
untimed calls: use at least one warm-up run).
"""

from __future__ import annotations

from typing import Any

import torch

#: Epochs of the plan the recipe is completed for (the paper's; it sets the warm-up and cosine lengths).
RECIPE_EPOCHS = 150


def training_plan() -> dict[str, Any]:
    """The plan the benchmark's Trainer runs: the paper's optimisation recipe (see the module docstring)."""
    from s2mnet.planning.recipe import add_training_recipe

    return add_training_recipe({"epochs": RECIPE_EPOCHS})


def make_trainer(
    model: torch.nn.Module,
    loss_fn: torch.nn.Module,
    images: torch.Tensor,
    masks: torch.Tensor,
    device: torch.device,
    amp: str = "none",
    channels_last: bool = False,
    compile: bool = False,
) -> Any:
    """A :class:`~s2mnet.engine.trainer.Trainer` whose ``train_epoch`` is one training step of ``s2m train``.

    Args:
        model: the network, already on ``device`` (and in channels-last format when ``channels_last``).
        loss_fn: the loss, already on ``device``.
        images: the batch's images ``(B, C, H, W)``; moved to the host like a loader's output.
        masks: the batch's targets ``(B, 1, H, W)``.
        device: where to train.
        amp: ``none``, ``bf16`` or ``fp16`` (CUDA only; the Trainer ignores it on CPU).
        channels_last: feed NHWC tensors (``s2m train --channels-last``).
        compile: ``torch.compile`` the training step (``s2m train --compile``).

    Returns:
        The Trainer; time ``trainer.train_epoch()``.
    """
    from s2mnet.engine.trainer import Trainer

    batch = {"image": images.detach().cpu().contiguous(), "mask": masks.detach().cpu().contiguous()}
    if device.type == "cuda":
        batch = {key: value.pin_memory() for key, value in batch.items()}
    return Trainer(
        model,
        loss_fn,
        training_plan(),
        [batch],  # type: ignore[arg-type]  # an in-memory loader: len() 1, yields the one batch
        validate=None,
        device=device,
        amp=amp,
        channels_last=channels_last,
        compile=compile,
    )
