"""Naming rules shared by every reader: file extensions and stems, and the words that give folders and
files their role (image, mask, field of view, second observer) and their split (docs/data.md, "Pairing").
"""

from __future__ import annotations

import os
import re
from pathlib import Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".ppm", ".pgm", ".pnm")
LOSSY_EXTENSIONS = (".jpg", ".jpeg")

SECOND_OBSERVER_WORDS = frozenset({"2nd", "second", "manual2", "2ndho", "vk", "observer2", "2ndmanual"})
#: The second view of a stereo pair, annotated only on the left view (EndoVis17's ``right_frames/``).
SECOND_VIEW_WORDS = frozenset({"rightframes", "rightimages", "rightview"})
FOV_WORDS = frozenset({"fov", "roi", "fieldofview"})
STRONG_MASK_WORDS = frozenset(
    {
        "manual",
        "manual1",
        "1st",
        "1stho",
        "gt",
        "groundtruth",
        "truth",
        "annotation",
        "annotations",
        "label",
        "labels",
        "segmentation",
        "segmentations",
        "seg",
        "target",
        "targets",
        "lesion",
        "lesions",
        "ah",
    }
)
WEAK_MASK_WORDS = frozenset({"mask", "masks"})
IMAGE_WORDS = frozenset(
    {"image", "images", "img", "imgs", "original", "originals", "input", "inputs", "raw", "frames", "photos"}
)
SPLIT_WORDS = {
    "train": frozenset({"train", "training", "trainset"}),
    "val": frozenset({"val", "valid", "validation", "dev"}),
    "test": frozenset({"test", "testing", "testset"}),
}

SEP = r"[_\-. ]"
INDEX = r"(?:[_\- ]?\(?\d{1,2}\)?)?"
SECOND_SUFFIX = re.compile(rf"{SEP}(?:manual2|2ndho|2nd[_\- ]?manual|vk|gt2|2nd)$", re.IGNORECASE)
AUXILIARY_SUFFIX = re.compile(rf"{SEP}(?:superpixels?|thumb|thumbnail|overlay|preview)$", re.IGNORECASE)
MASK_SUFFIX = re.compile(
    rf"(?:^|{SEP})(?:masks?|lesion|segmentation|seg|1stho|manual1|manual|gt|ground[_\- ]?truth|labels?|"
    rf"annotations?|anno|ah){INDEX}$",
    re.IGNORECASE,
)
FOV_SUFFIX = re.compile(rf"(?:^|{SEP})(?:fov[_\- ]?mask|fov|roi|mask){INDEX}$", re.IGNORECASE)
IMAGE_SUFFIX = re.compile(
    rf"(?:^|{SEP})(?:image|img|orig|original|input|raw|training|train|testing|test|validation|val)$",
    re.IGNORECASE,
)
# Prefix forms of the same words: mask_001.png, gt_001.png ↔ img_001.png, 001.png.
# ``p`` directly before a number (ETIS-LaribPolypDB's ``Ground Truth/p1.tif`` ↔ ``1.tif``) is one too.
MASK_PREFIX = re.compile(
    r"^(?:(?:masks?|gt|labels?|seg|segmentation|annotations?|anno)[_\-. ]|p(?=\d+$))", re.IGNORECASE
)
IMAGE_PREFIX = re.compile(r"^(?:images?|img|orig|original|input|raw)[_\-. ]", re.IGNORECASE)


def image_extension(path: str | os.PathLike) -> str:
    """The lower-case format extension, looking through ``.gz`` (STARE's ``im0001.ppm.gz`` → ``.ppm``)."""
    path = Path(path)
    if path.suffix.lower() == ".gz":
        return Path(path.stem).suffix.lower()
    return path.suffix.lower()


def file_stem(path: str | os.PathLike) -> str:
    """The file name without its format extension and ``.gz``: ``im0001.ah.ppm.gz`` → ``im0001.ah``."""
    path = Path(path)
    name = path.stem if path.suffix.lower() == ".gz" else path.name
    return Path(name).stem


def is_image_file(path: str | os.PathLike) -> bool:
    """True for files whose extension is a supported raster format (hidden files excluded)."""
    return image_extension(path) in IMAGE_EXTENSIONS and not Path(path).name.startswith(".")


def name_words(name: str) -> list[str]:
    """Split a folder name into lower-case words (camelCase and separators), plus joined pairs."""
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
    words = [w.lower() for w in re.split(r"[^0-9A-Za-z]+", spaced) if w]
    joined = ["".join(words[i : i + 2]) for i in range(len(words) - 1)]
    return words + joined


def folder_role(name: str) -> tuple[str | None, bool]:
    """Role of a folder from its words and whether the mask role is a strong one."""
    words = name_words(name)
    if any(w in SECOND_OBSERVER_WORDS or w in SECOND_VIEW_WORDS for w in words):
        return "ignored", False
    if any(w in FOV_WORDS for w in words):
        return "fov", False
    last_role: tuple[str | None, bool] = (None, False)
    for word in words:  # the last role word wins ("Segmentation_Images" holds images)
        if word in STRONG_MASK_WORDS:
            last_role = ("mask", True)
        elif word in WEAK_MASK_WORDS:
            last_role = ("mask", last_role == ("mask", True))
        elif word in IMAGE_WORDS:
            last_role = ("image", False)
    return last_role


def split_of(name: str) -> str | None:
    """The split (train/val/test) a folder or file name names, or ``None``."""
    words = set(name_words(name))
    for split, split_words in SPLIT_WORDS.items():
        if words & split_words:
            return split
    return None


def natural_key(text: str) -> list:
    """Sort key that orders numbers numerically (``case_2`` before ``case_10``), case-insensitively."""
    return [int(t) if t.isdigit() else t.casefold() for t in re.split(r"(\d+)", text)]
