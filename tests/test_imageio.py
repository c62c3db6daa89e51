import numpy as np
import pytest
from PIL import Image

from hisyngen.errors import ImageReadError
from hisyngen.imageio import (
    atomic_write_bytes, conversion_note, encode_mask_png, encode_rgb_png, read_mask, read_raw, read_rgb,
)
from hisyngen.spec import get_spec

from fixtures import write_rgb


def test_rgb_roundtrip_keeps_channel_order(tmp_path):
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 0] = 200  # red
    path = tmp_path / "a.png"
    atomic_write_bytes(path, encode_rgb_png(image))
    assert np.array_equal(read_rgb(path), image)
    assert np.array(Image.open(path))[0, 0].tolist() == [200, 0, 0]  # an independent decoder agrees


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 100
    rgba[0, 0, 3] = 255  # opaque
    rgba[0, 1, 3] = 0  # transparent -> white
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = read_rgb(tmp_path / "a.png")
    assert out[0, 0].tolist() == [100, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert "alpha" in conversion_note(read_raw(tmp_path / "a.png"))


def test_sixteen_bit_is_scaled(tmp_path):
    import cv2

    image = np.full((2, 2, 3), 65535, np.uint16)
    image[0, 0] = 257 * 10
    cv2.imwrite(str(tmp_path / "a.png"), image)
    out = read_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out[0, 0].tolist() == [10, 10, 10] and out[1, 1].tolist() == [255] * 3
    assert "16-bit" in conversion_note(read_raw(tmp_path / "a.png"))


def test_grayscale_and_palette_images_become_rgb(tmp_path):
    Image.fromarray(np.full((3, 3), 77, np.uint8), "L").save(tmp_path / "g.png")
    assert read_rgb(tmp_path / "g.png").shape == (3, 3, 3)
    p = Image.fromarray(np.array([[0, 1]], np.uint8))
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.save(tmp_path / "p.png")
    assert read_rgb(tmp_path / "p.png").tolist() == [[[255, 0, 0], [0, 0, 255]]]


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_corrupt_images_name_the_file(tmp_path, damage):
    path = write_rgb(tmp_path / "bad.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"not a png" * 10}[damage])
    with pytest.raises(ImageReadError, match="bad.png"):
        read_rgb(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="nothere.png"):
        read_rgb(tmp_path / "nothere.png")


def test_mask_png_is_palette_and_exact(tmp_path):
    spec = get_spec("bcss-wsss")
    mask = np.array([[0, 1, 2], [3, 4, 255]], np.uint8)
    path = tmp_path / "m.png"
    atomic_write_bytes(path, encode_mask_png(mask, spec.mask_palette()))
    im = Image.open(path)
    assert im.mode == "P"
    assert im.getpalette()[3 * 3 : 3 * 3 + 3] == [153, 0, 255]
    assert np.array_equal(read_mask(path), mask)


def test_mask_modes(tmp_path):
    spec = get_spec("bcss-wsss")
    Image.fromarray(np.array([[1, 2]], np.uint8), "L").save(tmp_path / "l.png")
    assert read_mask(tmp_path / "l.png").tolist() == [[1, 2]]
    Image.fromarray(np.array([[3, 4]], np.uint16)).save(tmp_path / "i16.png")
    assert read_mask(tmp_path / "i16.png").tolist() == [[3, 4]]
    Image.fromarray(np.array([[300, 4]], np.uint16)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="big.png.*8-bit"):
        read_mask(tmp_path / "big.png")
    rgb = np.array([[[0, 0, 255], [255, 255, 255]]], np.uint8)  # LYM, background
    Image.fromarray(rgb, "RGB").save(tmp_path / "rgb.png")
    assert read_mask(tmp_path / "rgb.png", spec).tolist() == [[2, 4]]
    Image.fromarray(np.array([[[1, 2, 3]]], np.uint8), "RGB").save(tmp_path / "odd.png")
    with pytest.raises(ImageReadError, match="odd.png.*not in the bcss-wsss palette"):
        read_mask(tmp_path / "odd.png", spec)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    atomic_write_bytes(tmp_path / "x.bin", b"abc")
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]
