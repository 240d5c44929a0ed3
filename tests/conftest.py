"""Shared fixtures. No test may reach the network: weights come from a temporary TORCH_HOME."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.image_zoo import write_calibration_images

#: Fixtures that export a model, train one, or start a server, Ray or Triton: a test that uses one is ``slow``
#: (still in the default run; ``pytest -m "not slow"`` is the inner loop of unit tests).
SLOW_FIXTURES = frozenset(
    {
        "resnet18_artifacts", "ten_class_checkpoint", "resnet50_onnx", "tuned", "repository", "triton", "derived",
        "embedded", "edge_artifacts", "exported", "bench_run", "hostile", "server", "local_ray", "local_rows",
        "ten_class_exports", "gpu_embedded",
    }
)  # fmt: skip


#: Markers of runs that are opted into by naming them in ``-m`` (``pytest -m zoo``); otherwise deselected.
OPT_IN_MARKERS = ("zoo", "accuracy", "targets")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a :data:`SLOW_FIXTURES` fixture ``slow``; deselect the :data:`OPT_IN_MARKERS`
    sweeps unless ``-m`` names them (so that ``-m "not slow"`` does not bring the zoo sweep in)."""
    expression = config.getoption("markexpr") or ""
    opted_out = [marker for marker in OPT_IN_MARKERS if marker not in expression]
    kept, dropped = [], []
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        (dropped if any(item.get_closest_marker(m) for m in opted_out) else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test runs offline with an empty torch hub cache of its own."""
    monkeypatch.setenv("TVDEPLOY_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``$TVDEPLOY_CACHE`` (bench --model's exports, the trained model) in this run's own directory: a cache
    shared between runs would hide the cold cost that CI pays on every fresh clone."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TVDEPLOY_CACHE", str(tmp_path_factory.mktemp("tvdeploy_cache")))
        yield


@pytest.fixture(autouse=True)
def _fresh_provider_probes() -> Iterator[None]:
    """Each test sees the host its monkeypatches make: the once-per-process provider probe starts over."""
    from tvdeploy.runtime.providers import start_problem

    start_problem.cache_clear()
    yield
    start_problem.cache_clear()


@pytest.fixture(autouse=True)
def _reset_cli_logging() -> Iterator[None]:
    """The CLI gives the ``tvdeploy`` logger its own handler and stops propagation; undo that after each test
    so that ``caplog`` (which listens on the root logger) sees tvdeploy's records in later tests."""
    yield
    logger = logging.getLogger("tvdeploy")
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def _sample_photos() -> dict[str, Image.Image]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {
        name: Image.fromarray(getattr(skimage.data, name)()) for name in ("astronaut", "chelsea", "coffee", "rocket")
    }
    for name, array in zip(("china", "flower"), load_sample_images().images, strict=False):
        photos[name] = Image.fromarray(array)
    return photos


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    """Real RGB photos from scikit-image and scikit-learn (not the ones tvdeploy ships)."""
    return _sample_photos()


@pytest.fixture(scope="session")
def photo_files(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Image.Image]) -> list[Path]:
    """The sample photos as JPEG files."""
    root = tmp_path_factory.mktemp("photos")
    paths = []
    for name, image in photos.items():
        path = root / f"{name}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


#: Real images shipped with scikit-image that are not among the parity photos: int8 calibration data.
@pytest.fixture(scope="session")
def calibration_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of 16 real images (scikit-image's), disjoint from the photos parity checks on."""
    return write_calibration_images(tmp_path_factory.mktemp("calibration"))


@pytest.fixture(scope="session")
def ten_class_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 'fine-tuned' 10-class resnet18 saved with torch.save(state_dict), and its labels file."""
    import torch
    from torchvision import models

    torch.manual_seed(1234)
    model = models.resnet18(num_classes=10)
    root = tmp_path_factory.mktemp("ckpt")
    path = root / "resnet18_cifar10.pt"
    torch.save(model.state_dict(), path)
    labels = root / "labels.txt"
    labels.write_text(
        "\n".join(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]) + "\n"
    )
    return path, labels


def random_uint8_image(seed: int, size: tuple[int, int]) -> np.ndarray:
    """A reproducible HxWx3 uint8 array."""
    return np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)


@pytest.fixture(scope="session")
def resnet18_artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """resnet18 (seeded random init) exported to every format: format -> artifact directory."""
    from tvdeploy.export.pipeline import ExportRequest, export_model

    out = tmp_path_factory.mktemp("resnet18")
    outcomes = export_model(
        ExportRequest("resnet18", ["onnx", "torchscript", "pt2"], weights="none", output=out, progress=False)
    )
    assert all(o.passed for o in outcomes)
    return {o.format: o.artifact_dir for o in outcomes}


@pytest.fixture(scope="session")
def ten_class_exports(tmp_path_factory: pytest.TempPathFactory, ten_class_checkpoint: tuple[Path, Path]) -> dict:
    """The 'fine-tuned' checkpoint exported once to every format whose extra is installed: format -> its
    ``ExportOutcome`` (OpenVINO converted from this ONNX export, as ``--format all`` does)."""
    from tvdeploy.export.pipeline import ExportRequest, export_model
    from tvdeploy.export.producers import exportable_formats

    path, labels = ten_class_checkpoint
    outcomes = export_model(
        ExportRequest(
            "resnet18",
            exportable_formats(),
            weights=str(path),
            labels_file=labels,
            output=tmp_path_factory.mktemp("ten_class"),
            output_is_parent=True,
            progress=False,
        )
    )
    return {o.format: o for o in outcomes}
