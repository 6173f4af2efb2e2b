"""The ensemble of a cross-validation run's fold models, as one model (docs/tool.md, "Cross-validation").

:class:`FoldEnsemble` averages the folds' *probabilities* (sigmoid for binary and multi-label outputs,
softmax over the classes otherwise; nnU-Net's ensembling, docs/choices.md) and returns them as
logits-equivalent outputs: ``logit(clamp(p, eps, 1 - eps))`` for sigmoid outputs, ``log(clamp(p, eps))``
for softmax outputs. Sigmoid or softmax of the output gives back the averaged probabilities, so every
consumer of a model (the whole-image and sliding-window predictor, TTA, ``s2m export`` to ONNX and the
torch-free onnxruntime predictor) runs the ensemble unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from s2mnet.engine.rundir import read_run_config, run_plan
from s2mnet.errors import RunError

#: Probabilities are clamped to [EPS, 1 - EPS] before the logit / log (finite outputs, float32-exact).
EPS = 1e-6
#: The plan entries that decide inference; every fold of an ensemble must agree on them.
INFERENCE_PLAN_KEYS = (
    "in_channels",
    "num_classes",
    "label_mode",
    "regions",
    "classes",
    "mode",
    "size",
    "patch_size",
    "overlap",
    "preprocess",
    "use_fov",
)


class FoldEnsemble(nn.Module):
    """Average of the fold models' probabilities, returned as logits (module docstring).

    Args:
        models: the fold models (same architecture family, input channels and outputs).
        sigmoid: ``True`` for binary or multi-label outputs (one sigmoid per channel), ``False`` for
            exclusive classes (softmax over the channel axis).
    """

    def __init__(self, models: list[nn.Module], sigmoid: bool) -> None:
        super().__init__()
        if not models:
            raise ValueError("FoldEnsemble needs at least one model")
        self.models = nn.ModuleList(models)
        self.sigmoid = sigmoid
        self.config = {**getattr(models[0], "config", {}), "ensemble": len(models)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits-equivalent of the mean probability over the folds, shaped as one model's output."""
        total = None
        for model in self.models:
            logits = model(x).float()
            probs = torch.sigmoid(logits) if self.sigmoid else torch.softmax(logits, dim=1)
            total = probs if total is None else total + probs
        mean = total / len(self.models)
        if self.sigmoid:
            mean = mean.clamp(EPS, 1.0 - EPS)
            return torch.log(mean) - torch.log1p(-mean)
        return torch.log(mean.clamp_min(EPS))


def check_folds_agree(dirs: list[Path]) -> None:
    """The folds of an ensemble must agree on the inference plan, the classes and the model.

    Raises:
        RunError: a fold that differs from the first, naming it and what differs.
    """
    reference = _signature(dirs[0])
    for path in dirs[1:]:
        signature = _signature(path)
        for key in reference:
            if signature[key] != reference[key]:
                raise RunError(
                    f"{path}: its {key} differs from {dirs[0].name}'s; these folds cannot be ensembled"
                )


def _signature(fold_dir: Path) -> dict[str, Any]:
    """What must agree between the folds of an ensemble: inference plan, classes, model configuration."""
    config = read_run_config(fold_dir)
    plan = run_plan(fold_dir, config)
    return {
        "plan": {key: plan.get(key) for key in INFERENCE_PLAN_KEYS},
        "classes": config.get("classes"),
        "model configuration": config.get("model"),
    }
