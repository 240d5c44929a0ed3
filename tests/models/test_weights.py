from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
import torch

from tvdeploy.errors import LabelsError, WeightsError
from tvdeploy.models.catalog import get_model_info
from tvdeploy.models.download import cache_path, ensure_cached
from tvdeploy.models.loader import builder_kwargs, load_model, resolve_weights


def _place_in_cache(architecture: str, seed: int = 7) -> tuple[Path, dict]:
    """Put a checkpoint where torchvision's cache expects the DEFAULT weights file."""
    from torchvision import models

    torch.manual_seed(seed)
    state = models.get_model(architecture, weights=None).state_dict()
    path = cache_path(get_model_info(architecture).default_weights.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize(
    "spec, kind",
    [
        ("DEFAULT", "pretrained"),
        ("default", "pretrained"),
        ("none", "random"),
        ("IMAGENET1K_V1", "pretrained"),
        ("ResNet50_Weights.IMAGENET1K_V2", "pretrained"),
    ],
)
def test_weights_specs_resolve(spec: str, kind: str) -> None:
    assert resolve_weights(get_model_info("resnet50"), spec).kind == kind


def test_unknown_weights_name_lists_the_choices() -> None:
    with pytest.raises(WeightsError) as info:
        resolve_weights(get_model_info("resnet50"), "IMAGENET1K_V3")
    assert "IMAGENET1K_V1, IMAGENET1K_V2" in str(info.value) and "none" in str(info.value)


def test_missing_checkpoint_path_is_a_clear_error() -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_weights(get_model_info("resnet18"), "/no/such/ckpt.pth")


def test_pretrained_weights_load_offline_from_the_torch_hub_cache() -> None:
    path, state = _place_in_cache("resnet18")
    assert str(path).startswith(os.environ["TORCH_HOME"])
    model = load_model("resnet18", "DEFAULT", progress=False)
    assert model.pretrained and model.weights_id == "ResNet18_Weights.IMAGENET1K_V1"
    assert model.labels[:2] == ["tench", "goldfish"] and len(model.labels) == 1000
    assert torch.equal(model.module.state_dict()["fc.weight"], state["fc.weight"])
    assert model.source.to_dict() == {"kind": "pretrained", "seed": 0, "weights": "ResNet18_Weights.IMAGENET1K_V1"}
    assert model.source.weights_argument == "ResNet18_Weights.IMAGENET1K_V1"


def test_pretrained_googlenet_keeps_torchvision_builder_semantics() -> None:
    _place_in_cache("googlenet")
    model = load_model("googlenet", "DEFAULT", progress=False)
    # torchvision's builder turns on transform_input and drops the aux heads for pretrained weights
    assert model.module.transform_input is True and model.module.aux1 is None


def test_uncached_weights_fail_fast_offline_naming_the_expected_file() -> None:
    start = time.monotonic()
    with pytest.raises(WeightsError) as info:
        load_model("resnet18", "DEFAULT", progress=False)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and os.environ["TORCH_HOME"] in message
    assert "--weights none" in message and "--weights PATH" in message


def test_unreachable_host_fails_fast_without_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TVDEPLOY_OFFLINE")
    monkeypatch.setenv("TVDEPLOY_CONNECT_TIMEOUT", "2")
    with socket.socket() as sock:  # a loopback port nobody listens on: the connection is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(WeightsError, match=r"no connection to 127\.0\.0\.1"):
        ensure_cached(f"http://127.0.0.1:{port}/models/resnet18-f37072fd.pth", progress=False)
    assert time.monotonic() - start < 5


def test_corrupt_cached_weights_are_a_clear_error() -> None:
    path = cache_path(get_model_info("resnet18").default_weights.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError):
        load_model("resnet18", "DEFAULT", progress=False)


def test_random_init_is_seeded_and_marked_not_pretrained() -> None:
    a = load_model("mobilenet_v3_small", "none")
    b = load_model("mobilenet_v3_small", "none")
    c = load_model("mobilenet_v3_small", "none", seed=1)
    key = "classifier.3.weight"
    assert not a.pretrained and a.weights_id == "none"
    assert torch.equal(a.module.state_dict()[key], b.module.state_dict()[key])
    assert not torch.equal(a.module.state_dict()[key], c.module.state_dict()[key])
    assert a.preprocess == get_model_info("mobilenet_v3_small").default_weights.preprocess


def test_labels_file_must_match_the_class_count(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    with pytest.raises(LabelsError, match="2 labels but the model has 1000"):
        load_model("mobilenet_v3_small", "none", labels_file=labels)


@pytest.mark.slow  # seconds of work (see --durations)
def test_random_vit_head_is_redrawn_so_outputs_carry_signal() -> None:
    # torchvision zero-initialises ViT heads: every logit would be 0 and parity would prove nothing.
    model = load_model("vit_b_32", "none")
    head = model.module.heads.head.weight
    assert model.source.redrawn_zero_init == ("heads.head.weight",)
    assert model.source.to_dict()["redrawn_zero_init"] == ["heads.head.weight"]
    assert float(head.detach().std()) == pytest.approx(0.02, rel=0.05)
    with torch.no_grad():
        logits = model.module(torch.randn(2, 3, 224, 224))
    assert float(logits.std(dim=1).min()) > 0
    again = load_model("vit_b_32", "none")
    assert torch.equal(again.module.heads.head.weight, head)
    # a model without zero-initialised matrices records nothing
    assert load_model("resnet18", "none").source.redrawn_zero_init == ()
    assert "redrawn_zero_init" not in load_model("resnet18", "none").source.to_dict()


def test_weightless_vit_is_built_for_its_default_preset_crop() -> None:
    # vit_h_14's DEFAULT weights (SWAG E2E) crop 518; torchvision builds a weightless ViT for 224.
    assert builder_kwargs(get_model_info("vit_h_14")) == {"image_size": 518}
    assert builder_kwargs(get_model_info("vit_b_16")) == {}
    assert builder_kwargs(get_model_info("resnet50")) == {}
