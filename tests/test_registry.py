"""Everything that lists formats agrees with the format registry (``tvdeploy.runtime.formats``)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.cli_helpers import run_cli
from tvdeploy.bench.targets import default_backends, parse_backends
from tvdeploy.errors import ArtifactError, UserInputError
from tvdeploy.export.producers import PRODUCERS, criteria_of, exportable_formats, producer_of
from tvdeploy.runtime.formats import EAGER, FORMATS, backend_names, get_format
from tvdeploy.runtime.manifest import Manifest
from tvdeploy.runtime.precisions import PRECISIONS
from tvdeploy.runtime.providers import PROVIDER_CHOICES
from tvdeploy.runtime.runners import runner_for_artifact
from tvdeploy.runtime.runners.base import Runner

ROOT = Path(__file__).resolve().parents[1]


def _manifest(fmt: str) -> dict:
    return {
        "schema_version": 1,
        "name": "m",
        "architecture": "resnet18",
        "weights": "none",
        "pretrained": False,
        "format": fmt,
        "precision": "fp32",
        "opset": 18,
        "exporter": "x",
        "input": {"name": "input", "shape": ["batch", 3, 224, 224]},
        "output": {"name": "logits", "meaning": "logits", "shape": ["batch", 2]},
        "preprocess": {
            "resize_size": [256],
            "crop_size": [224],
            "interpolation": "bilinear",
            "antialias": True,
            "mean": [0.5, 0.5, 0.5],
            "std": [0.5, 0.5, 0.5],
        },
        "labels": ["a", "b"],
        "files": [{"path": FORMATS[fmt].model_file if fmt in FORMATS else "model.x", "sha256": "0" * 64, "bytes": 1}],
        "versions": {},
        "source": {"kind": "random", "seed": 0},
    }


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_entry_is_complete_and_loadable(fmt: str) -> None:
    spec = FORMATS[fmt]
    assert spec.name == fmt and get_format(fmt.upper()) is spec
    assert set(spec.providers) <= set(PROVIDER_CHOICES) and "cpu" in spec.providers
    assert set(criteria_of(spec)) <= set(PRECISIONS) and "fp32" in criteria_of(spec)
    made = producer_of(spec)  # every format has its producer on the export side
    # optimize derives only what parity can judge; fp32 only as a conversion to this format from its source
    assert set(made.derivable) <= set(criteria_of(spec)) - ({"fp32"} if made.source is None else set())
    assert issubclass(spec.runner_class(), Runner)
    producer = made.load()
    assert producer.strategies and callable(producer.produce)
    assert made.source is None or made.source in FORMATS


def test_the_export_side_has_a_producer_for_every_format_and_nothing_else() -> None:
    assert list(PRODUCERS) == list(FORMATS)


def test_model_files_are_distinct() -> None:
    files = [name for spec in FORMATS.values() for name in spec.files]
    assert len(files) == len(set(files))


def test_every_extra_named_by_the_registry_exists_and_all_installs_it() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    everything = " ".join(extras["all"])
    for spec in FORMATS.values():
        assert spec.extra in extras, f"{spec.name} names the extra {spec.extra!r}, which pyproject.toml lacks"
        assert spec.extra in everything


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_manifest_validation_accepts_the_registry_formats(fmt: str) -> None:
    assert Manifest.from_dict(_manifest(fmt)).format == fmt


def test_manifest_validation_rejects_other_formats() -> None:
    with pytest.raises(ArtifactError, match="unknown artifact format 'tflite'"):
        Manifest.from_dict(_manifest("tflite"))


@pytest.mark.parametrize("fmt", [f for f in FORMATS if not FORMATS[f].missing_for_runtime()])
def test_runner_for_artifact_builds_the_registry_runner(fmt: str, tmp_path: Path) -> None:
    runner = runner_for_artifact(tmp_path, Manifest.from_dict(_manifest(fmt)))
    assert type(runner) is FORMATS[fmt].runner_class()


def test_cli_choices_and_help_list_the_registry(capsys) -> None:
    with pytest.raises(SystemExit):
        run_cli(capsys, "export", "--help")
    help_text = capsys.readouterr().out
    for name, spec in FORMATS.items():
        assert name in help_text and spec.summary.split(",")[0] in help_text
    with pytest.raises(SystemExit):
        run_cli(capsys, "bench", "--help")
    bench_help = " ".join(capsys.readouterr().out.split())
    assert ", ".join(backend_names()) in bench_help


def test_format_all_leaves_out_what_is_not_installed_or_cannot_take_the_request(monkeypatch, caplog) -> None:
    from tvdeploy.export.format_choice import formats_to_export

    installed = [name for name in FORMATS if name != "executorch"]  # a host without the executorch extra
    monkeypatch.setattr("tvdeploy.export.format_choice.exportable_formats", lambda: installed)
    with caplog.at_level("INFO", logger="tvdeploy"):
        assert formats_to_export("all") == [n for n in FORMATS if n != "executorch"]
    assert "executorch" in caplog.text and "not installed" in caplog.text
    int8 = formats_to_export("ALL", "int8")
    assert int8 and all("int8" in criteria_of(n) for n in int8) and "torchscript" not in int8
    assert formats_to_export("all", graph_passes=True) == [n for n in installed if PRODUCERS[n].graph_passes]
    for name in FORMATS:
        assert formats_to_export(name.upper()) == [name]
    with pytest.raises(UserInputError, match="choose one of"):
        formats_to_export("tflite")


def test_bench_backends_are_eager_then_each_format_once() -> None:
    names = backend_names()
    assert names[0] == EAGER and sorted(names[1:]) == sorted(FORMATS) and len(set(names)) == len(names)
    assert default_backends()[0] == EAGER and set(default_backends()) <= set(names)
    assert parse_backends(" ONNX, eager,onnx ") == ["onnx", "eager"]  # spelled freely, each once, in order given
    with pytest.raises(UserInputError, match="choose from " + ", ".join(names)):
        parse_backends("eager,tflite")


def test_zoo_sweep_covers_the_installed_formats() -> None:
    from tests.export import test_zoo

    assert exportable_formats() == test_zoo.FORMATS


def test_a_zoo_sweep_row_is_json_the_coverage_renderer_reads(resnet18_artifacts) -> None:
    import json

    from tests.export.test_zoo import _row
    from tvdeploy.export.pipeline import ExportOutcome
    from tvdeploy.runtime.manifest import read_manifest

    manifest = read_manifest(resnet18_artifacts["onnx"])
    assert manifest.parity is not None
    outcome = ExportOutcome("onnx", resnet18_artifacts["onnx"], manifest, manifest.parity, 1.0)
    row = json.loads(json.dumps(_row("resnet18", outcome)))  # the sweep appends rows like this to coverage.jsonl
    assert row["passed"] and row["attempts"][0] == {"strategy": "dynamo", "exported": True,
                                                    "exporter": manifest.exporter, "parity_passed": True}  # fmt: skip
