"""``s2m predict``: masks for new images with a trained run, at each image's original size.

Every output is ``OUTPUT/<image stem>.png``: {0, 255} for binary runs, class indices 0..K-1 for
multi-class runs (8-bit grey PNG). Inputs and outputs are checked before any work by
:mod:`s2mnet.data.mask_files` (shared with the onnxruntime predictor): nothing the user had is replaced
silently, and colliding mask names are refused.

Multi-label runs (overlapping regions, :mod:`s2mnet.data.labels`) write one {0, 255} mask per region,
``OUTPUT/<region>/<stem>.png``, and, when the regions are nested or disjoint (BraTS ET ⊂ TC ⊂ WT), the
label map rebuilt from them in the dataset's own values, ``OUTPUT/<stem>.png`` (BraTS: WT\\TC → 2,
TC\\ET → 1, ET → 4; :func:`~s2mnet.data.labels.labels_from_regions`).

All or nothing: the output folder is claimed (two ``s2m predict`` never write into the same folder),
every input's header is read before the model is loaded, and the masks are staged in a hidden folder and
moved into place only after the last image (:class:`~s2mnet.data.mask_files.MaskOutput`): an unreadable
image leaves the output folder as it was.

No field-of-view mask is available for new images, so a fundus run's masks are not restricted to a FOV
here (``s2m evaluate`` restricts its metrics to the dataset's FOV masks).

``probabilities=True`` (``--probabilities``) also writes ``OUTPUT/probabilities/<stem>.npy``: a float32
``(C, H, W)`` array at the image's size (C = 1 sigmoid for binary runs, K softmax channels including the
background for multi-class runs, R sigmoids for multi-label runs), read with
``np.load(path, allow_pickle=False)``. ``overlays=True`` (``--overlays``) writes
``OUTPUT/overlays/<stem>.png``, the prediction's contour on the image
(:func:`s2mnet.inference.report.save_contour_overlay`). Both are staged with the masks.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from s2mnet.data.checks import mask_fractions, prediction_warnings
from s2mnet.data.formats.nnunet import group_channel_files, read_channel_files
from s2mnet.data.labels import is_multilabel, labels_from_regions, paint_order
from s2mnet.data.mask_files import MaskOutput, check_inputs, input_images, output_paths
from s2mnet.engine.checkpoint import load_model
from s2mnet.engine.predictor import mask_of_probs, predict_image_probs
from s2mnet.engine.rundir import read_run_config, run_plan
from s2mnet.errors import S2MError
from s2mnet.inference.extras import PredictionExtras
from s2mnet.models import optimize_for_inference


def predict_paths(
    run_dir: str | Path,
    input_path: str | Path | Sequence[str | Path],
    output_dir: str | Path,
    tta: bool = False,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    which: str = "best",
    progress: bool | None = None,
    colours: bool = False,
    warn: Callable[[str], None] | None = None,
    probabilities: bool = False,
    overlays: bool = False,
    folds: Sequence[int] | None = None,
) -> list[Path]:
    """Segment one image or every image of a folder and save the masks as PNG.

    Args:
        run_dir: a folder written by ``s2m train``.
        input_path: an image file, or a folder whose image files (not its sub-folders) are segmented,
            or a list of those.
        output_dir: where the masks go (created if needed).
        tta: 8-way dihedral test-time augmentation.
        overwrite: allow replacing existing mask files of the same names.
        device: ``None`` → CUDA when available, else CPU.
        which: ``"best"`` or ``"last"`` checkpoint.
        progress: show a progress bar; ``None`` → when standard error is a terminal.
        colours: write RGB masks in the colours of the run's ``palette.json`` (docs/data.md, "Formats").
        warn: called with each warning line (predictions empty or all foreground on most images,
            :func:`s2mnet.data.checks.prediction_warnings`); ``None`` → not reported.
        probabilities: also write ``OUTPUT/probabilities/<stem>.npy`` (see the module docstring).
        overlays: also write ``OUTPUT/overlays/<stem>.png`` (the prediction's contour on the image).
        folds: the folds of a cross-validation run to ensemble (``None`` → all; docs/tool.md).

    Returns:
        The written mask paths, in input order (sorted by file name for a folder).

    Raises:
        RunError: missing or incomplete run. DataError: missing input, no images, unreadable image
            (naming the file). S2MError: an output that exists (without ``overwrite``, or not written
            by an earlier ``s2m predict``), that would replace an input, two inputs mapping to the same
            output name, a non-empty output folder (without ``overwrite``), or one another process holds.
    """
    from s2mnet.inference.volumes import predict_volumes, volume_inputs

    volumes = volume_inputs(input_path)  # NIfTI inputs → label volumes (docs/data.md, "Formats")
    if volumes:
        if overlays:
            raise S2MError("--overlays is not supported for NIfTI volumes yet (images only)")
        return predict_volumes(
            run_dir, volumes, output_dir, tta, overwrite, device, which, probabilities, folds=folds
        )
    inputs = input_images(input_path)
    run_dir = Path(run_dir)
    plan = run_plan(run_dir, read_run_config(run_dir))
    # Several channel files per image (nnU-Net <case>_0000.png, _0001.png): one mask <case>.png.
    channel_files = group_channel_files(inputs, int(plan.get("in_channels", 3)))
    check_inputs([path for _, files in channel_files for path in files])  # headers, before any work
    if len(channel_files) < len(inputs):
        inputs = [files[0].with_name(f"{name}.png") for name, files in channel_files]
    regions = plan.get("regions") if is_multilabel(plan) else None
    with_label_map = regions is None or paint_order(regions) is not None
    outputs = output_paths(inputs, output_dir, overwrite) if with_label_map else [None] * len(inputs)
    region_outputs = [output_paths(inputs, Path(output_dir) / name, overwrite) for name in regions or {}]
    extras = PredictionExtras(inputs, output_dir, overwrite, probabilities, overlays)

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, config = load_model(run_dir, which=which, device=device, **({"folds": folds} if folds else {}))
    model = optimize_for_inference(model)  # BN folded, channels-last, fused blocks (docs/speed.md)
    binary = int(plan.get("num_classes", config.get("num_classes", 1))) == 1

    pairs = list(enumerate(zip(inputs, outputs, strict=True)))
    if progress or (progress is None and sys.stderr.isatty()):
        from tqdm import tqdm

        pairs = tqdm(pairs, desc="predict", unit="image")
    written, fractions = [], []
    with MaskOutput(output_dir, overwrite) as staged:  # masks appear only when every image succeeded
        for position, (_source, target) in pairs:
            image = read_channel_files(channel_files[position][1])
            probs = predict_image_probs(model, image, plan, tta=tta, device=device)
            mask = mask_of_probs(probs, plan)
            fractions.extend(mask_fractions([mask]))
            extras.write(staged, position, probs.numpy(), image, mask)
            if regions is not None:
                for region_paths, region_mask in zip(region_outputs, mask, strict=True):
                    staged.write(region_paths[position], region_mask, binary=True)
                    written.append(region_paths[position])
                if target is None:
                    continue
                mask, binary = labels_from_regions(mask, regions), False
            if colours:
                from s2mnet.data.formats.palette import write_colour_mask

                write_colour_mask(staged.path(target), mask, plan)
            else:
                staged.write(target, mask, binary)
            written.append(target)
    for line in prediction_warnings(fractions) if warn is not None else []:
        warn(line)
    return written
