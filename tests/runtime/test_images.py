"""Decoding real-world files: every mode to RGB, EXIF, 16-bit, animations, and every kind of bad file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.image_zoo import write_bad_images, write_good_images
from tvdeploy.errors import ImageError
from tvdeploy.runtime.images import load_image, to_rgb
from tvdeploy.runtime.manifest import PreprocessSpec
from tvdeploy.runtime.preprocess import ImagePreprocessor

SPEC = PreprocessSpec((256,), (224,), "bilinear", True, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def good(tmp_path_factory, photos) -> dict[str, Path]:
    return write_good_images(tmp_path_factory.mktemp("good"), photos["chelsea"])


@pytest.fixture(scope="module")
def bad(tmp_path_factory, photos) -> dict[str, Path]:
    return write_bad_images(tmp_path_factory.mktemp("bad"), photos["coffee"])


def test_every_mode_becomes_rgb(good: dict[str, Path]) -> None:
    for name, path in good.items():
        image = load_image(path)
        assert image.mode == "RGB" and image.size == (160, 120), name


def test_sixteen_bit_gray_equals_its_eight_bit_version(good: dict[str, Path]) -> None:
    pre = ImagePreprocessor(SPEC)
    eight = pre(good["gray_L.png"])
    np.testing.assert_array_equal(pre(good["gray16_I16.png"]), eight)  # scaled, not clipped to white
    np.testing.assert_array_equal(pre(good["int32_I.tif"]), eight)
    np.testing.assert_array_equal(pre(good["float_F.tif"]), eight)
    assert Image.open(good["gray16_I16.png"]).mode.startswith("I;16")


def test_transparency_is_composited_over_white(good: dict[str, Path]) -> None:
    rgba = Image.open(good["rgba.png"])
    alpha = np.asarray(rgba)[..., 3]
    rgb = np.asarray(load_image(good["rgba.png"]))
    transparent = alpha == 0
    assert transparent.any() and (rgb[transparent] == 255).all()
    opaque = alpha == 255
    np.testing.assert_array_equal(rgb[opaque], np.asarray(rgba)[..., :3][opaque])
    palette = np.asarray(load_image(good["palette_transparency_P.gif"]))
    index = np.asarray(Image.open(good["palette_transparency_P.gif"]))
    assert (palette[index == 0] == 255).all()


def test_cmyk_and_grayscale_convert_like_pillow(good: dict[str, Path]) -> None:
    np.testing.assert_array_equal(
        np.asarray(load_image(good["cmyk.jpg"])), np.asarray(Image.open(good["cmyk.jpg"]).convert("RGB"))
    )
    gray = np.asarray(load_image(good["gray_L.png"]))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()


def test_animated_images_use_the_first_frame(good: dict[str, Path]) -> None:
    first = np.asarray(Image.open(good["animated.gif"]).convert("RGB"))
    np.testing.assert_array_equal(np.asarray(load_image(good["animated.gif"])), first)


def test_exif_rotated_photo_gives_the_upright_input(tmp_path: Path, photos) -> None:
    upright = photos["rocket"].convert("RGB")
    upright_path = tmp_path / "upright.jpg"
    upright.save(upright_path, quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display", as phones write it
    rotated_path = tmp_path / "phone.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(rotated_path, quality=95, exif=exif.tobytes())

    pre = ImagePreprocessor(SPEC)
    expected = pre(upright_path)
    got = pre(rotated_path)
    assert np.abs(got - expected).mean() < 0.03  # JPEG noise only
    ignored = pre(load_image(rotated_path, exif_transpose=False))
    assert np.abs(ignored - expected).mean() > 0.3


@pytest.mark.parametrize(
    "name, message",
    [
        ("truncated.jpg", "truncated or corrupt"),
        ("empty.jpg", "empty file"),
        ("not_an_image.png", "not an image"),
        ("bomb.png", "decompression bomb"),
    ],
)
def test_bad_files_raise_a_clear_error_naming_the_file(bad: dict[str, Path], name: str, message: str) -> None:
    with pytest.raises(ImageError) as info:
        load_image(bad[name])
    assert str(bad[name]) in str(info.value) and message in str(info.value)


def test_pixel_limit_is_configurable(good: dict[str, Path]) -> None:
    with pytest.raises(ImageError, match="exceeds the limit of 100"):
        load_image(good["rgb.jpg"], max_pixels=100)


def test_missing_file_and_bad_inputs() -> None:
    with pytest.raises(ImageError, match="no such file"):
        load_image("/no/such/photo.jpg")
    with pytest.raises(ImageError, match="empty input"):
        load_image(b"")
    with pytest.raises(ImageError, match="arrays must be uint8"):
        load_image(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ImageError, match="HxWx3"):
        load_image(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(ImageError, match="unsupported image input"):
        load_image(12345)  # type: ignore[arg-type]


def test_bytes_file_objects_and_arrays(good: dict[str, Path]) -> None:
    data = good["rgb.jpg"].read_bytes()
    reference = np.asarray(load_image(good["rgb.jpg"]))
    np.testing.assert_array_equal(np.asarray(load_image(data)), reference)
    np.testing.assert_array_equal(np.asarray(load_image(io.BytesIO(data))), reference)
    np.testing.assert_array_equal(np.asarray(load_image(reference)), reference)
    gray = np.asarray(to_rgb(Image.fromarray(reference[..., 0])))
    assert gray.shape == reference.shape
