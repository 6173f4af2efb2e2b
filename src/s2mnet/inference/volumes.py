"""``s2m predict`` on NIfTI volumes: every slice segmented, label volumes written with the source affine.

Reading, slicing and writing volumes is the data layer's (:mod:`s2mnet.data.formats.nifti`); this module
runs a trained model over them (docs/data.md, "Formats"). Outputs are all-or-nothing as for images: the
volumes' headers are checked first, the output folder is claimed and the volumes are staged and moved into
place after the last one (:class:`~s2mnet.data.mask_files.MaskOutput`).

With ``probabilities`` (``s2m predict --probabilities``) each volume also gets
``OUTPUT/probabilities/<case>.nii.gz``: a 4-D float32 NIfTI ``(X, Y, Z, C)`` with the input's affine, the
channels as for images (:mod:`s2mnet.inference.extras`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from s2mnet.data.formats.labels import LabelMap
from s2mnet.data.formats.nifti import (
    group_modalities,
    is_volume_file,
    read_image_slice,
    volume_shape,
    volume_stem,
    write_label_volume,
    write_probability_volume,
)
from s2mnet.data.mask_files import PROBABILITIES_DIR, MaskOutput
from s2mnet.errors import DataError


def volume_inputs(paths) -> list[Path]:
    """The NIfTI files among ``s2m predict`` inputs (files as given, folders → their volumes, sorted)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_file() and is_volume_file(path):
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.is_file() and is_volume_file(p)))
    return found


def predict_volumes(
    run_dir: str | os.PathLike,
    volumes: list[Path],
    output_dir: str | os.PathLike,
    tta: bool = False,
    overwrite: bool = False,
    device=None,
    which: str = "best",
    probabilities: bool = False,
    folds: list[int] | None = None,
) -> list[Path]:
    """``s2m predict`` on NIfTI inputs: ``OUTPUT/<case>.nii.gz`` label volumes with the source affine.

    Inputs with several modalities are grouped by the run's modality suffixes (``plan["modalities"]``:
    ``<case>_flair.nii.gz``, ``<case>_t1.nii.gz``…) or nnU-Net's ``<case>_0000.nii.gz``… names.
    Every slice along the run's slicing axis (``plan["slice_axis"]``, default the last) is segmented
    with :func:`s2mnet.engine.predictor.predict_mask` on the per-volume normalised intensities; classes
    are written as the dataset's stored label values (``plan["labels"]``; region runs rebuild the label
    map with :func:`s2mnet.data.labels.labels_from_regions`).

    Raises:
        S2MError: an existing output without ``overwrite``; DataError: unreadable or mismatched volumes.
    """
    import torch

    from s2mnet.data.labels import is_multilabel, labels_from_regions
    from s2mnet.engine.checkpoint import load_model
    from s2mnet.engine.predictor import mask_of_probs, predict_image_probs
    from s2mnet.engine.rundir import run_plan
    from s2mnet.errors import S2MError
    from s2mnet.models import optimize_for_inference

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, config = load_model(run_dir, which=which, device=device, **({"folds": folds} if folds else {}))
    model = optimize_for_inference(model)  # BN folded, channels-last, fused blocks (docs/speed.md)
    plan = run_plan(Path(run_dir), config)
    from s2mnet.data.formats.nnunet import group_channel_files

    modalities = plan.get("modalities") or []
    if len(modalities) > 1 and not all(m.isdigit() for m in modalities):  # BraTS-style _flair, _t1, ...
        cases = group_modalities(volumes, modalities)
    else:
        cases = group_channel_files(volumes, int(plan.get("in_channels", 1)), volume_stem)
    targets = [Path(output_dir) / f"{name}.nii.gz" for name, _ in cases]
    prob_targets = [Path(output_dir) / PROBABILITIES_DIR / f"{name}.nii.gz" for name, _ in cases]
    inputs = {p.resolve() for p in volumes}
    for target in [*targets, *(prob_targets if probabilities else [])]:
        if target.resolve() in inputs or (target.exists() and not overwrite):
            raise S2MError(f"{target}: already exists; pass --overwrite to replace, or choose another folder")
    for _, images in cases:  # every volume's header, before any work
        shape = volume_shape(images[0])
        for image in images[1:]:
            if volume_shape(image) != shape:
                raise DataError(
                    f"{image}: volume shape {volume_shape(image)} differs from {images[0].name} {shape}"
                )
    labels = LabelMap.from_json(plan["labels"]) if plan.get("labels") else None
    axis = range(3)[int(plan.get("slice_axis", -1))]
    # rebuilt region maps already hold the stored values; only class indices go through ``labels``
    value_map = None if is_multilabel(plan) else labels
    written = []
    with MaskOutput(output_dir, overwrite) as staged:  # volumes appear only when every one succeeded
        for (_, images), target in zip(cases, targets, strict=True):
            slices, prob_slices = [], []
            for index in range(volume_shape(images[0])[axis]):
                stacked = np.stack([read_image_slice(p, axis, index) for p in images], axis=-1)
                probs = predict_image_probs(model, stacked, plan, tta=tta, device=device)
                mask = mask_of_probs(probs, plan)
                if is_multilabel(plan):
                    mask = labels_from_regions(mask, plan["regions"])
                slices.append(mask)
                if probabilities:
                    prob_slices.append(np.moveaxis(probs.numpy(), 0, -1))  # (H, W, C)
            write_label_volume(np.stack(slices, axis=axis), images[0], staged.path(target), value_map)
            written.append(target)
            if probabilities:
                prob_target = prob_targets[len(written) - 1]
                volume = np.stack(prob_slices, axis=axis)  # the slicing axis back in place; channels last
                write_probability_volume(volume, images[0], staged.path(prob_target))
    return written
