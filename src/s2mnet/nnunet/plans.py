"""``s2m nnunet add-config``: add the ``2d_s2mnet`` configuration to a planned nnU-Net v2 dataset.

After ``nnUNetv2_plan_and_preprocess -d ID -c 2d``, ``$nnUNet_preprocessed/DatasetID_Name/<plans>.json``
holds nnU-Net's ``2d`` configuration. We add (plain JSON, no nnunetv2 import)::

    "2d_s2mnet": {
        "inherits_from": "2d",                       # spacing, normalisation, resampling, batch size and
                                                     # the preprocessed data ("data_identifier") of 2d
        "patch_size": [...],                         # 2d's, rounded up to multiples of 32
        "architecture": {
            "network_class_name": "s2mnet.nnunet.network.S2MNetNNUNet",
            "arch_kwargs": {"strides": [[1, 1], [2, 2], [2, 2], [2, 2], [2, 2], [2, 2]]},
            "_kw_requires_import": []
        },
        "s2mnet": {"written_by": "s2m nnunet add-config", ...}
    }

nnU-Net resolves ``inherits_from`` by a shallow update, so the child's ``architecture`` replaces 2d's
whole architecture, and ``strides`` (nnU-Net's ``pool_op_kernel_sizes``) set the deep-supervision scales
to 1, 1/2, 1/4, 1/8, 1/16 — S2M-Net's head and decoder stages (:mod:`s2mnet.nnunet.network`).
Running it again leaves an identical configuration untouched (idempotent) and replaces one it wrote
before with other options. When the raw dataset has the ``splits_final.json`` written by
``s2m nnunet convert`` and the preprocessed folder has none, it is copied there, so that nnU-Net's fold 0
is ``s2m``'s train/val split.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from s2mnet.errors import NNUNetSetupError, S2MError
from s2mnet.io_utils import atomic_write_text
from s2mnet.io_utils import read_json as read_guarded_json
from s2mnet.nnunet import (
    BASE_CONFIGURATION,
    CONFIGURATION,
    NETWORK_CLASS_NAME,
    PATCH_MULTIPLE,
    S2MNET_STRIDES,
)

DEFAULT_PLANS = "nnUNetPlans"
MARKER = "s2mnet"
WRITTEN_BY = "s2m nnunet add-config"
SPLITS_FILE = "splits_final.json"
#: Bounds of the plans values add-config copies (nnU-Net's 2-D patches are a few hundred pixels).
MAX_PATCH_SIDE = 4096
MAX_BATCH_SIZE = 4096


def env_folder(variable: str, given: str | os.PathLike | None = None, hint: str = "") -> Path:
    """``given`` or the folder in environment variable ``variable``; it must exist.

    Raises:
        NNUNetSetupError: neither is set, or the folder does not exist.
    """
    value = given if given is not None else os.environ.get(variable)
    if not value:
        raise NNUNetSetupError(
            f"{variable} is not set: export {variable}=/path/to/folder (nnU-Net's "
            f"documentation/setting_up_paths.md){hint}"
        )
    folder = Path(value).expanduser()
    if not folder.is_dir():
        source = "given folder" if given is not None else variable
        raise NNUNetSetupError(f"{folder}: {source} is not an existing folder")
    return folder


def dataset_folder(root: Path, dataset: str | int, purpose: str) -> Path:
    """The ``DatasetXXX_Name`` folder under ``root`` for an id (``4``, ``"004"``) or a full name.

    Raises:
        NNUNetSetupError: no or several matching folders.
    """
    text = str(dataset).strip()
    if text.isdigit():
        pattern = re.compile(rf"^Dataset{int(text):03d}_.+")
        matches = sorted(p for p in root.iterdir() if p.is_dir() and pattern.match(p.name))
    else:
        matches = [root / text] if (root / text).is_dir() else []
    if not matches:
        raise NNUNetSetupError(f"{root}: no dataset {text} here; {purpose}")
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches)
        raise NNUNetSetupError(f"{root}: several folders for dataset {text} ({names}); pass the full name")
    return matches[0]


def read_json(path: Path) -> Any:
    """A JSON file, with one-line errors naming it (:func:`s2mnet.io_utils.read_json`)."""
    return read_guarded_json(path, NNUNetSetupError)


def write_json(path: Path, data: Any) -> None:
    """Write JSON as nnU-Net does (indent 4, key order kept), atomically (temporary file + rename)."""
    atomic_write_text(path, json.dumps(data, indent=4, sort_keys=False) + "\n")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def round_patch(patch_size: list[int], multiple: int = PATCH_MULTIPLE) -> list[int]:
    """Each side rounded up to a multiple of ``multiple`` (at least ``multiple``)."""
    return [max(multiple, -(-int(side) // multiple) * multiple) for side in patch_size]


def resolve_configuration(configurations: dict, name: str) -> dict:
    """A configuration with ``inherits_from`` resolved as nnU-Net does (shallow update, parent first)."""
    seen: list[str] = []
    chain = []
    while name is not None:
        if name in seen:
            raise NNUNetSetupError(f"configurations inherit in a circle: {' -> '.join([*seen, name])}")
        if name not in configurations:
            raise NNUNetSetupError(f"configuration {name!r} is not in the plans")
        seen.append(name)
        config = configurations[name]
        if not isinstance(config, dict):
            raise NNUNetSetupError(
                f"configuration {name!r} is {type(config).__name__} {str(config)[:40]}, not a JSON object"
            )
        chain.append(config)
        name = config.get("inherits_from")
        if name is not None and not isinstance(name, str):
            raise NNUNetSetupError(f"configuration {seen[-1]!r}: inherits_from must be a name, got {name!r}")
    resolved: dict = {}
    for config in reversed(chain):
        resolved.update(config)
    return resolved


def s2mnet_configuration(
    base: dict,
    base_name: str = BASE_CONFIGURATION,
    arch_kwargs: dict | None = None,
    batch_size: int | None = None,
    patch_size: list[int] | None = None,
) -> dict:
    """The configuration dict added to the plans (see the module docstring).

    Args:
        base: the resolved base configuration (its ``patch_size`` is rounded up to multiples of 32).
        base_name: the configuration inherited from.
        arch_kwargs: extra :class:`~s2mnet.models.S2MNet` arguments (``{"routing": "none"}``…).
        batch_size: overrides the inherited batch size.
        patch_size: overrides the patch size (rounded up to multiples of 32).

    Raises:
        NNUNetSetupError: a base configuration that is not 2-D, or bad overrides.
    """
    patch = patch_size if patch_size is not None else base.get("patch_size", [])
    if not isinstance(patch, list | tuple) or len(patch) != 2:
        raise NNUNetSetupError(
            f"configuration {base_name!r} has patch size {str(patch)[:40]}; S2M-Net is 2-D (use nnU-Net's 2d)"
        )
    if not all(_is_int(side) and 1 <= side <= MAX_PATCH_SIDE for side in patch):
        raise NNUNetSetupError(
            f"configuration {base_name!r}: patch size {str(list(patch))[:60]} must be two integers in "
            f"1..{MAX_PATCH_SIDE}"
        )
    config: dict[str, Any] = {"inherits_from": base_name, "patch_size": round_patch(list(patch))}
    if batch_size is not None:
        if not _is_int(batch_size) or not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise NNUNetSetupError(f"batch size must be an integer in 1..{MAX_BATCH_SIZE}, got {batch_size}")
        config["batch_size"] = int(batch_size)
    inherited = base.get("batch_size")
    if (
        batch_size is None
        and inherited is not None
        and (not _is_int(inherited) or not 1 <= inherited <= MAX_BATCH_SIZE)
    ):
        raise NNUNetSetupError(
            f"configuration {base_name!r}: batch_size {str(inherited)[:40]} must be an integer in "
            f"1..{MAX_BATCH_SIZE}"
        )
    extra = dict(arch_kwargs or {})
    if "strides" in extra or "deep_supervision" in extra:
        raise NNUNetSetupError(
            "arch kwargs may not set strides or deep_supervision (fixed by S2M-Net/nnU-Net)"
        )
    config["architecture"] = {
        "network_class_name": NETWORK_CLASS_NAME,
        "arch_kwargs": {"strides": [list(s) for s in S2MNET_STRIDES], **extra},
        "_kw_requires_import": [],
    }
    config[MARKER] = {
        "written_by": WRITTEN_BY,
        "base_patch_size": [int(v) for v in base.get("patch_size", [])],
        "note": "patch rounded up to multiples of 32; deep supervision at 1, 1/2, 1/4, 1/8, 1/16",
    }
    return config


def check_arch_kwargs(arch_kwargs: dict) -> None:
    """Check ``arch_kwargs``: bounded as run.json's model arguments, then by building the network once.

    Raises:
        S2MError: a width or other number out of bounds (before anything is built), or arguments
            :class:`~s2mnet.models.S2MNet` rejects.
    """
    from s2mnet.engine.rundir import check_model_args

    check_model_args(arch_kwargs, "--arch-kwargs")
    from s2mnet.nnunet.network import S2MNetNNUNet

    try:
        S2MNetNNUNet(1, 2, strides=S2MNET_STRIDES, **arch_kwargs)
    except (S2MError, ValueError, TypeError) as error:
        raise NNUNetSetupError(f"arch kwargs {arch_kwargs}: {error}") from error


def add_configuration(
    dataset: str | int,
    preprocessed: str | os.PathLike | None = None,
    plans_name: str = DEFAULT_PLANS,
    configuration: str = CONFIGURATION,
    base: str = BASE_CONFIGURATION,
    arch_kwargs: dict | None = None,
    batch_size: int | None = None,
    patch_size: list[int] | None = None,
    raw: str | os.PathLike | None = None,
) -> dict:
    """Add (or refresh) ``configuration`` in the dataset's plans file; idempotent.

    Args:
        dataset: nnU-Net dataset id (``4``) or folder name (``Dataset004_Hippocampus``).
        preprocessed: the ``nnUNet_preprocessed`` folder (default: the environment variable).
        plans_name: plans identifier (``nnUNetPlans``; ``nnUNetResEncUNetMPlans`` for ResEnc plans).
        configuration: name of the added configuration.
        base: the 2-D configuration it inherits from.
        arch_kwargs: extra S2M-Net arguments stored in the plans.
        batch_size: batch size instead of the inherited one.
        patch_size: patch size instead of the base's (rounded up to multiples of 32).
        raw: the ``nnUNet_raw`` folder, to find a ``splits_final.json`` (default: the environment
            variable; nothing is copied when neither is set).

    Returns:
        ``{"plans": path, "dataset": name, "configuration": name, "status": "added" | "updated" |
        "unchanged", "config": dict, "splits": str | None}``.

    Raises:
        NNUNetSetupError: folder not set, dataset not planned, no 2-D base configuration, or a
            configuration of that name that ``s2m`` did not write.
    """
    root = env_folder("nnUNet_preprocessed", preprocessed)
    folder = dataset_folder(
        root, dataset, f"run `nnUNetv2_plan_and_preprocess -d {dataset} -c 2d` first (it is not planned)"
    )
    plans_path = folder / f"{plans_name}.json"
    if not plans_path.is_file():
        raise NNUNetSetupError(
            f"{plans_path}: no plans file; run `nnUNetv2_plan_and_preprocess -d {dataset} -c 2d` first"
        )
    plans = read_json(plans_path)
    configurations = plans.get("configurations") if isinstance(plans, dict) else None
    if not isinstance(configurations, dict):
        raise NNUNetSetupError(f'{plans_path}: no "configurations" (not an nnU-Net v2 plans file)')
    if base not in configurations:
        raise NNUNetSetupError(
            f"{plans_path}: no {base!r} configuration to inherit from (available: "
            f"{', '.join(configurations)}); plan with `nnUNetv2_plan_and_preprocess -d {dataset} -c 2d`"
        )
    if arch_kwargs:
        check_arch_kwargs(arch_kwargs)
    try:
        resolved = resolve_configuration(configurations, base)
        new = s2mnet_configuration(resolved, base, arch_kwargs, batch_size, patch_size)
    except NNUNetSetupError as error:
        raise NNUNetSetupError(f"{plans_path}: {error}") from None
    old = configurations.get(configuration)
    if old is not None and not (isinstance(old, dict) and MARKER in old):
        raise NNUNetSetupError(
            f"{plans_path}: configuration {configuration!r} exists and was not written by s2m; "
            "choose another name with --configuration"
        )
    status = "unchanged" if old == new else ("updated" if old is not None else "added")
    if status != "unchanged":
        configurations[configuration] = new
        write_json(plans_path, plans)
    splits = sync_splits(folder, raw)
    return {
        "plans": plans_path,
        "dataset": folder.name,
        "configuration": configuration,
        "status": status,
        "config": new,
        "resolved_patch_size": new["patch_size"],
        "batch_size": new.get("batch_size", resolved.get("batch_size")),
        "preprocessed_data": (folder / str(resolved.get("data_identifier", ""))).is_dir(),
        "splits": splits,
    }


def sync_splits(preprocessed_dataset: Path, raw: str | os.PathLike | None = None) -> str | None:
    """Copy the raw dataset's ``splits_final.json`` (``s2m nnunet convert``) into the preprocessed folder.

    Only when the preprocessed folder has none (nnU-Net writes its own 5-fold file at the first training
    otherwise). Returns a one-line description of what was done, or ``None`` when there is no such file.
    """
    target = preprocessed_dataset / SPLITS_FILE
    raw_value = raw if raw is not None else os.environ.get("nnUNet_raw")  # noqa: SIM112 (nnU-Net's name)
    source = Path(raw_value).expanduser() / preprocessed_dataset.name / SPLITS_FILE if raw_value else None
    if source is None or not source.is_file():
        return f"kept {target}" if target.is_file() else None
    if target.is_file():
        same = read_json(target) == read_json(source)
        return f"kept {target}" + ("" if same else f" (differs from {source})")
    shutil.copyfile(source, target)
    return f"copied {source} -> {target}"
