"""``decode="fast"``: JPEG DCT-domain downscaling and box reduction before the exact resize, opt-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli_helpers import run_cli
from tvdeploy.errors import ImageError
from tvdeploy.runtime import load
from tvdeploy.runtime.images import load_image
from tvdeploy.runtime.preprocess import ImagePreprocessor

SPEC = {"resize_size": [256], "crop_size": [224], "interpolation": "bilinear", "antialias": True,
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}  # fmt: skip


@pytest.fixture(scope="module")
def phone_photos(photos: dict[str, Image.Image], tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """12-megapixel JPEGs (4032x3024, as phones take them) made from the sample photos; one stored sideways
    with EXIF orientation 6, as phones do."""
    root = tmp_path_factory.mktemp("phone")
    paths = []
    for name, image in list(photos.items())[:3]:
        big = image.convert("RGB").resize((4032, 3024), Image.Resampling.BICUBIC)
        path = root / f"{name}.jpg"
        if name == "chelsea":
            exif = Image.Exif()
            exif[0x0112] = 6  # rotate 90 degrees clockwise to display
            big.transpose(Image.Transpose.ROTATE_90).save(path, quality=92, exif=exif)
        else:
            big.save(path, quality=92)
        paths.append(path)
    return paths


def test_fast_decoding_never_goes_below_the_size_the_resize_needs(phone_photos: list[Path]) -> None:
    prep = ImagePreprocessor(SPEC)
    for path in phone_photos:
        exact = load_image(path)
        fast = load_image(path, shrink_to=prep.needed_size)
        assert exact.size == (4032, 3024)  # upright, EXIF applied, also for the sideways one
        need_w, need_h = prep.needed_size(*exact.size)
        assert need_w <= fast.width < exact.width / 3 and need_h <= fast.height < exact.height / 3
        assert fast.width / fast.height == pytest.approx(exact.width / exact.height, rel=0.01)


@pytest.mark.slow  # seconds of work (see --durations)
def test_other_formats_are_box_reduced(tmp_path: Path, photos: dict[str, Image.Image]) -> None:
    path = tmp_path / "big.png"
    photos["coffee"].resize((2400, 1600)).save(path)
    prep = ImagePreprocessor(SPEC)
    fast = load_image(path, shrink_to=prep.needed_size)
    assert fast.size == (400, 267)  # reduce(6): the largest factor that keeps the short side >= 256
    small = tmp_path / "small.png"
    photos["coffee"].resize((300, 200)).save(small)
    assert load_image(small, shrink_to=prep.needed_size).size == (300, 200)  # nothing to gain: untouched


def test_fast_predictions_stay_close_to_exact(resnet18_artifacts, phone_photos: list[Path]) -> None:
    with load(resnet18_artifacts["onnx"]) as exact, load(resnet18_artifacts["onnx"], decode="fast") as fast:
        for path in phone_photos:
            a, b = exact.preprocess(path), fast.preprocess(path)
            diff = np.abs(a - b)
            assert diff.mean() < 0.03 and diff.max() < 0.5, path.name  # normalized units (std ~1)
            assert not np.array_equal(a, b)  # really a different decode
        top_exact = [row[0].index for row in exact.predict(phone_photos, top_k=1)]
        top_fast = [row[0].index for row in fast.predict(phone_photos, top_k=1)]
    assert top_fast == top_exact


def test_exact_stays_the_default(resnet18_artifacts, phone_photos: list[Path]) -> None:
    clf = load(resnet18_artifacts["onnx"])
    assert clf.decoder.decode == "exact"
    expected = ImagePreprocessor(clf.manifest.preprocess)(load_image(phone_photos[0]))
    assert np.array_equal(clf.preprocess(phone_photos[0]), expected)
    with pytest.raises(ImageError, match="unknown decode mode 'quick'"):
        load(resnet18_artifacts["onnx"], decode="quick")


def test_predict_cli_decode_fast(resnet18_artifacts, phone_photos: list[Path], capsys) -> None:
    code, out, _ = run_cli(capsys, "predict", resnet18_artifacts["onnx"], *phone_photos, "--decode", "fast", "--json")
    assert code == 0 and len(out.splitlines()) == len(phone_photos)
