"""Finding image/mask pairs in a dataset folder without flags.

The pairing is a set of general rules, not per-dataset special cases (docs/data.md lists them):

1. **Folder roles.** Every folder name is split into words (``ISIC2018_Task1_Training_GroundTruth`` →
   isic2018, task1, training, ground, truth). The innermost folder with a role word gives a file its role:
   second observer (``2nd``, ``manual2``, ``vk``, ...; ignored), field of view (``fov``, ``roi``), mask
   (``masks``, ``labels``, ``gt``, ``ground truth``, ``1st_manual``, ``segmentation``, ...), image
   (``images``, ``img``, ``original``, ``input``, ...); the second view of a stereo pair (``right_frames``)
   is ignored. Folders with a mask word inside a mask folder (one per annotated object, EndoVis17's
   ``ground_truth/<Instrument>_labels/``) do not separate groups: their masks are merged. A generic
   ``mask`` folder next to a folder with a stronger annotation word (``1st_manual``, ``manual1``, ``gt``)
   holds field-of-view masks (DRIVE and HRF as distributed). A strong annotation folder holding files
   also counts next to a folder of images without a role word (ETIS-LaribPolypDB's
   ``ETIS-LaribPolypDB/`` beside ``Ground Truth/``).
   Folders without a role word are *mixed*: the file-name suffix decides.
2. **Suffixes.** A mask's stem minus a mask suffix (``_mask``, ``_lesion``, ``_segmentation``,
   ``_1stHO``, ``_manual1``, ``.ah``, ``_gt``, ``_label``, ... optionally numbered: ``_mask_1``), or
   minus a mask prefix (``mask_``, ``gt_``, ``label_``, ``seg_``, ``p`` before a number as ETIS's
   ``p1.tif``), is its key; several masks with one
   key are united. A field-of-view stem minus ``_mask``/``_fov``/``_roi`` is its key. Second-observer
   suffixes (``_2ndHO``, ``_manual2``, ``.vk``) and auxiliary files (``_superpixels``, ``_thumbnail``,
   ``_overlay``, ``_preview``) are ignored.
3. **Matching.** Within a group (same split folder, same folders once role folders are removed; e.g.
   ``benign/`` class folders or ``case_001/`` case folders) a mask key matches the image with the same
   stem; failing that, the image stem minus an image word (``_training``, ``_test``, ``_image``,
   ``_orig``, ..., or a prefix ``img_``, ``image_``) — DRIVE's ``21_training`` ↔ ``21_manual1``;
   failing that, the same stems with numbers' leading zeros dropped. Matching is case-insensitive.
   Files left over are matched across groups of the same split once more. Unmatched or ambiguous images
   and masks raise :class:`DataError` listing the files; field-of-view files that match no image, and
   split folders whose images have no mask at all (a test set distributed without annotations), are
   only reported (``DatasetIndex.ignored``).
4. **Splits.** Folder words ``train``/``training``, ``val``/``validation``, ``test``/``testing`` (or, when
   every image stem carries one, such a word in the file names, as DRIVE's ``21_training`` or GlaS's
   camelCase ``testA_1``) give the
   dataset's published split, stored as ``DatasetIndex.known_split``.
"""

from __future__ import annotations

import os
import re
import stat
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2mnet.data.io import read_raw
from s2mnet.data.naming import (
    AUXILIARY_SUFFIX,
    FOV_SUFFIX,
    IMAGE_PREFIX,
    IMAGE_SUFFIX,
    LOSSY_EXTENSIONS,
    MASK_PREFIX,
    MASK_SUFFIX,
    SECOND_SUFFIX,
    SPLIT_WORDS,
    file_stem,
    folder_role,
    image_extension,
    is_image_file,
    name_words,
    natural_key,
    split_of,
)
from s2mnet.data.types import Case, DatasetIndex
from s2mnet.errors import DataError

_MAX_LISTED = 8
_MAX_DEPTH = 6


@dataclass
class _File:
    path: Path
    role: str  # "image" | "mask" | "fov" | "ignored" (second observer, auxiliary)
    key: str
    split: str | None
    context: tuple[str, ...]
    role_folder: str | None
    prefixless_key: str = ""  # masks: the key without a mask prefix (mask_001 → 001), tried second


#: Start of the note (and ``s2m analyze`` warning) listing entries that are not regular files.
SKIPPED_NOTE = "skipped"


def _walk_images(root: Path) -> tuple[list[Path], list[Path]]:
    """Image files under ``root`` and the image-named entries skipped because they are not regular files.

    Symbolically linked folders (``images -> /elsewhere/images``) are followed, each real folder once (a
    link loop ends). A FIFO, socket or device with an image name is skipped, never opened (it would block).
    """
    files, skipped, seen = [], [], set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        depth = len(Path(folder).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and depth < _MAX_DEPTH)
        for name in sorted(names):
            if not is_image_file(name):
                continue
            path = Path(folder) / name
            try:
                special = not stat.S_ISREG(path.stat().st_mode)
            except OSError:  # a dangling link: the readers name it
                special = False
            (skipped if special else files).append(path)
    return files, skipped


def discovery_warnings(index: DatasetIndex) -> list[str]:
    """The notes of :func:`discover` that ``s2m analyze`` prints as warnings (entries skipped)."""
    return [note for note in index.notes if note.startswith(SKIPPED_NOTE)]


def _classify(
    root: Path, path: Path, fov_folders: set[Path], role_folders: set[Path], stems: set[tuple[Path, str]]
) -> _File:
    def stem_exists(folder: Path, prefixed: str) -> bool:
        """A prefixed name marks a mask in a mixed folder only next to its unprefixed image."""
        return (folder, MASK_PREFIX.sub("", prefixed).casefold()) in stems

    parts = path.relative_to(root).parts[:-1]
    role, role_index = None, None
    for index in range(len(parts) - 1, -1, -1):
        if root.joinpath(*parts[: index + 1]) in role_folders:
            role, role_index = folder_role(parts[index])[0], index
            break
    if role == "mask" and root.joinpath(*parts[: role_index + 1]) in fov_folders:
        role = "fov"
    split = next((s for s in map(split_of, parts) if s), None)
    context = tuple(
        p
        for i, p in enumerate(parts)
        if i != role_index and split_of(p) is None and not _annotation_subfolder(role, role_index, i, p)
    )
    stem = file_stem(path)
    if role is None:  # mixed folder: the file-name suffix decides
        if SECOND_SUFFIX.search(stem) or AUXILIARY_SUFFIX.search(stem):
            role = "ignored"
        elif MASK_SUFFIX.search(stem) or (MASK_PREFIX.search(stem) and stem_exists(path.parent, stem)):
            role = "mask"
        else:
            role = "image"
    if (role == "mask" and SECOND_SUFFIX.search(stem)) or AUXILIARY_SUFFIX.search(stem):
        role = "ignored"
    if role == "mask":
        key = MASK_SUFFIX.sub("", stem)
    elif role == "fov":
        key = FOV_SUFFIX.sub("", stem)
    else:
        key = stem
    role_folder = parts[role_index] if role_index is not None else None
    return _File(path, role, key, split, context, role_folder, MASK_PREFIX.sub("", key))


def _annotation_subfolder(role: str | None, role_index: int | None, index: int, name: str) -> bool:
    """A folder with a mask word inside a mask folder: one per annotated object or class.

    EndoVis17's ``ground_truth/<Instrument>_labels/frame000.png``: such folders are left out of the
    mask's group, so the masks of every object pair with the one image and are merged (rule 2).
    """
    below_mask = role == "mask" and role_index is not None and index > role_index
    return below_mask and folder_role(name)[0] == "mask"


def _role_folders(root: Path, files: list[Path]) -> tuple[set[Path], set[Path]]:
    """Folders whose name gives their files a role, and the generic ``mask`` folders holding FOV masks.

    A role word counts only when a sibling folder has another role (``images/`` next to ``masks/``), so
    a dataset folder such as ``Dataset_BUSI_with_GT/`` is not mistaken for a mask folder; second-observer
    folders always count. A generic ``mask`` folder next to a strong annotation folder (``1st_manual``,
    ``manual1``, ``gt``) holds field-of-view masks (DRIVE and HRF as distributed).
    """
    folders = {f.parent for f in files}
    for folder in list(folders):
        folders.update(p for p in folder.parents if root in p.parents)
    folders = {f for f in folders if f != root and root in f.parents}
    by_parent: dict[Path, list[Path]] = defaultdict(list)
    for folder in folders:
        by_parent[folder.parent].append(folder)
    holding = {f.parent for f in files}
    roles, fov = set(), set()
    for folder in folders:
        role, strong = folder_role(folder.name)
        if role is None:
            continue
        siblings = [s for s in by_parent[folder.parent] if s != folder]
        sibling_roles = [folder_role(s.name) for s in siblings]
        beside_other_role = any(r[0] not in (None, role) for r in sibling_roles)
        beside_plain = role == "mask" and strong and _beside_plain_images(folder, siblings, holding)
        if role == "ignored" or beside_other_role or beside_plain:
            roles.add(folder)
        if role == "mask" and not strong and ("mask", True) in sibling_roles:
            fov.add(folder)
            roles.add(folder)
    # A folder name that holds FOV masks in one split holds them in every split (a test/ folder
    # distributed without its annotations keeps test/images + test/mask).
    fov_names = {folder.name.casefold() for folder in fov}
    for folder in roles:
        if folder.name.casefold() in fov_names:
            fov.add(folder)
    return roles, fov


def _beside_plain_images(folder: Path, siblings: list[Path], holding: set[Path]) -> bool:
    """A strong annotation folder holding files beside a folder of images without a role word.

    ETIS-LaribPolypDB as distributed: ``ETIS-LaribPolypDB/1.tif`` (or the images in the parent folder
    itself) next to ``Ground Truth/p1.tif``.
    """
    if folder not in holding:
        return False
    plain = [s for s in siblings if s in holding and folder_role(s.name)[0] is None]
    return bool(plain) or folder.parent in holding


def _normalise_numbers(key: str) -> str:
    return re.sub(r"\d+", lambda m: str(int(m.group())), key)


def _image_keys(key: str) -> list[str]:
    """Keys an image can be matched by, strongest first (rule 3 of the module docstring)."""
    key = key.casefold()
    stripped = IMAGE_PREFIX.sub("", IMAGE_SUFFIX.sub("", key))
    return [key, stripped, _normalise_numbers(key), _normalise_numbers(stripped)]


def _listing(paths: list[Path], root: Path) -> str:
    names = [str(p.relative_to(root)) if root in p.parents else str(p) for p in paths]
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", … ({len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else "")


def _match(
    images: list[_File], annotations: list[_File], root: Path
) -> tuple[dict[int, list[_File]], list[_File]]:
    """Assign annotation files (masks or FOVs) to images; return {image index: files} and leftovers."""
    assigned: dict[int, list[_File]] = defaultdict(list)
    leftovers = []
    levels: list[dict[str, set[int]]] = [defaultdict(set) for _ in range(4)]
    for index, image in enumerate(images):
        for level, key in enumerate(_image_keys(image.key)):
            levels[level][key].add(index)
    for annotation in annotations:
        candidates: set[int] = set()
        for key in dict.fromkeys((annotation.key.casefold(), annotation.prefixless_key.casefold())):
            for level, lookup in enumerate(levels):
                candidates = lookup.get(key if level < 2 else _normalise_numbers(key), set())
                if candidates:
                    break
            if candidates:
                break
        if len(candidates) > 1:
            clashing = [images[i].path for i in sorted(candidates)]
            raise DataError(
                f"{annotation.path}: ambiguous pairing, it matches {len(clashing)} images: "
                f"{_listing(clashing, root)}"
            )
        if candidates:
            assigned[candidates.pop()].append(annotation)
        else:
            leftovers.append(annotation)
    return assigned, leftovers


def _check_unique_images(images: list[_File], root: Path) -> None:
    seen: dict[tuple, list[Path]] = defaultdict(list)
    for image in images:
        seen[(image.split, image.context, image.key.casefold())].append(image.path)
    for paths in seen.values():
        if len(paths) > 1:
            raise DataError(f"{root}: ambiguous images with one name: {_listing(paths, root)}")


def _pair(
    root: Path, images: list[_File], masks: list[_File], fovs: list[_File]
) -> tuple[list[tuple], list[Path], list[Path]]:
    """Pair within groups, then leftovers across groups of one split.

    Returns:
        ``[(image, mask paths, fov path)]``, the field-of-view files that match no image, and the files
        of unlabelled split folders (a split whose images have no mask at all, e.g. a test set
        distributed without annotations), which are skipped.
    """
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        groups[(image.split, image.context)].append(index)
    unmatched_fovs: list[Path] = []
    mask_of: dict[int, list[_File]] = defaultdict(list)
    fov_of: dict[int, list[_File]] = defaultdict(list)
    for kind, files, target in (("mask", masks, mask_of), ("fov", fovs, fov_of)):
        by_group: dict[tuple, list[_File]] = defaultdict(list)
        for f in files:
            by_group[(f.split, f.context)].append(f)
        leftovers = []
        for group, group_files in by_group.items():
            members = groups.get(group, [])
            assigned, rest = _match([images[i] for i in members], group_files, root)
            for local, found in assigned.items():
                target[members[local]].extend(found)
            leftovers.extend(rest)
        if leftovers:  # second pass: across groups of the same split, only images still lacking one
            for split in sorted({f.split for f in leftovers}, key=str):
                members = [i for i, im in enumerate(images) if im.split == split and i not in target]
                pending = [f for f in leftovers if f.split == split]
                assigned, rest = _match([images[i] for i in members], pending, root)
                for local, found in assigned.items():
                    target[members[local]].extend(found)
                if rest and kind == "fov":  # auxiliary files: reported, not fatal
                    unmatched_fovs.extend(f.path for f in rest)
                elif rest:
                    raise DataError(
                        f"{root}: {len(rest)} masks match no image: {_listing([f.path for f in rest], root)}"
                    )
    labelled_splits = {images[i].split for i in mask_of}
    unlabelled = [
        i for i, im in enumerate(images) if im.split is not None and im.split not in labelled_splits
    ]
    unmatched = [images[i].path for i in range(len(images)) if i not in mask_of and i not in unlabelled]
    if unmatched:
        raise DataError(f"{root}: {len(unmatched)} images have no mask: {_listing(unmatched, root)}")
    for index, found in fov_of.items():
        if len(found) > 1:
            raise DataError(
                f"{images[index].path}: several field-of-view masks: "
                f"{_listing([f.path for f in found], root)}"
            )
    pairs = [
        (images[i], sorted(f.path for f in mask_of[i]), fov_of[i][0].path if fov_of.get(i) else None)
        for i in range(len(images))
        if i in mask_of
    ]
    skipped = [images[i].path for i in unlabelled] + [f.path for i in unlabelled for f in fov_of.get(i, [])]
    return pairs, unmatched_fovs, skipped


def _case_ids(pairs: list[tuple]) -> list[str]:
    """Image stems; folder-qualified where stems repeat (case folders, split folders)."""

    def qualified(image: _File) -> str:
        parts = [*image.context] + (
            [file_stem(image.path)] if IMAGE_SUFFIX.sub("", image.key).strip(" _-.") else []
        )
        return "/".join(parts) or file_stem(image.path)

    stems = [file_stem(p[0].path) for p in pairs]
    repeated = {stem for stem, count in Counter(stems).items() if count > 1}
    ids = [qualified(p[0]) if file_stem(p[0].path) in repeated else file_stem(p[0].path) for p in pairs]
    if len(set(ids)) < len(ids):
        ids = [f"{p[0].split}/{i}" if p[0].split else i for p, i in zip(pairs, ids, strict=True)]
    return ids


def _known_split(pairs: list[tuple], ids: list[str]) -> tuple[dict | None, str | None]:
    splits = [p[0].split for p in pairs]
    source = "folder names"
    if not all(splits):
        stem_splits = [_stem_split(file_stem(p[0].path)) for p in pairs]
        if not all(stem_splits):
            return None, None
        splits, source = stem_splits, "file names"
    if len(set(splits)) < 2:
        return None, None
    split = {name: sorted(i for i, s in zip(ids, splits, strict=True) if s == name) for name in SPLIT_WORDS}
    return {**split, "source": source}, source


def _stem_split(stem: str) -> str | None:
    words = name_words(stem)  # camelCase counts: GlaS's testA_1 is a test image
    for split, split_words in SPLIT_WORDS.items():
        if any(w in split_words for w in words):
            return split
    return None


def infer_num_classes(cases: list[Case], sample: int | None = 12) -> int:
    """1 for binary masks; K when the (sampled) masks are integer class maps with values 0..K-1, K ≥ 3.

    A mask counts as a class map when it is grey, lossless, and its largest value is < 64.
    """
    if not cases:
        return 1
    chosen = (
        cases if sample is None else [cases[i] for i in np.linspace(0, len(cases) - 1, sample).astype(int)]
    )
    largest = 0
    for case in dict.fromkeys(chosen):
        path = case.masks[0]
        if image_extension(path) in LOSSY_EXTENSIONS:
            return 1
        array = read_raw(path, palette_indices=True)
        if array.dtype == bool:
            return 1
        if array.ndim == 3:
            if not np.all(array[..., :3] == array[..., :1]):
                return 1
            array = array[..., 0]
        top = int(array.max())
        if top >= 64:
            return 1
        largest = max(largest, top)
    return largest + 1 if largest >= 2 else 1


def discover(root: str | os.PathLike) -> DatasetIndex:
    """Find the image/mask pairs (and field-of-view masks) under ``root`` by the rules above.

    Raises:
        DataError: missing or empty folder, no masks, unmatched or ambiguous files (listed).
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    from s2mnet.data.formats import apply_palette, discover_format

    special = discover_format(root)  # nnU-Net raw datasets and NIfTI volumes (docs/data.md, "Formats")
    if special is not None:
        return special
    paths, skipped = _walk_images(root)
    if not paths:
        raise DataError(f"{root}: no image files found (supported: PNG, JPEG, TIFF, BMP, GIF, PPM)")
    role_folders, fov_folders = _role_folders(root, paths)
    stems = {(p.parent, file_stem(p).casefold()) for p in paths}
    files = [_classify(root, p, fov_folders, role_folders, stems) for p in paths]
    images = [f for f in files if f.role == "image"]
    masks = [f for f in files if f.role == "mask"]
    fovs = [f for f in files if f.role == "fov"]
    ignored = [f.path for f in files if f.role == "ignored"]
    if not images:
        raise DataError(f"{root}: no images found, only masks: {_listing([f.path for f in masks], root)}")
    if not masks:
        raise DataError(
            f"{root}: no masks found; put images in images/ and masks in masks/, "
            "or name masks <image>_mask.png"
        )
    _check_unique_images(images, root)
    pairs, unmatched_fovs, unlabelled = _pair(root, images, masks, fovs)
    ids = _case_ids(pairs)
    cases = sorted(
        (
            Case(case_id, image.path, tuple(mask_paths), fov)
            for (image, mask_paths, fov), case_id in zip(pairs, ids, strict=True)
        ),
        key=lambda c: natural_key(c.case_id),
    )
    known_split, split_source = _known_split(pairs, ids)
    layout = _layout_name(images, fovs)
    notes = [f"{len(cases)} cases, layout {layout}"]
    multi_mask = sum(len(c.masks) > 1 for c in cases)
    if multi_mask:
        notes.append(f"{multi_mask} cases have several mask files (united)")
    if fovs:
        notes.append(f"field-of-view masks for {sum(c.fov is not None for c in cases)} cases")
    if ignored:
        notes.append(f"{len(ignored)} second-observer or auxiliary files ignored")
    if unlabelled:
        splits = sorted({f.split for f in images if f.path in set(unlabelled)}, key=str)
        notes.append(f"{len(unlabelled)} files of unlabelled split(s) {', '.join(splits)} skipped (no masks)")
        ignored.extend(unlabelled)
    if unmatched_fovs:
        notes.append(f"{len(unmatched_fovs)} field-of-view files match no image (ignored)")
        ignored.extend(unmatched_fovs)
    if skipped:
        notes.append(
            f"{SKIPPED_NOTE} {len(skipped)} entries that are not regular files (pipes, devices): "
            f"{_listing(skipped, root)}"
        )
    if known_split:
        counts = ", ".join(f"{k} {len(v)}" for k, v in known_split.items() if k in SPLIT_WORDS)
        notes.append(f"published split from {split_source}: {counts}")
    num_classes = infer_num_classes(cases)
    if num_classes > 1:
        notes.append(f"masks are integer class maps: {num_classes} classes")
    return apply_palette(DatasetIndex(root, cases, layout, num_classes, known_split, ignored, notes))


def _layout_name(images: list[_File], fovs: list[_File]) -> str:
    if all(not im.key.strip(" _-.") or IMAGE_SUFFIX.fullmatch(im.key) for im in images):
        return "case-folders"
    if any(im.role_folder is None for im in images):
        return "mixed"
    return "images-masks-fov" if fovs else "images-masks"
