"""The preset registry: one small entry per benchmark of the paper (PAPER.md §5).

Each :class:`Preset` states the publisher's layout (paired by the generic rules of
:func:`s2mnet.data.discover`, never by preset-specific file names), a check of the discovered image names,
the label mode, the split (a JSON file shipped in ``s2mnet/presets/splits/``), the protocol at each scale
and the paper's reported numbers.

Scales (choice documented in docs/presets.md):

* ``paper`` — PAPER.md §4: 352² resized images (fundus: 256² native-resolution patches, green channel +
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

import hashlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from s2mnet.data.labels import LABEL_PRESETS
from s2mnet.errors import DataError, S2MError

if TYPE_CHECKING:
    from s2mnet.data.discover import DatasetIndex

SCALES = ("paper", "cpu-small", "ci")
#: PAPER.md §5 columns besides S2M-Net (the named "best other" differs per dataset).
_BASELINE_COLUMNS = ("U-Net", "TransUNet", "Swin-Unet")
_SHOWN = 3

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
_PLANS: dict[str, dict[str, dict[str, Any]]] = {
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
PAPER_VIRTUAL_EPOCH_FACTOR = 30  # PAPER.md §4: small datasets expanded ×30 per epoch


@dataclass(frozen=True)
class PaperNumbers:
    """Dice (%) the paper reports (PAPER.md §5, ICML version, mean of 5 runs).

    Attributes:
        s2mnet: S2M-Net's Dice.
        baselines: every baseline of the row, ``{name: Dice}``.
        per_class: per-class Dice where the paper gives it (it gives none: multi-class rows are means).
    """

    s2mnet: float
    baselines: dict[str, float]
    per_class: dict[str, float] = field(default_factory=dict)

    def best_baseline(self) -> tuple[str, float]:
        """The strongest baseline of the row (which may beat S2M-Net, as on CVC-ColonDB)."""
        name = max(self.baselines, key=self.baselines.__getitem__)
        return name, self.baselines[name]


def _paper(
    s2mnet: float, unet: float, transunet: float, swin: float, other: str, value: float
) -> PaperNumbers:
    baselines = dict(zip(_BASELINE_COLUMNS, (unet, transunet, swin), strict=True))
    baselines[other] = value
    return PaperNumbers(s2mnet, baselines)


@dataclass(frozen=True)
class Preset:
    """One benchmark of the paper.

    Attributes:
        name: registry key (``s2m reproduce NAME``).
        title: the dataset's name in PAPER.md.
        modality: imaging modality.
        layout: the publisher's layout (what ``--data`` may point at), and the copies also accepted.
        label_mode: ``binary``, ``multiclass`` or ``multilabel`` (:mod:`s2mnet.data.labels`).
        classes: foreground class names.
        split_file: JSON file in ``s2mnet/presets/splits/`` (:func:`resolve_split`).
        protocol: ``resize`` (352² resized images) or ``fundus`` (patches, green channel + CLAHE).
        name_pattern: regular expression every image file stem must match (:func:`check_data`).
        example_names: shown in the error when the folder does not look like this dataset.
        full_size: number of labelled images (BraTS: volumes, ACDC: patients) in the public release.
        paper: the paper's numbers.
        labels: extra plan settings of the label mode (``label_mode``/``regions``), if any.
        ready: False for registry entries whose data format or label mode is completed elsewhere.
        notes: caveats shown in the docs and the result row.
        epoch_factor: ``paper`` scale samples per epoch = this × the training cases (PAPER.md §4's ×30
            "virtual epoch" of small datasets; 1 for BraTS, whose tens of thousands of slices are not small).
    """

    name: str
    title: str
    modality: str
    layout: str
    label_mode: str
    classes: tuple[str, ...]
    split_file: str
    protocol: str
    name_pattern: str
    example_names: str
    full_size: int | None
    paper: PaperNumbers
    labels: dict[str, Any] = field(default_factory=dict)
    ready: bool = True
    notes: str = ""
    epoch_factor: int = PAPER_VIRTUAL_EPOCH_FACTOR

    def split_spec(self) -> dict[str, Any]:
        """The shipped split file, parsed."""
        text = resources.files("s2mnet.presets").joinpath("splits", self.split_file).read_text("utf-8")
        return json.loads(text)


_POLYP = "colonoscopy (polyps)"
_ENDOVIS_LAYOUT = (
    "instrument_dataset_<n>/left_frames/frame<nnn>.png ↔ instrument_dataset_<n>/ground_truth/"
    "<Instrument>_labels/frame<nnn>.png (one part map per instrument: 10 shaft, 20 wrist, 30 clasper; "
    "merged); "
    "right_frames/ (stereo right view) ignored"
)
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "kvasir",
            "Kvasir-SEG",
            _POLYP,
            "Kvasir-SEG/images/<id>.jpg ↔ Kvasir-SEG/masks/<id>.jpg (JPEG masks, thresholded at 128); "
            "kavsir_bboxes.json ignored",
            "binary",
            ("polyp",),
            "kvasir.json",
            "resize",
            r"c[a-z0-9]+",
            "cju0qkwl35piu0993l0dewei2",
            1000,
            _paper(96.05, 90.64, 93.75, 93.22, "DuckNet", 94.11),
        ),
        Preset(
            "cvc-clinicdb",
            "CVC-ClinicDB",
            _POLYP,
            "CVC-ClinicDB/Original/<n>.tif ↔ CVC-ClinicDB/Ground Truth/<n>.tif (also the PNG release and "
            "PraNet's images/ + masks/ copies)",
            "binary",
            ("polyp",),
            "cvc-clinicdb.json",
            "resize",
            r"\d+",
            "1, 2, … 612",
            612,
            _paper(95.65, 92.18, 87.28, 92.52, "RAPUNet", 95.10),
        ),
        Preset(
            "cvc-colondb",
            "CVC-ColonDB",
            _POLYP,
            "CVC-ColonDB/images/<n>.png ↔ CVC-ColonDB/masks/<n>.png (the 380-image release of PraNet's "
            "TestDataset, the one in public circulation); Original/ + Ground Truth/ variants also pair",
            "binary",
            ("polyp",),
            "cvc-colondb.json",
            "resize",
            r"\d+",
            "1, 2, … 380",
            380,
            _paper(90.69, 88.12, 90.33, 91.45, "PraNet", 92.78),
        ),
        Preset(
            "etis",
            "ETIS-LaribDB",
            _POLYP,
            "ETIS-LaribPolypDB/ETIS-LaribPolypDB/<n>.tif ↔ ETIS-LaribPolypDB/Ground Truth/p<n>.tif (original "
            "release); PraNet's images/<n>.png + masks/<n>.png copy also pairs",
            "binary",
            ("polyp",),
            "etis.json",
            "resize",
            r"\d+",
            "1, 2, … 196",
            196,
            _paper(96.12, 91.22, 94.43, 94.10, "DuckNet", 94.98),
        ),
        Preset(
            "isic2018",
            "ISIC-2018",
            "dermoscopy (skin lesions)",
            "ISIC2018_Task1-2_{Training,Validation,Test}_Input/ISIC_<7 digits>.jpg ↔ "
            "ISIC2018_Task1_{Training,Validation,Test}_GroundTruth/ISIC_<id>_segmentation.png",
            "binary",
            ("lesion",),
            "isic2018.json",
            "resize",
            r"ISIC_\d{7}",
            "ISIC_0000000",
            3694,
            _paper(91.09, 86.93, 87.12, 89.43, "DuckNet", 90.10),
        ),
        Preset(
            "ph2",
            "PH2",
            "dermoscopy (skin lesions)",
            "PH2Dataset/PH2 Dataset images/IMD<nnn>/IMD<nnn>_Dermoscopic_Image/IMD<nnn>.bmp ↔ "
            "IMD<nnn>_lesion/IMD<nnn>_lesion.bmp; IMD<nnn>_roi/ colour-region files ignored",
            "binary",
            ("lesion",),
            "ph2.json",
            "resize",
            r"IMD\d{3}",
            "IMD002",
            200,
            _paper(96.67, 88.34, 93.56, 92.66, "RAPUNet", 92.15),
        ),
        Preset(
            "glas",
            "GlaS",
            "histology (colon glands)",
            "Warwick QU Dataset/{train,testA,testB}_<n>.bmp ↔ <same>_anno.bmp (instance maps: every "
            "non-zero label is gland); Grade.csv ignored",
            "binary",
            ("gland",),
            "glas.json",
            "resize",
            r"(train|testA|testB)_\d+",
            "train_1, testA_1, testB_1",
            165,
            _paper(93.83, 91.57, 89.92, 89.01, "RAPUNet", 91.67),
            labels={"label_mode": "binary", "regions": {"gland": list(range(1, 256))}},
            notes="instance maps become binary through the label-mode regions (any label = gland)",
        ),
        Preset(
            "busi",
            "BUSI",
            "breast ultrasound (tumours)",
            "Dataset_BUSI_with_GT/{benign,malignant,normal}/<class> (<n>).png beside <class> (<n>)_mask.png "
            "(+ _mask_1.png: second lesion, united); also images/ + masks/ copies such as BUSI-100",
            "binary",
            ("lesion",),
            "busi.json",
            "resize",
            r"(benign|malignant|normal) \(\d+\)",
            "benign (3), malignant (12), normal (1)",
            780,
            _paper(85.07, 76.77, 82.11, 82.52, "RAPUNet", 81.34),
            notes="the paper does not say whether the 133 normal images (empty masks) were kept; kept here",
        ),
        Preset(
            "stare",
            "STARE",
            "fundus (retinal vessels)",
            "stare-images/im<nnnn>.ppm[.gz] ↔ labels-ah/im<nnnn>.ah.ppm[.gz] (Hoover); labels-vk/*.vk.ppm "
            "(second observer) ignored; no field-of-view masks distributed",
            "binary",
            ("vessel",),
            "stare.json",
            "fundus",
            r"im\d{4}",
            "im0001, im0044",
            20,
            _paper(84.45, 81.18, 83.10, 83.86, "PraNet", 82.94),
        ),
        Preset(
            "drive",
            "DRIVE",
            "fundus (retinal vessels)",
            "DRIVE/{training,test}/images/<nn>_{training,test}.tif ↔ 1st_manual/<nn>_manual1.gif, "
            "field of view mask/<nn>_{training,test}_mask.gif; 2nd_manual/ ignored; also flat images/ + "
            "masks/ + fov_masks/ copies such as ../shared/data/DRIVE",
            "binary",
            ("vessel",),
            "drive.json",
            "fundus",
            r"\d{2}_(training|test)",
            "21_training, 01_test",
            40,
            _paper(84.06, 79.02, 81.45, 83.07, "RAPUNet", 82.94),
        ),
        Preset(
            "chase",
            "CHASE-DB1",
            "fundus (retinal vessels)",
            "CHASEDB1/Image_<nn><L|R>.jpg beside Image_<nn><L|R>_1stHO.png; _2ndHO.png (second observer) "
            "ignored; no field-of-view masks distributed",
            "binary",
            ("vessel",),
            "chase.json",
            "fundus",
            r"Image_\d{2}[LR]",
            "Image_01L, Image_14R",
            28,
            _paper(84.95, 81.51, 82.93, 83.12, "RAPUNet", 83.21),
        ),
        Preset(
            "endovis17-binary",
            "EndoVis17 binary",
            "robotic surgery video (instruments)",
            _ENDOVIS_LAYOUT,
            "binary",
            ("instrument",),
            "endovis17.json",
            "resize",
            r"frame\d{3}",
            "frame000, frame224",
            1800,
            _paper(95.95, 95.93, 95.45, 95.24, "RAPUNet", 95.78),
            labels=LABEL_PRESETS["endovis17_binary"],
            notes="instrument = any part value (10, 20, 30) of any instrument's mask; Other_labels' values "
            "are not parts (background); frames used whole (the 1280×1024 crop at (320, 28) is not applied)",
        ),
        Preset(
            "endovis17-parts",
            "EndoVis17 multiclass (shaft/wrist/clasper)",
            "robotic surgery video (instrument parts)",
            _ENDOVIS_LAYOUT,
            "multiclass",
            ("shaft", "wrist", "clasper"),
            "endovis17.json",
            "resize",
            r"frame\d{3}",
            "frame000, frame224",
            1800,
            _paper(83.43, 61.07, 74.74, 73.22, "RAPUNet", 74.81),
            labels=LABEL_PRESETS["endovis17_parts"],
            notes="the paper gives only the mean over the three parts; the instruments' part maps are merged "
            "by the largest value where two overlap",
        ),
        Preset(
            "brats2020",
            "BraTS2020 (ET/TC/WT)",
            "brain MRI (tumour regions)",
            "MICCAI_BraTS2020_TrainingData/BraTS20_Training_<nnn>/BraTS20_Training_<nnn>_"
            "{flair,t1,t1ce,t2,seg}.nii[.gz] (4 modalities stacked as channels, axial slices along the last "
            "axis); name_mapping.csv, survival_info.csv and unlabelled validation volumes ignored",
            "multilabel",
            ("ET", "TC", "WT"),
            "brats2020.json",
            "resize",
            r"BraTS20_Training_\d{3}_flair",
            "BraTS20_Training_001_flair",
            369,
            _paper(79.96, 65.67, 68.36, 69.86, "RAPUNet", 67.82),
            labels=LABEL_PRESETS["brats"],
            epoch_factor=1,
            notes="the paper gives only the mean over ET/TC/WT; test Dice per 3-D volume; training case "
            "355's label is distributed as W39_1998.09.19_Segm.nii: rename it BraTS20_Training_355_seg.nii "
            "or the case is ignored",
        ),
        Preset(
            "acdc",
            "ACDC (LV/MYO/RV)",
            "cardiac cine MRI",
            "ACDC/database/{training,testing}/patient<nnn>/patient<nnn>_frame<nn>.nii.gz ↔ "
            "patient<nnn>_frame<nn>_gt.nii.gz (end-diastole and end-systole frames, slices along the last "
            "axis); patient<nnn>_4d.nii.gz and Info.cfg ignored",
            "multiclass",
            ("RV", "MYO", "LV"),
            "acdc.json",
            "resize",
            r"patient\d{3}_frame\d{2}",
            "patient001_frame01",
            150,
            _paper(93.09, 89.52, 92.44, 92.32, "DuckNet", 92.13),
            labels=LABEL_PRESETS["acdc"],
            notes="the paper gives only the mean over LV/MYO/RV; test Dice per 3-D volume",
        ),
    )
}


def list_presets(ready_only: bool = False) -> list[str]:
    """Preset names (``ready_only``: without the placeholders completed elsewhere)."""
    return [name for name, preset in PRESETS.items() if preset.ready or not ready_only]


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (case-insensitive; ``_`` and ``-`` alike); unknown → S2MError."""
    key = name.strip().lower().replace("_", "-")
    aliases = {p.title.lower().replace("_", "-"): p.name for p in PRESETS.values()}
    preset = PRESETS.get(key) or PRESETS.get(aliases.get(key, ""))
    if preset is None:
        raise S2MError(f"unknown dataset preset {name!r} (known: {', '.join(PRESETS)})")
    return preset


def check_data(preset: Preset, root) -> DatasetIndex:
    """Discover ``root`` and check that its images look like the preset's dataset.

    Raises:
        DataError: one line naming the folder, the dataset, the mismatching names and the expected layout.
    """
    from s2mnet.data import discover
    from s2mnet.data.io import file_stem

    if not preset.ready:
        raise S2MError(f"preset {preset.name!r} is a placeholder: its data format is not available yet")
    index = discover(root)
    pattern = re.compile(preset.name_pattern)
    stems = [file_stem(case.image) for case in index.cases]
    wrong = [stem for stem in stems if not pattern.fullmatch(stem)]
    if wrong:
        shown = ", ".join(wrong[:_SHOWN]) + (", …" if len(wrong) > _SHOWN else "")
        raise DataError(
            f"{root}: does not look like {preset.title}: {len(wrong)} of {len(stems)} image names ({shown}) "
            f"are not like {preset.example_names}; expected {preset.layout}"
        )
    return index


def plan_overrides(preset: Preset, scale: str, n_train: int) -> dict[str, Any]:
    """The data-plan settings of ``scale`` (``paper``: virtual epoch ``epoch_factor`` × ``n_train``)."""
    if scale not in SCALES:
        raise S2MError(f"unknown scale {scale!r} (use {', '.join(SCALES[:2])})")
    plan = dict(_PLANS[preset.protocol][scale])
    if scale == "paper":
        plan["samples_per_epoch"] = preset.epoch_factor * max(1, n_train)
    if preset.label_mode == "binary" and not preset.labels:
        plan["num_classes"] = 1
    plan.update(preset.labels)
    return plan


def _seeded_order(ids: list[str], seed: int) -> list[str]:
    """Ids ordered by SHA-256 of ``"<seed>:<id>"`` (independent of library versions and of other ids)."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())


def _counts(n: int, ratios: dict[str, float]) -> tuple[int, int]:
    """(test, val) sizes: rounded shares, at least one each when there are ≥ 3 cases."""
    if n < 3:
        return (1, 0) if n == 2 else (0, 0)
    n_test = max(1, round(ratios.get("test", 0.0) * n)) if ratios.get("test") else 0
    n_val = max(1, round(ratios.get("val", 0.0) * n)) if ratios.get("val") else 0
    return n_test, min(n_val, n - n_test - 1)


def _carve(ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Move the seeded first ``max(1, round(fraction·n))`` ids out; returns (kept, moved), sorted."""
    if len(ids) < 2 or fraction <= 0:
        return ids, []
    count = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    moved = set(_seeded_order(ids, seed)[:count])
    return [i for i in ids if i not in moved], [i for i in ids if i in moved]


def resolve_split(preset: Preset, index: DatasetIndex) -> dict[str, Any]:
    """The preset's split of the cases in ``index``: ``{"train", "val", "test": [case ids], "source", ...}``.

    Split files (``splits/*.json``) have a ``kind``:

    * ``lists`` — explicit names per part (image stems, or units, below: official or conventional
      splits determined by names); names absent from the folder are left out and counted (``missing``);
      ``val`` is carved from ``train`` by ``val_rule`` ``{"fraction", "seed"}`` when the list has none.
    * ``published`` — the split found in the folder names by :func:`~s2mnet.data.discover` (ISIC-2018,
      ACDC's ``training/`` + ``testing/``); parts it lacks are carved from train by ``ratios``/``seed``;
      no published split → ``seeded``.
    * ``seeded`` — ``ratios`` ``{"train", "val", "test"}`` over the units ordered by SHA-256 of
      ``"<seed>:<unit>"``: the same cases for every user and every training seed.

    Every rule draws **units**, never single cases of a unit: the match of the file's ``group_pattern``
    in the image path (EndoVis17's ``instrument_dataset_<n>``, ACDC's ``patient<nnn>``), else the case's
    ``group`` (the slices of one NIfTI volume), else the case itself. A grouped split lists its units
    under ``groups``.

    Raises:
        DataError: a part that ends up empty (e.g. a folder holding only DRIVE's test images), or an
            image path without the file's ``group_pattern``.
    """
    spec = preset.split_spec()
    unit_of = _units(preset, spec, index)
    kind = spec["kind"]
    seed = int(spec.get("seed", 0))
    ratios = spec.get("ratios", {})
    missing = 0
    if kind == "lists":
        parts, missing = _listed_units(spec, index, unit_of)
        if not parts["val"]:
            rule = spec.get("val_rule", {})
            parts["train"], parts["val"] = _carve(parts["train"], float(rule.get("fraction", 0.2)), seed)
        source = spec["source"]
    elif kind == "published" and index.known_split:
        known = index.known_split
        parts = {p: sorted({unit_of[i] for i in known.get(p, [])}) for p in ("train", "val", "test")}
        source = spec["source"]
        for part in ("test", "val"):
            if not parts[part]:
                parts["train"], parts[part] = _carve(parts["train"], float(ratios.get(part, 0.1)), seed)
                source += f"; {part} carved from train ({ratios.get(part, 0.1):.0%}, seed {seed})"
    else:
        order = _seeded_order(sorted(set(unit_of.values())), seed)
        n_test, n_val = _counts(len(order), ratios)
        parts = {
            "test": sorted(order[:n_test]),
            "val": sorted(order[n_test : n_test + n_val]),
            "train": sorted(order[n_test + n_val :]),
        }
        shares = "/".join(f"{ratios.get(p, 0):.0%}" for p in ("train", "val", "test"))
        source = spec.get("fallback_source", spec["source"]) if kind != "seeded" else spec["source"]
        source += f" (seeded {shares} over SHA-256 order, seed {seed})"
    for part in ("train", "test"):
        if not parts[part]:
            raise DataError(f"{index.root}: the {preset.title} split leaves no {part} cases ({source})")
    cases = {p: sorted(c for c, u in unit_of.items() if u in set(units)) for p, units in parts.items()}
    split = {**cases, "source": source, "seed": seed, "kind": kind}
    if any(unit != case_id for case_id, unit in unit_of.items()):
        split["groups"] = parts
    if missing:
        split["missing"] = missing
    return split


def _units(preset: Preset, spec: dict[str, Any], index: DatasetIndex) -> dict[str, str]:
    """``{case id: unit}`` (:func:`resolve_split`): ``group_pattern`` match, volume group, or the case."""
    pattern = re.compile(spec["group_pattern"]) if spec.get("group_pattern") else None
    units = {}
    for case in index.cases:
        unit = case.group or case.case_id
        if pattern is not None:
            path = case.image.relative_to(index.root) if index.root in case.image.parents else case.image
            found = pattern.search(path.as_posix())
            if found is None:
                raise DataError(
                    f"{case.image}: no {preset.title} unit in its path (expected {pattern.pattern!r}, the "
                    f"unit the split keeps together); expected {preset.layout}"
                )
            unit = found.group(0)
        units[case.case_id] = unit
    return units


def _listed_units(
    spec: dict[str, Any], index: DatasetIndex, unit_of: dict[str, str]
) -> tuple[dict[str, list[str]], int]:
    """Units named by a ``lists`` file (by unit or by image stem) and the number of names not found."""
    from s2mnet.data.io import file_stem

    by_name = {file_stem(case.image): unit_of[case.case_id] for case in index.cases}
    by_name.update({unit: unit for unit in unit_of.values()})
    parts, missing = {}, 0
    for part in ("train", "val", "test"):
        listed = spec.get(part, [])
        parts[part] = sorted({by_name[name] for name in listed if name in by_name})
        missing += sum(name not in by_name for name in listed)
    return parts, missing
