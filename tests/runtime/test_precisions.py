"""Precisions are data: one record each, read by the formats, the CLI and the runners."""

from __future__ import annotations

import itertools

import pytest

from tvdeploy.errors import ProviderError, UserInputError
from tvdeploy.export.producers import criteria_for
from tvdeploy.runtime.formats import FORMATS
from tvdeploy.runtime.precisions import PRECISION_SPECS, PRECISIONS, get_precision


def test_every_format_precision_is_a_registered_one_with_its_criteria() -> None:
    for spec in FORMATS.values():
        assert set(spec.precisions) <= set(PRECISIONS), spec.name
        for name in spec.precisions:
            assert criteria_for(spec, name) is PRECISION_SPECS[name].criteria
    assert FORMATS["openvino"].precisions == ("fp32", "fp16", "bf16", "int8")
    with pytest.raises(UserInputError, match="does not support precision 'bf16'"):
        criteria_for("onnx", "bf16")


def test_looser_precisions_have_looser_criteria() -> None:
    ordered = [get_precision(name).criteria for name in ("fp32", "fp16", "bf16", "int8")]
    for stricter, looser in itertools.pairwise(ordered):
        assert looser.atol_scale >= stricter.atol_scale and looser.min_cosine <= stricter.min_cosine
    assert get_precision("int8").needs_calibration and not get_precision("bf16").needs_calibration


def test_bf16_on_openvino_needs_bf16_hardware() -> None:
    bf16 = get_precision("bf16")
    assert bf16.missing_features("openvino", frozenset({"avx2", "fma"})) == ["avx512_bf16", "amx_bf16"]
    assert bf16.missing_features("openvino", frozenset({"amx_bf16"})) == []
    assert bf16.missing_features("onnx", frozenset()) == []  # a runtime it does not list needs nothing
    with pytest.raises(ProviderError, match="openvino computes bf16 only on CPUs with avx512_bf16 or amx_bf16"):
        bf16.check_host("openvino", frozenset({"avx2"}))
    with pytest.raises(UserInputError, match="choose one of fp32, fp16, bf16, int8"):
        get_precision("fp8")


def test_every_precision_openvino_runs_says_how_and_tensorrt_is_told_the_low_ones() -> None:
    from tvdeploy.runtime.runners.openvino import OpenVinoRunner

    for name in FORMATS["openvino"].precisions:
        hint = get_precision(name).options_for("openvino", "cpu")["INFERENCE_PRECISION_HINT"]
        assert OpenVinoRunner("m.xml", precision=name).properties()["INFERENCE_PRECISION_HINT"] == hint
    assert get_precision("fp32").options_for("openvino", "cpu")["INFERENCE_PRECISION_HINT"] == "f32"  # never bf16
    assert get_precision("fp16").options_for("onnx", "tensorrt") == {"trt_fp16_enable": True}
    assert get_precision("int8").options_for("onnx", "tensorrt")["trt_int8_enable"] is True


def test_options_are_keyed_and_looked_up_by_the_same_execution(tmp_path) -> None:
    """An ONNX artifact on ONNX Runtime's OpenVINO provider gets no OpenVINO-runtime hint (it once did: the
    options were keyed by format and looked up by provider)."""
    from tests.runtime.test_manifest import make_manifest
    from tvdeploy.runtime.runners.onnx import OnnxRunner

    for precision in ("fp32", "fp16", "int8"):
        assert get_precision(precision).options_for("onnx", "openvino") == {}
        runner = OnnxRunner.for_artifact(tmp_path, make_manifest(precision=precision), "openvino")
        assert "INFERENCE_PRECISION_HINT" not in runner.config.provider_options
    runner = OnnxRunner.for_artifact(tmp_path, make_manifest(precision="fp16"), "tensorrt")
    assert runner.config.provider_options == {"trt_fp16_enable": True}
