from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision import models

from tvdeploy.errors import CheckpointError
from tvdeploy.models.checkpoint import read_checkpoint
from tvdeploy.models.loader import load_model


def test_ten_class_state_dict_infers_the_head_and_takes_the_labels(ten_class_checkpoint: tuple[Path, Path]) -> None:
    path, labels = ten_class_checkpoint
    model = load_model("resnet18", str(path), labels_file=labels)
    assert model.num_classes == 10 and model.labels[3] == "cat"
    assert model.module.fc.out_features == 10
    assert torch.equal(model.module.state_dict()["fc.weight"], torch.load(path)["fc.weight"])
    assert model.source.kind == "checkpoint" and len(model.source.sha256 or "") == 64
    assert model.source.weights_argument == str(path.resolve()) and model.source.num_classes == 10
    # a checkpoint gets the architecture's DEFAULT preprocessing
    assert model.preprocess.resize_size == (256,) and model.preprocess.crop_size == (224,)


def test_checkpoint_without_labels_gets_generic_names(ten_class_checkpoint: tuple[Path, Path]) -> None:
    model = load_model("resnet18", str(ten_class_checkpoint[0]))
    assert model.labels == [f"class_{i}" for i in range(10)]


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_and_prefixed_state_dicts_are_unwrapped(tmp_path: Path, wrapper: str) -> None:
    state = models.resnet18(num_classes=10).state_dict()
    path = tmp_path / "wrapped.pth"
    torch.save({wrapper: {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    loaded = read_checkpoint(path)
    assert set(loaded) == set(state)


def test_safetensors_checkpoints_load(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    state = models.resnet18(num_classes=3).state_dict()
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    assert load_model("resnet18", str(path)).num_classes == 3


def test_googlenet_checkpoint_without_aux_heads_loads(tmp_path: Path) -> None:
    state = models.googlenet(num_classes=5, aux_logits=False, init_weights=True).state_dict()
    path = tmp_path / "googlenet.pt"
    torch.save(state, path)
    assert load_model("googlenet", str(path)).num_classes == 5


def test_mismatched_keys_name_the_first_missing_and_unexpected(tmp_path: Path) -> None:
    path = tmp_path / "r34.pt"
    torch.save(models.resnet34().state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_model("resnet18", str(path))
    message = str(info.value)
    assert "does not fit resnet18" in message and "unexpected (first: layer1.2." in message


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "whole_model.pt"
    torch.save(models.resnet18(), path)  # a pickled nn.Module, not a state dict
    with pytest.raises(CheckpointError, match="refuses to unpickle"):
        read_checkpoint(path)


class _RunsACommand:
    """What a malicious checkpoint pickles: unpickling it calls os.system."""

    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_a_checkpoint_that_would_run_code_is_named_as_such(tmp_path: Path, capfd) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _RunsACommand()}, path)
    with pytest.raises(CheckpointError, match=r"posix\.system") as raised:
        read_checkpoint(path)
    assert "refuses to unpickle" in str(raised.value) and "corrupt" not in str(raised.value)
    assert "pwned" not in capfd.readouterr().out  # nothing ran


@pytest.mark.parametrize("content", [b"", b"garbage bytes"])
def test_unreadable_files_are_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="not a readable"):
        read_checkpoint(path)


def test_dict_without_tensors_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="holds no state dict"):
        read_checkpoint(path)
