"""Reading images, masks and field-of-view masks in every encoding the datasets use.

Images: PNG, JPEG, TIFF (8 or 16 bit, grey or RGB, LZW too), BMP, GIF, PPM/PGM (also gzipped, as STARE
is distributed: ``im0001.ppm.gz``), grey or RGB(A).
TIFF is read with tifffile (16-bit RGB keeps its precision); when tifffile cannot decode a compression
without the optional ``imagecodecs`` package (e.g. DRIVE's LZW TIFFs) Pillow reads it instead.

Hostile files are refused with a :class:`DataError` naming them, cheaply: an image whose declared size
exceeds :func:`max_pixels` (Pillow's decompression-bomb limit by default, ``$S2MNET_MAX_IMAGE_PIXELS``
overrides it) is refused from its header before decoding, TIFFs included (tifffile has no limit of its
own); a gzipped image may not inflate beyond 8 bytes per allowed pixel; NaN or infinite pixel values
(float TIFFs) are refused at read time, in images and masks alike.

Mask decoding rules (binary, the default; documented in docs/data.md):

1. Pillow mode ``"1"`` → boolean, used as is.
2. RGB/RGBA: alpha is dropped (unless the colour channels are all zero and alpha alone draws the mask);
   when all colour channels are equal the mask is grey; a JPEG colour mask, or one whose channels differ
   by at most 8 levels (near-grey palettes such as DRIVE's second-observer GIFs), becomes grey as the
   channel mean; otherwise any non-zero channel is foreground.
3. Grey (or palette indices), value set ``V``:
   ``V ⊆ {0, v}`` for a single value ``v`` → foreground is ``v`` (covers {0,1}, {0,255}, {0,65535});
   exactly two levels ``{a, b}`` without zero → foreground is the brighter one;
   a lossy file (JPEG) or a map whose pixels sit almost all (≥ 98 %) at 0 or the maximum
   (interpolation / compression fringes) → threshold at half the maximum (128 for 8-bit, as Kvasir-SEG
   prescribes); anything else (e.g. {0, 77, 200} in a PNG) → :class:`DataError` naming the file and the
   values found.
4. Several mask files for one image are united (logical OR).

Multi-class (``multiclass=True``): the grey values, or the indices of a colour-palette PNG/GIF
(VOC-style), are class indices 0..K-1; RGB masks with distinct colours are refused (convert them to an
integer class map first).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from s2mnet.data.naming import IMAGE_EXTENSIONS, LOSSY_EXTENSIONS, image_extension
from s2mnet.errors import DataError

if TYPE_CHECKING:
    from s2mnet.data.types import Case

_TIFF_EXTENSIONS = (".tif", ".tiff")
#: Environment variable overriding :data:`DEFAULT_MAX_PIXELS`.
MAX_PIXELS_ENV = "S2MNET_MAX_IMAGE_PIXELS"
#: Largest image (height × width) decoded: Pillow's decompression-bomb limit (2 × ``MAX_IMAGE_PIXELS``,
#: 178,956,970 pixels, e.g. 13,377²), applied to TIFFs (which have no limit of their own) before decoding.
DEFAULT_MAX_PIXELS = 2 * 89_478_485
# A grey mask with more values than {0, v} is still binary when nearly all pixels sit at the two
# extremes (anti-aliasing or compression fringes); 98 % leaves room for thin-structure borders.
_EXTREME_SHARE_FOR_THRESHOLD = 0.98
# Colour masks whose channels differ by at most this much are read as grey (near-grey palettes).
_NEAR_GREY_TOLERANCE = 8


def _read_with_pillow(path: Path, palette_indices: bool = False) -> np.ndarray:
    """Decode with Pillow, normalising modes to L/I;16/I/F/RGB/RGBA/1 arrays (first frame of a GIF).

    Palette images: a grey palette gives grey levels; a colour palette gives RGB(A), or the palette
    indices themselves when ``palette_indices`` (class maps stored VOC-style).
    """
    try:
        source = _gunzip(path) if path.suffix.lower() == ".gz" else path
        with Image.open(source) as image:
            check_pixels(path, image.size[1], image.size[0])
            image.load()  # forces decoding: a truncated file raises here, not later
            mode = image.mode
            if mode == "P":
                # A grey palette gives its grey levels (whatever the index order); colours: see docstring.
                has_alpha = "transparency" in image.info
                palette = np.array([*(image.getpalette() or []), *[0] * 768][:768]).reshape(256, 3)
                colours = palette[np.unique(np.asarray(image))]
                grey_palette = bool(np.all(colours == colours[:, :1]))
                if grey_palette and not has_alpha:
                    return np.asarray(image.convert("L"))
                if palette_indices:
                    return np.asarray(image)
                return np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
            if mode in ("LA", "La", "PA"):
                return np.asarray(image.convert("RGBA"))
            if mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
                return np.asarray(image.convert("RGB"))
            if mode.startswith("I;16"):
                return np.asarray(image).astype(np.uint16)
            return np.asarray(image)
    except (
        OSError,
        EOFError,
        SyntaxError,
        ValueError,
        UnidentifiedImageError,
        Image.DecompressionBombError,
    ) as error:
        raise DataError(
            f"{path}: cannot read the file ({_short(error)}); is it truncated or not an image?"
        ) from error


def max_pixels() -> int:
    """The pixel limit of decoded images: ``$S2MNET_MAX_IMAGE_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`.

    Raises:
        DataError: the environment variable is not a positive number.
    """
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(float(value))
    except ValueError:
        raise DataError(f"{MAX_PIXELS_ENV}={value!r}: not a number of pixels") from None
    if limit < 1:
        raise DataError(f"{MAX_PIXELS_ENV}={value!r}: must be a positive number of pixels")
    return limit


def check_pixels(path: str | os.PathLike, height: int, width: int) -> None:
    """Refuse an image whose declared size exceeds :func:`max_pixels`, before decoding it.

    Raises:
        DataError: naming the file, its declared size and the limit.
    """
    limit = max_pixels()
    if int(height) * int(width) > limit:
        raise DataError(
            f"{path}: declared size {width}x{height} ({int(height) * int(width):,} pixels) exceeds the limit "
            f"of {limit:,} pixels (a decompression bomb?); raise {MAX_PIXELS_ENV} if the image is genuine"
        )


@contextlib.contextmanager
def _quiet_tifffile() -> Iterator[None]:
    """Silence tifffile's logged complaints about damaged tags: the one-line DataError says it instead."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _gunzip(path: Path) -> io.BytesIO:
    """Decompress a gzipped image, refusing more than 8 bytes per allowed pixel (a gzip bomb)."""
    budget = 8 * max_pixels() + 65536
    with gzip.open(path, "rb") as handle:
        data = handle.read(budget + 1)
    if len(data) > budget:
        raise DataError(
            f"{path}: decompresses to more than {budget:,} bytes (a decompression bomb?); "
            f"raise {MAX_PIXELS_ENV} if the image is genuine"
        )
    return io.BytesIO(data)


def _read_tiff(path: Path, palette_indices: bool = False) -> np.ndarray:
    """Decode a TIFF with tifffile (keeps 16-bit RGB); fall back to Pillow for codecs it lacks.

    The first page's declared shape is checked against :func:`max_pixels` before anything is decoded.
    """
    import tifffile

    try:
        with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            check_pixels(path, int(page.imagelength), int(page.imagewidth))
            array = page.asarray()
    except ValueError as error:
        if "imagecodecs" in str(error):
            return _read_with_pillow(path, palette_indices)
        raise DataError(f"{path}: cannot read the TIFF ({_short(error)})") from error
    except (OSError, EOFError, tifffile.TiffFileError, IndexError, KeyError, MemoryError) as error:
        raise DataError(f"{path}: cannot read the TIFF ({_short(error)}); is it truncated?") from error
    array = np.squeeze(np.asarray(array))
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = np.moveaxis(array, 0, -1)  # planar (C, H, W) storage
    return array


def _short(error: BaseException) -> str:
    return str(error).splitlines()[0][:160] if str(error) else type(error).__name__


def _require_regular_file(path: Path) -> None:
    """A missing file, or a FIFO, socket or device (opening one could block forever), is a DataError."""
    if not path.is_file():
        problem = "not a regular file (a pipe or a device?)" if path.exists() else "file not found"
        raise DataError(f"{path}: {problem}")


def read_raw(path: str | os.PathLike, palette_indices: bool = False) -> np.ndarray:
    """Decode a file into a numpy array: (H, W) or (H, W, C) in its stored dtype.

    ``palette_indices``: return a colour-palette image's indices instead of its colours (class maps).

    Raises:
        DataError: missing, unreadable, truncated or unsupported files, naming the file.
    """
    path = Path(path)
    _require_regular_file(path)
    extension = image_extension(path)
    if extension not in IMAGE_EXTENSIONS:
        raise DataError(f"{path}: unsupported file type {path.suffix!r} (use {', '.join(IMAGE_EXTENSIONS)})")
    if extension in _TIFF_EXTENSIONS and path.suffix.lower() != ".gz":
        array = _read_tiff(path, palette_indices)
    else:
        array = _read_with_pillow(path, palette_indices)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 2, 3, 4)):
        raise DataError(
            f"{path}: unsupported image shape {array.shape} (expected a 2-D grey or colour image)"
        )
    if array.size == 0:
        raise DataError(f"{path}: the image is empty")
    if np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise DataError(
                f"{path}: {bad:,} pixel value(s) are NaN or infinite; replace them (e.g. by 0) before use"
            )
    return array


def _to_unit_float(array: np.ndarray, path: Path) -> np.ndarray:
    """Scale integer data by its type's maximum (8-bit /255, 16-bit /65535); floats are clipped to [0, 1]."""
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    if np.issubdtype(array.dtype, np.floating):
        low, high = float(np.nanmin(array)), float(np.nanmax(array))
        if low < 0.0 or high > 1.0:  # float images outside [0, 1]: min-max scaled per image
            return ((array - low) / max(high - low, 1e-12)).astype(np.float32)
        return np.nan_to_num(array).astype(np.float32)
    raise DataError(f"{path}: unsupported pixel type {array.dtype}")


def read_image(path: str | os.PathLike | Case) -> np.ndarray:
    """Read an image as ``(H, W, C)`` float32 in [0, 1] with C = 1 (grey) or 3 (colour).

    A :class:`~s2mnet.data.types.Case` is read with :func:`read_case_image` (channel files, slices).

    RGBA drops alpha, grey+alpha drops alpha; 16-bit data is divided by 65535.

    Raises:
        DataError: unreadable, truncated or unsupported file, naming it.
    """
    if _is_case(path):
        return read_case_image(path)
    path = Path(path)
    array = read_raw(path)
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] == 2:  # grey + alpha
        array = array[..., :1]
    elif array.shape[-1] == 4:
        array = array[..., :3]
    return np.ascontiguousarray(_to_unit_float(array, path))


def _colour_to_grey(array: np.ndarray, path: Path, multiclass: bool) -> np.ndarray:
    """Reduce a colour mask to one channel following rule 2 of the module docstring."""
    if array.shape[-1] in (2, 4):
        colour, alpha = array[..., :-1], array[..., -1]
        if not colour.any() and alpha.min() != alpha.max():
            return alpha  # mask drawn in the alpha channel only
        array = colour
    if array.shape[-1] == 1 or np.all(array == array[..., :1]):
        return array[..., 0]
    near_grey = np.abs(array.astype(np.int32) - array[..., :1].astype(np.int32)).max() <= _NEAR_GREY_TOLERANCE
    if near_grey or image_extension(path) in LOSSY_EXTENSIONS:
        # JPEG chroma noise, or a palette of almost-grey colours (DRIVE's second-observer GIFs use
        # (4, 2, 4) and (252, 254, 252)): grey level = channel mean.
        return np.round(array.mean(axis=-1)).astype(array.dtype)
    if multiclass:
        raise DataError(
            f"{path}: colour-coded multi-class masks are not supported; convert it to an integer class map "
            "(grey values 0..K-1)"
        )
    return np.any(array > 0, axis=-1)


def decode_mask(array: np.ndarray, path: str | os.PathLike, multiclass: bool = False) -> np.ndarray:
    """Decode one raw mask array into a binary ``(H, W)`` uint8 {0, 1} map or a class-index map.

    Raises:
        DataError: values that match no encoding, naming the file and the values found.
    """
    path = Path(path)
    if array.ndim == 3:
        array = _colour_to_grey(array, path, multiclass)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if np.all((array == 0) | (array == 1)):
            return array.astype(np.uint8)
        raise DataError(f"{path}: floating-point mask with values other than 0 and 1")
    values = np.unique(array)
    if multiclass:
        if values.min() < 0 or values.max() > 255:
            raise DataError(f"{path}: class map values {_values(values)} are outside 0..255")
        return array.astype(np.uint8)
    nonzero = values[values != 0]
    if nonzero.size <= 1:
        return (array != 0).astype(np.uint8)
    if values.size == 2:  # two levels without a zero (e.g. a near-black / near-white palette)
        return (array == values.max()).astype(np.uint8)
    maximum = float(np.iinfo(array.dtype).max) if np.issubdtype(array.dtype, np.integer) else 1.0
    top = float(values.max())
    # 8-bit-style maps stored in 16-bit containers: use the observed maximum's range.
    full_scale = maximum if top > maximum / 2 else (255.0 if top <= 255 else maximum)
    extremes = np.mean((array == 0) | (array == values.max()))
    if image_extension(path) in LOSSY_EXTENSIONS or extremes >= _EXTREME_SHARE_FOR_THRESHOLD:
        return (array >= (full_scale + 1) / 2).astype(np.uint8)
    raise DataError(
        f"{path}: mask values {_values(values)} are not a binary encoding "
        "({0,1}, {0,255}, mode 1, colour); "
        "if these are class indices, train with multi-class labels"
    )


def _values(values: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(v)) for v in values[:limit])
    return "{" + shown + (", …" if values.size > limit else "") + "}"


def read_mask(
    paths: str | os.PathLike | Sequence[str | os.PathLike] | Case, multiclass: bool = False
) -> np.ndarray:
    """Read one or several mask files for an image and return ``(H, W)`` uint8.

    A :class:`~s2mnet.data.types.Case` is read with :func:`read_case_mask` (label maps, slices).

    Binary: the union (logical OR) of the decoded files, values {0, 1}. Multi-class: the class-index
    map (several files are merged by taking the maximum class index).

    Raises:
        DataError: unreadable files, undecodable values, or files of different sizes.
    """
    if _is_case(paths):
        return read_case_mask(paths, multiclass)
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise DataError("read_mask: no mask file given")
    result: np.ndarray | None = None
    first = Path(paths[0])
    for path in map(Path, paths):
        decoded = decode_mask(read_raw(path, palette_indices=multiclass), path, multiclass=multiclass)
        if result is None:
            result = decoded
            continue
        if decoded.shape != result.shape:
            raise DataError(
                f"{path}: size {decoded.shape[1]}x{decoded.shape[0]} differs from {first.name} "
                f"({result.shape[1]}x{result.shape[0]})"
            )
        result = np.maximum(result, decoded)
    assert result is not None
    return result


def read_fov(path: str | os.PathLike) -> np.ndarray:
    """Read a field-of-view mask as ``(H, W)`` bool (any encoding accepted by :func:`read_mask`)."""
    return read_mask([path]).astype(bool)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """Return ``(height, width)`` of an image file without decoding its pixels when possible."""
    path = Path(path)
    _require_regular_file(path)
    try:
        if path.suffix.lower() in _TIFF_EXTENSIONS:  # (a gzipped TIFF goes through Pillow below)
            import tifffile

            with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
                page = tif.pages[0]
                return (int(page.imagelength), int(page.imagewidth)) if shape else (0, 0)
        source = _gunzip(path) if path.suffix.lower() == ".gz" else path
        with Image.open(source) as image:
            return image.size[1], image.size[0]
    except DataError:
        raise
    except Exception as error:  # any decoder failure is a user-file problem here
        raise DataError(f"{path}: cannot read the file header ({_short(error)})") from error


def read_case_image(case: Case) -> np.ndarray:
    """A case's image as ``(H, W, C)`` float32 in [0, 1], whatever its format (docs/data.md, "Formats").

    Plain cases: :func:`read_image`. Channel files (nnU-Net ``_0000``, ``_0001``…, NIfTI modalities)
    are stacked along C; slices of NIfTI volumes are read from the (cached, per-volume normalised) volume.

    Raises:
        DataError: unreadable files, or channel files whose sizes differ, naming the file.
    """
    if case.slice is None and not case.channels:
        return read_image(case.image)
    parts = []
    for path in (case.image, *case.channels):
        if case.slice is not None:
            from s2mnet.data.formats.nifti import read_image_slice

            part = read_image_slice(path, case.slice.axis, case.slice.index)[..., None]
        else:
            part = read_image(path)
        if parts and part.shape[:2] != parts[0].shape[:2]:
            raise DataError(
                f"{path}: size {part.shape[1]}x{part.shape[0]} differs from channel file {case.image.name} "
                f"({parts[0].shape[1]}x{parts[0].shape[0]})"
            )
        parts.append(part)
    return np.ascontiguousarray(np.concatenate(parts, axis=-1))


def read_case_raw(case: Case) -> np.ndarray:
    """The stored pixels of a plain case's image (:func:`read_raw`), else :func:`read_case_image`."""
    return read_raw(case.image) if case.slice is None and not case.channels else read_case_image(case)


def case_image_size(case: Case) -> tuple[int, int]:
    """``(height, width)`` of a case's image (header only for plain files)."""
    return image_size(case.image) if case.slice is None else read_case_image(case).shape[:2]


def read_case_mask(case: Case, multiclass: bool = False) -> np.ndarray:
    """A case's mask ``(H, W)`` uint8: class indices through ``case.labels`` when set, else :func:`read_mask`.

    Raises:
        DataError: unreadable files, or values/colours not in the case's label map (naming file and value).
    """
    if case.slice is not None:
        from s2mnet.data.formats.nifti import read_label_slice

        raw = read_label_slice(case.masks[0], case.slice.axis, case.slice.index)
        if case.labels is None:
            return decode_mask(raw, case.masks[0], multiclass=multiclass)
        return case.labels.encode(raw, case.masks[0])
    if case.labels is None:
        return read_mask(case.masks, multiclass=multiclass)
    result = None
    for path in case.masks:
        decoded = case.labels.encode(read_raw(path, palette_indices=case.labels.colours is None), path)
        if result is not None and decoded.shape != result.shape:
            raise DataError(
                f"{path}: size {decoded.shape[1]}x{decoded.shape[0]} differs from {case.masks[0].name}"
            )
        result = decoded if result is None else np.maximum(result, decoded)
    return result


def _is_case(source: object) -> bool:
    from s2mnet.data.types import Case

    return isinstance(source, Case)
