"""Reading images and masks in every supported encoding, and bad files (s2mnet.data.io)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from s2mnet.data.io import read_fov, read_image, read_mask
from s2mnet.errors import DataError


def save(path: Path, array: np.ndarray, mode: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path, **kw) if mode else Image.fromarray(array).save(path, **kw)
    return path


def square_mask(size: int = 16) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[4:10, 3:12] = 1
    return mask


# ----------------------------------------------------------------------------------------------- images
def test_rgb_png_scaled_to_unit_float(tmp_path):
    array = np.zeros((5, 7, 3), np.uint8)
    array[..., 0] = 255
    array[1, 2] = (0, 51, 102)
    image = read_image(save(tmp_path / "x.png", array))
    assert image.shape == (5, 7, 3) and image.dtype == np.float32
    assert image[0, 0].tolist() == [1.0, 0.0, 0.0]
    np.testing.assert_allclose(image[1, 2], [0.0, 0.2, 0.4], atol=1e-6)


def test_grey_image_has_one_channel_and_rgba_drops_alpha(tmp_path):
    grey = read_image(save(tmp_path / "g.png", np.full((4, 6), 128, np.uint8)))
    assert grey.shape == (4, 6, 1)
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 3] = 255
    assert read_image(save(tmp_path / "a.png", rgba, "RGBA")).shape == (4, 6, 3)


def test_16bit_tiff_and_png_divided_by_65535(tmp_path):
    array = np.array([[0, 65535], [32768, 1000]], np.uint16)
    tifffile.imwrite(tmp_path / "x.tif", array)
    image = read_image(tmp_path / "x.tif")
    assert image.shape == (2, 2, 1)
    np.testing.assert_allclose(image[..., 0], array / 65535.0, rtol=1e-6)
    rgb16 = np.stack([array, array // 2, array // 4], axis=-1)
    tifffile.imwrite(tmp_path / "rgb.tiff", rgb16, photometric="rgb")
    np.testing.assert_allclose(read_image(tmp_path / "rgb.tiff")[..., 1], (array // 2) / 65535.0, rtol=1e-6)
    save(tmp_path / "x16.png", array)
    np.testing.assert_allclose(read_image(tmp_path / "x16.png")[..., 0], array / 65535.0, rtol=1e-6)


def test_bmp_jpeg_gif_images(tmp_path):
    array = np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(read_image(save(tmp_path / "x.bmp", array)), array / 255.0, atol=1e-6)
    assert read_image(save(tmp_path / "x.jpg", array)).shape == (8, 8, 3)
    gif = read_image(save(tmp_path / "x.gif", array[..., 0], "L"))
    assert gif.shape[:2] == (8, 8)


def test_truncated_file_names_the_file(tmp_path):
    path = save(tmp_path / "broken image.png", np.zeros((64, 64, 3), np.uint8) + 7)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError, match=re.escape(str(path))):
        read_image(path)
    with pytest.raises(DataError, match=r"broken image\.png"):
        read_mask(path)


def test_truncated_tiff_and_gzip_name_the_file(tmp_path):
    tifffile.imwrite(tmp_path / "scan.tif", np.arange(4096, dtype=np.uint16).reshape(64, 64))
    (tmp_path / "cut.tif").write_bytes((tmp_path / "scan.tif").read_bytes()[:3000])
    with pytest.raises(DataError, match=r"cut\.tif: cannot read the TIFF"):
        read_image(tmp_path / "cut.tif")
    (tmp_path / "im0001.ppm.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match=r"im0001\.ppm\.gz: cannot read"):
        read_image(tmp_path / "im0001.ppm.gz")


def test_not_an_image_missing_file_and_unsupported_extension(tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_text("hello")
    with pytest.raises(DataError, match=r"fake\.jpg"):
        read_image(fake)
    with pytest.raises(DataError, match=r"missing\.png.*not found"):
        read_image(tmp_path / "missing.png")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    with pytest.raises(DataError, match=r"notes\.txt.*unsupported"):
        read_image(other)


# ------------------------------------------------------------------------------------------------ masks
@pytest.mark.parametrize("scale", [1, 255])
def test_grey_png_masks_0_1_and_0_255(tmp_path, scale):
    mask = square_mask()
    decoded = read_mask(save(tmp_path / "m.png", mask * scale))
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, mask)


def test_mode_1_mask(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(square_mask() * 255).convert("1").save(path)
    assert Image.open(path).mode == "1"
    np.testing.assert_array_equal(read_mask(path), square_mask())


def test_rgb_and_rgba_masks(tmp_path):
    mask = square_mask()
    white = np.repeat(mask[..., None] * 255, 3, axis=-1)
    np.testing.assert_array_equal(read_mask(save(tmp_path / "w.png", white)), mask)
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = mask * 200  # coloured annotation: any non-zero channel is foreground
    np.testing.assert_array_equal(read_mask(save(tmp_path / "r.png", red)), mask)
    rgba = np.concatenate([white, np.full((16, 16, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(read_mask(save(tmp_path / "a.png", rgba, "RGBA")), mask)
    alpha_only = np.zeros((16, 16, 4), np.uint8)
    alpha_only[..., 3] = mask * 255
    np.testing.assert_array_equal(read_mask(save(tmp_path / "alpha.png", alpha_only, "RGBA")), mask)


def test_jpeg_mask_grey_levels_thresholded_at_128(tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 10:40] = 1
    path = save(tmp_path / "m.jpg", np.repeat(mask[..., None] * 255, 3, axis=-1), quality=60)
    raw = np.asarray(Image.open(path))
    assert len(np.unique(raw)) > 2  # compression made grey levels
    decoded = read_mask(path)
    assert set(np.unique(decoded)) <= {0, 1}
    assert np.mean(decoded != mask) < 0.01


def test_gif_palette_bmp_and_16bit_masks(tmp_path):
    mask = square_mask()
    np.testing.assert_array_equal(read_mask(save(tmp_path / "m.gif", mask * 255, "L")), mask)
    palette = Image.fromarray(mask, "L").convert("P")
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), mask)
    np.testing.assert_array_equal(read_mask(save(tmp_path / "m.bmp", mask * 255)), mask)
    tifffile.imwrite(tmp_path / "m16.tif", mask.astype(np.uint16) * 65535)
    np.testing.assert_array_equal(read_mask(tmp_path / "m16.tif"), mask)


def test_antialiased_png_fringe_is_thresholded(tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[10:50, 10:50] = 255
    mask[10:50, 50] = 100  # a one-pixel interpolation fringe
    decoded = read_mask(save(tmp_path / "m.png", mask))
    assert decoded[:, 50].sum() == 0 and decoded[20, 20] == 1


def test_unexpected_mask_values_name_file_and_values(tmp_path):
    array = np.zeros((16, 16), np.uint8)
    array[:5] = 77
    array[5:10] = 200
    path = save(tmp_path / "odd.png", array)
    with pytest.raises(DataError, match=r"odd\.png.*\{0, 77, 200\}"):
        read_mask(path)


def test_multiclass_maps(tmp_path):
    classes = np.zeros((8, 8), np.uint8)
    classes[:2] = 1
    classes[2:4] = 2
    path = save(tmp_path / "c.png", classes)
    np.testing.assert_array_equal(read_mask(path, multiclass=True), classes)
    with pytest.raises(DataError, match=r"c\.png.*\{0, 1, 2\}.*multi-class"):
        read_mask(path)
    voc = Image.fromarray(classes, "L").convert("P")
    voc.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)  # colour palette: indices are the classes
    voc.save(tmp_path / "voc.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "voc.png", multiclass=True), classes)
    np.testing.assert_array_equal(read_mask(tmp_path / "voc.png"), classes > 0)
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[:2, :, 0] = 255
    colour[2:4, :, 1] = 255
    with pytest.raises(DataError, match=r"col\.png.*colour-coded"):
        read_mask(save(tmp_path / "col.png", colour), multiclass=True)


def test_several_masks_are_united_and_must_share_a_size(tmp_path):
    first = np.zeros((10, 10), np.uint8)
    first[:3] = 255
    second = np.zeros((10, 10), np.uint8)
    second[7:] = 1
    united = read_mask([save(tmp_path / "a_mask.png", first), save(tmp_path / "a_mask_1.png", second)])
    assert united.sum() == 60 and united[:3].all() and united[7:].all()
    with pytest.raises(DataError, match=r"a_mask_2\.png.*differs"):
        read_mask([tmp_path / "a_mask.png", save(tmp_path / "a_mask_2.png", np.zeros((9, 10), np.uint8))])


def test_read_fov_is_boolean(tmp_path):
    fov = read_fov(save(tmp_path / "fov.gif", square_mask() * 255, "L"))
    assert fov.dtype == bool and fov.sum() == square_mask().sum()


def test_near_grey_palette_mask_is_read_as_grey(tmp_path):
    """DRIVE's second-observer GIFs use the palette (4, 2, 4) / (252, 254, 252): not 'any channel > 0'."""
    pixels = np.zeros((6, 5, 3), dtype=np.uint8)
    pixels[...] = (4, 2, 4)
    pixels[1:3, 2:4] = (252, 254, 252)
    path = tmp_path / "near_grey.png"
    Image.fromarray(pixels).save(path)
    mask = read_mask(path)
    expected = np.zeros((6, 5), dtype=np.uint8)
    expected[1:3, 2:4] = 1
    np.testing.assert_array_equal(mask, expected)
