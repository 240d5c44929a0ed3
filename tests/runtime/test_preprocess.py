"""The runtime's Pillow + NumPy preprocessing against torchvision's own transforms."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.conftest import random_uint8_image
from tvdeploy.export.eager import torchvision_transforms
from tvdeploy.runtime.manifest import PreprocessSpec
from tvdeploy.runtime.preprocess import ImagePreprocessor, center_crop_box, resized_size


def _distinct_presets() -> list[PreprocessSpec]:
    from tvdeploy.models.catalog import list_catalog

    return sorted(
        {w.preprocess for m in list_catalog() for w in m.weights},
        key=lambda p: (p.crop_size, p.resize_size, p.interpolation, p.mean),
    )


PRESETS = _distinct_presets()
ODD_SIZES = [
    (1, 1),
    (2, 3),
    (512, 6),
    (6, 512),
    (223, 225),
    (257, 256),
]  # (w, h): tiny, very wide, very tall, near-crop


def test_the_catalog_has_the_expected_distinct_presets() -> None:
    assert len(PRESETS) == 28
    assert {p.interpolation for p in PRESETS} == {"bilinear", "bicubic"}


@pytest.mark.parametrize(
    "spec", PRESETS, ids=lambda p: f"{p.resize_size[0]}-{p.crop_size[0]}-{p.interpolation}-{p.mean[0]}"
)
@pytest.mark.slow  # 28 presets x large photos through Pillow and torchvision (seconds)
def test_matches_torchvision_on_photos_and_odd_sizes(spec: PreprocessSpec, photos: dict[str, Image.Image]) -> None:
    ours, theirs = ImagePreprocessor(spec), torchvision_transforms(spec)
    images = list(photos.values()) + [Image.fromarray(random_uint8_image(i, size)) for i, size in enumerate(ODD_SIZES)]
    for image in images:
        expected = theirs(image).numpy()
        got = ours(image)
        assert got.shape == expected.shape == ours.output_shape and got.dtype == np.float32
        assert np.abs(got - expected).max() <= 1e-5, f"{image.size}"


def test_crop_larger_than_the_image_is_zero_padded_like_torchvision() -> None:
    spec = PreprocessSpec((64,), (100, 120), "bilinear", True, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    from torchvision.transforms import functional as F

    image = Image.fromarray(random_uint8_image(5, (90, 64)))
    resized = F.resize(image, [64])
    expected = F.normalize(
        F.convert_image_dtype(F.pil_to_tensor(F.center_crop(resized, [100, 120]))), spec.mean, spec.std
    )
    got = ImagePreprocessor(spec)(image)
    assert got.shape == (3, 100, 120)
    np.testing.assert_allclose(got, expected.numpy(), atol=1e-6)
    assert got[0, 0, 0] == pytest.approx((0 - 0.5) / 0.25)  # the padding is black before normalization


@pytest.mark.parametrize(
    "height, width, size, expected",
    [
        (480, 640, (256,), (256, 341)),
        (640, 480, (256,), (341, 256)),
        (1, 1, (224,), (224, 224)),
        (3, 1000, (232,), (232, 77333)),
        (100, 100, (300, 200), (300, 200)),
    ],
)
def test_resized_size_follows_torchvision(
    height: int, width: int, size: tuple[int, ...], expected: tuple[int, int]
) -> None:
    from torchvision.transforms.functional import _compute_resized_output_size

    assert (
        resized_size(height, width, size)
        == expected
        == tuple(_compute_resized_output_size((height, width), list(size)))
    )


def test_center_crop_box_uses_torchvision_rounding() -> None:
    assert center_crop_box(256, 341, 224, 224) == (58, 16, 282, 240)
    assert center_crop_box(225, 225, 224, 224) == (0, 0, 224, 224)  # round(0.5) == 0, as in Python
    assert center_crop_box(227, 227, 224, 224) == (2, 2, 226, 226)  # round(1.5) == 2


def test_accepts_every_image_source(photo_files, photos) -> None:
    spec = PRESETS[0]
    pre = ImagePreprocessor(spec.to_dict())
    path = photo_files[0]
    expected = pre(Image.open(path))
    np.testing.assert_array_equal(pre(str(path)), expected)
    np.testing.assert_array_equal(pre(path.read_bytes()), expected)
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(pre(handle), expected)
    np.testing.assert_array_equal(pre(np.asarray(Image.open(path).convert("RGB"))), expected)


def test_the_tutorial_pipeline_is_exactly_the_weights_own_transforms(photos: dict[str, Image.Image]) -> None:
    """``torchvision_transforms`` (public Resize/CenterCrop/ToTensor/Normalize) equals ``weights.transforms()``."""
    from torchvision import models

    from tvdeploy.models.catalog import list_catalog

    seen: set[PreprocessSpec] = set()
    for info in list_catalog():
        for entry in info.weights:
            if entry.preprocess in seen:
                continue
            seen.add(entry.preprocess)
            theirs, ours = models.get_weight(entry.id).transforms(), torchvision_transforms(entry.preprocess)
            for image in list(photos.values())[:2]:
                assert np.array_equal(ours(image).numpy(), theirs(image).numpy()), entry.id
    assert len(seen) == len(PRESETS)
