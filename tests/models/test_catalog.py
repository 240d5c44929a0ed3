from __future__ import annotations

import pytest

from tvdeploy.errors import UnknownModelError
from tvdeploy.models.catalog import get_model_info, list_catalog


def test_catalog_holds_every_torchvision_classifier_and_weights() -> None:
    from torchvision import models

    catalog = list_catalog()
    assert len(catalog) == len(models.list_models(module=models)) == 80
    assert sum(len(m.weights) for m in catalog) == 115


def test_resnet50_entry_is_derived_from_torchvision_metadata() -> None:
    from torchvision.models import ResNet50_Weights

    info = get_model_info("resnet50")
    default = info.default_weights
    assert default.id == "ResNet50_Weights.IMAGENET1K_V2"
    assert [w.name for w in info.weights] == ["IMAGENET1K_V1", "IMAGENET1K_V2"]
    transforms = ResNet50_Weights.IMAGENET1K_V2.transforms()
    assert default.preprocess.resize_size == tuple(transforms.resize_size) == (232,)
    assert default.preprocess.crop_size == (224,)
    assert default.preprocess.interpolation == "bilinear"
    assert default.preprocess.mean == pytest.approx(transforms.mean)
    assert default.num_classes == 1000
    assert default.num_params == 25_557_032
    assert default.acc1 == pytest.approx(80.858)
    assert default.gflops == pytest.approx(4.089)
    assert default.file_size_mb == pytest.approx(97.79)


def test_bicubic_and_large_crop_presets_are_read() -> None:
    weights = get_model_info("efficientnet_b7").default_weights
    assert weights.preprocess.interpolation == "bicubic"
    assert weights.preprocess.crop_size == (600,)


def test_feature_only_weights_have_no_metrics_but_a_head_size() -> None:
    entry = get_model_info("vgg16").find_weights("IMAGENET1K_FEATURES")
    assert entry is not None and entry.acc1 is None and entry.num_classes == 1000


def test_pattern_matches_substrings_and_globs() -> None:
    assert {m.name for m in list_catalog("resnet5")} == {"resnet50", "wide_resnet50_2"}
    assert {m.name for m in list_catalog("resnet*")} == {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}


def test_unknown_model_suggests_close_names() -> None:
    with pytest.raises(UnknownModelError) as info:
        get_model_info("resnet5")
    assert "resnet50" in (info.value.hint or "")


def test_weights_lookup_accepts_short_and_qualified_names() -> None:
    info = get_model_info("resnet50")
    assert info.find_weights("IMAGENET1K_V1") is info.find_weights("ResNet50_Weights.IMAGENET1K_V1")
    assert info.find_weights("imagenet1k_v2") is info.default_weights
