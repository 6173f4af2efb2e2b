"""Checkpoints: safetensors weights (no pickle: loading never executes code), written atomically, and
the model of a run folder (file names: :mod:`s2mnet.engine.rundir`).

Loading checks that the weights fit the architecture named in ``run.json``; a checkpoint from another
architecture or class count is refused with a one-line :class:`~s2mnet.errors.RunError`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from s2mnet.engine.ensemble import FoldEnsemble, check_folds_agree
from s2mnet.engine.rundir import (
    RUN_CONFIG,
    cv_fold_dirs,
    is_cv_run,
    read_cv_manifest,
    read_run_config,
    run_plan,
    weights_path,
)
from s2mnet.errors import RunError, first_line
from s2mnet.io_utils import atomic_write_with


def save_weights(
    path: str | Path, state: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None
) -> None:
    """Save a tensor dict as safetensors, atomically.

    Args:
        path: destination ``.safetensors`` file.
        state: name → tensor (e.g. ``model.state_dict()``); tensors are made contiguous on CPU.
        metadata: small JSON-serialisable dict stored in the file header (as one JSON string).
    """
    tensors = {name: t.detach().to("cpu").contiguous() for name, t in state.items()}
    header = {"s2mnet": json.dumps(metadata or {})}
    atomic_write_with(path, lambda tmp: save_safetensors(tensors, tmp, header))


def save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """:func:`safetensors.torch.save_file`, its write failures raised as :class:`OSError` with the errno.

    safetensors reports a full disk or a file-size limit as ``SafetensorError("... Os { code: 28 ...")``;
    as an OSError the command line answers it in one line naming the file (disk full, file too large).
    """
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as exc:
        code = re.search(r"code: (\d+)", str(exc))
        if code is None:
            raise
        number = int(code[1])
        raise OSError(number, os.strerror(number), str(path)) from None


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file into CPU tensors; a missing or corrupt file is a :class:`RunError`."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: checkpoint not found")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise RunError(f"{path}: not a readable safetensors checkpoint ({exc})") from None


def load_state_into(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load ``state`` into ``model`` strictly, refusing another architecture or class count clearly."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise RunError(f"{source}: weights do not fit this architecture ({detail})")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise RunError(
                f"{source}: weight {name} has shape {tuple(tensor.shape)} but the model expects "
                f"{tuple(expected[name].shape)} (another class count or architecture?)"
            )
    model.load_state_dict(state, strict=True)


def load_model(
    run_dir: str | Path,
    which: str = "best",
    device: str | torch.device = "cpu",
    folds: list[int] | None = None,
):
    """Rebuild a run's model and load its weights, ready for inference (``eval()`` mode).

    A cross-validation run (``s2m train --folds K``) gives the ensemble of its folds
    (:func:`s2mnet.engine.checkpoint.load_ensemble`; ``folds`` picks some, default all).

    Args:
        run_dir: a folder written by ``s2m train``.
        which: ``"best"`` (best validation Dice) or ``"last"``.
        device: where to put the model.
        folds: the folds of a cross-validation run to ensemble; ``None`` → all of them.

    Returns:
        ``(model, run_config)``.
    """
    from s2mnet.models import create_model

    run_dir = Path(run_dir)
    if is_cv_run(run_dir) and not (run_dir / RUN_CONFIG).is_file():
        return load_ensemble(run_dir, folds=folds, which=which, device=device)
    if folds is not None:
        raise RunError(f"{run_dir}: --folds needs a cross-validation run (s2m train --folds K)")
    config = read_run_config(run_dir)  # validated (rundir.validate_run_config): counts, sizes, paths
    if not isinstance(config.get("model"), dict):
        raise RunError(f"{run_dir / RUN_CONFIG}: no 'model' section; cannot rebuild the model")
    try:
        model = create_model(**config["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise RunError(f"{run_dir / RUN_CONFIG}: cannot rebuild the model ({first_line(exc)})") from None
    weights = weights_path(run_dir, which)
    load_state_into(model, load_weights(weights), weights)
    return model.to(device).eval(), config


def load_ensemble(
    run_dir: str | Path,
    folds: list[int] | None = None,
    which: str = "best",
    device: str | torch.device = "cpu",
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The ensemble (:class:`~s2mnet.engine.ensemble.FoldEnsemble`) of a cross-validation run's folds
    (``folds`` picks some; default all), in eval mode.

    Args:
        run_dir: a cross-validation run folder (``s2m train --folds K``).
        folds: fold numbers; ``None`` → every fold.
        which: ``"best"`` or ``"last"`` checkpoint of each fold.
        device: where to put the models.

    Returns:
        ``(ensemble, run_config)``: the configuration is the first chosen fold's, with ``"folds"`` (the
        fold numbers) and ``"cv_run"`` (the run folder) added.

    Raises:
        RunError: not a cross-validation run, a fold out of range or not trained, or folds that differ in
            plan, classes or model configuration (naming the fold and what differs).
    """
    run_dir = Path(run_dir)
    count = read_cv_manifest(run_dir)["folds"]
    chosen = list(range(count)) if folds is None else list(folds)
    dirs = cv_fold_dirs(run_dir, chosen)
    check_folds_agree(dirs)
    models, config = [], None
    for path in dirs:
        model, fold_config = load_model(path, which=which, device=device)
        models.append(model)
        config = config or fold_config
    plan = run_plan(dirs[0], config)
    sigmoid = int(plan.get("num_classes", 1)) == 1 or plan.get("label_mode") == "multilabel"
    ensemble = FoldEnsemble(models, sigmoid=sigmoid).to(device).eval()
    return ensemble, {**config, "folds": chosen, "cv_run": str(run_dir)}
