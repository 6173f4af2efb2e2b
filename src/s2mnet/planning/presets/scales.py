"""Scales of a preset's protocol: recipe and data plan per scale (choice documented in docs/presets.md).

* ``paper`` — method.md §4: 352² resized images (fundus: 256² native-resolution patches, green channel +
  CLAHE, field of view where distributed), the paper's full augmentation, 150 epochs of 30 × the training
  cases (virtual epochs), batch 8, Adam-style recipe at lr 1e-4 with 10 warm-up epochs, cosine to 1e-6,
  patience 50, clipping 1.0, weight decay 1e-4.
* ``cpu-small`` — a stated reduced protocol for a 2-core CPU, the same budget as the committed claims-lab
  ablations (docs/results/): 96², 8 epochs of 48 samples, batch 4 (fundus: 96² patches, 6 epochs of 48,
  sliding-window overlap 0.25), light augmentation, lr 1e-3 (the trainer's short-run rate), no warm-up,
  patience 10 — one to two minutes per seed on one core.
* ``ci`` — (hidden) one epoch of two samples at 32² for tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from s2mnet.errors import S2MError

if TYPE_CHECKING:
    from s2mnet.planning.presets.entries import Preset

SCALES = ("paper", "cpu-small", "ci")

#: Recipe of each scale: TrainConfig fields (None = the trainer's default for that plan).
RECIPES: dict[str, dict[str, Any]] = {
    "paper": {
        "lr": 1e-4,
        "weight_decay": 1e-4,
        "warmup_epochs": 10,
        "min_lr": 1e-6,
        "clip_grad": 1.0,
        "patience": 50,
    },
    "cpu-small": {"lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 0, "clip_grad": 1.0, "patience": 10},
    "ci": {"lr": 1e-3, "warmup_epochs": 0, "patience": 0},
}

#: Data-plan overrides per protocol and scale (``samples_per_epoch`` of ``paper`` is 30 × training cases).
PLANS: dict[str, dict[str, dict[str, Any]]] = {
    "resize": {
        "paper": {"mode": "resize", "size": 352, "augment": "full", "epochs": 150, "batch_size": 8},
        "cpu-small": {
            "mode": "resize",
            "size": 96,
            "augment": "light",
            "epochs": 8,
            "batch_size": 4,
            "samples_per_epoch": 48,
        },
        "ci": {
            "mode": "resize",
            "size": 32,
            "augment": "none",
            "epochs": 1,
            "batch_size": 2,
            "samples_per_epoch": 2,
        },
    },
    "fundus": {
        "paper": {
            "mode": "patch",
            "patch_size": 256,
            "preprocess": "green_clahe",
            "augment": "full",
            "epochs": 150,
            "batch_size": 8,
        },
        "cpu-small": {
            "mode": "patch",
            "patch_size": 96,
            "overlap": 0.25,
            "preprocess": "green_clahe",
            "augment": "light",
            "epochs": 6,
            "batch_size": 4,
            "samples_per_epoch": 48,
        },
        # ci: a smoke test of the fundus pipeline (green channel + CLAHE, FOV) on whole resized images;
        # sliding 32² windows over 565×584 images would take minutes.
        "ci": {
            "mode": "resize",
            "size": 32,
            "preprocess": "green_clahe",
            "augment": "none",
            "epochs": 1,
            "batch_size": 2,
            "samples_per_epoch": 2,
        },
    },
}
PROTOCOLS = tuple(PLANS)


def plan_overrides(preset: Preset, scale: str, n_train: int) -> dict[str, Any]:
    """The data-plan settings of ``scale`` (``paper``: virtual epoch ``epoch_factor`` × ``n_train``).

    Raises:
        S2MError: an unknown scale.
    """
    if scale not in SCALES:
        raise S2MError(f"unknown scale {scale!r} (use {', '.join(SCALES[:2])})")
    plan = dict(PLANS[preset.protocol][scale])
    if scale == "paper":
        plan["samples_per_epoch"] = preset.epoch_factor * max(1, n_train)
    if preset.label_mode == "binary" and not preset.labels:
        plan["num_classes"] = 1
    plan.update(preset.labels)
    return plan
