"""GPU JPEG decoding (``--decoder``), exercised with the host standing in for the GPU: a stand-in for nvImageCodec
decodes with Pillow into "device" buffers (some with padded rows, as nvImageCodec's may be), the host's memory is
the device's, and the CPU provider runs the graph. What it proves: the batching by size, the gathering into the
runner's device input, the Pillow fallback and its count, a corrupt file failing alone, the fidelity gate, and the
refusals where the GPU path cannot run."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.cli_helpers import run_cli
from tvdeploy.errors import UserInputError
from tvdeploy.runtime import load
from tvdeploy.runtime.device_memory import HostStandIn
from tvdeploy.runtime.gpu_decode import MIN_COSINE, decoder_fidelity
from tvdeploy.runtime.postprocess import Prediction


class _DeviceImage:
    """An image in "device" memory as nvImageCodec returns one: HxWx3 uint8, rows possibly padded to a pitch."""

    def __init__(self, pixels: np.ndarray, pad: int) -> None:
        height, width, _ = pixels.shape
        self.memory = np.zeros((height, width * 3 + pad), dtype=np.uint8)
        self.memory[:, : width * 3] = pixels.reshape(height, width * 3)
        self.shape = pixels.shape
        self.__cuda_array_interface__ = {
            "shape": pixels.shape, "typestr": "|u1", "data": (self.memory.ctypes.data, False), "version": 3,
            "strides": (width * 3 + pad, 3, 1) if pad else None,
        }  # fmt: skip


class _Codec:
    """A stand-in for ``nvidia.nvimgcodec``: JPEGs decoded by Pillow (``transform`` may alter the pixels), anything
    else not decoded (None), as nvImageCodec answers for what it cannot read."""

    ColorSpec = SimpleNamespace(SRGB="srgb")

    def __init__(self, transform: Any = None) -> None:
        self.calls: list[int] = []
        self.transform = transform or (lambda pixels: pixels)
        codec = self

        class Decoder:
            def __init__(self, device_id: int) -> None:
                self.device_id = device_id

            def decode(self, streams: list[bytes], params: Any = None) -> list[Any]:
                codec.calls.append(len(streams))
                images = []
                for index, data in enumerate(streams):
                    try:
                        image = Image.open(io.BytesIO(data))
                        assert image.format == "JPEG"
                        pixels = np.asarray(image.convert("RGB"))
                    except Exception:
                        images.append(None)
                        continue
                    images.append(_DeviceImage(codec.transform(pixels), pad=16 * (index % 2)))
                return images

        self.Decoder = Decoder
        self.DecodeParams = lambda **kwargs: kwargs


@pytest.fixture(scope="module")
def gpu_embedded(resnet18_artifacts, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnet18 taking uint8 images, ending in softmax + top-5 (what GPU decoding feeds)."""
    from tvdeploy.cli import main

    out = tmp_path_factory.mktemp("gpu") / "embedded"
    argv = ["optimize", str(resnet18_artifacts["onnx"]), "--output", str(out), "--embed-preprocess",
            "--embed-postprocess", "5"]  # fmt: skip
    assert main(argv) == 0
    return out


@pytest.fixture
def on_gpu(monkeypatch) -> HostStandIn:
    """The CPU provider standing in for a GPU one, the host's memory for the device's."""
    memory = HostStandIn()
    monkeypatch.setattr("tvdeploy.runtime.runners.onnx.on_gpu", lambda provider: True)
    monkeypatch.setattr("tvdeploy.runtime.runners.onnx.device_memory", lambda index: memory)
    return memory


def _use_codec(monkeypatch, codec: _Codec) -> None:
    monkeypatch.setattr("tvdeploy.runtime.gpu_decode.nvimgcodec_module", lambda: codec)


def _files(photo_files: list[Path], tmp_path: Path) -> list[Path]:
    """The photos, one as PNG (nvImageCodec's stand-in does not decode it), and a corrupt JPEG."""
    png = tmp_path / "as.png"
    Image.open(photo_files[0]).save(png)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photo_files[1].read_bytes()[:300])
    return [*photo_files, png, corrupt]


def test_gpu_decoding_answers_as_pillow_and_batches_by_size(
    gpu_embedded, photo_files, tmp_path, on_gpu, monkeypatch
) -> None:
    codec = _Codec()
    _use_codec(monkeypatch, codec)
    files = _files(photo_files, tmp_path)
    with load(gpu_embedded, decoder="cpu") as host:
        expected = list(host.predict_stream(files))
    with load(gpu_embedded, decoder="gpu", batch_size=64) as classifier:
        pipeline = classifier.device_pipeline
        assert pipeline is not None
        fidelity = classifier.decoder_fidelity
        assert fidelity is not None and fidelity.passed and fidelity.images == 6
        assert fidelity.top1_agreement == 1.0 and fidelity.min_cosine > 0.99999
        calls = []
        infer = classifier.runner.infer
        monkeypatch.setattr(classifier.runner, "infer", lambda feeds: calls.append(feeds) or infer(feeds))
        got = list(classifier.predict_stream(files))
    assert [r.source for r in got] == [r.source for r in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.ok == theirs.ok
        if mine.ok:
            assert [p.index for p in mine.predictions] == [p.index for p in theirs.predictions]
            np.testing.assert_allclose(
                [p.probability for p in mine.predictions], [p.probability for p in theirs.predictions], atol=1e-5
            )
    assert not got[-1].ok and "corrupt.jpg" in got[-1].error  # a corrupt file fails alone
    assert pipeline.decoder.pillow_fallbacks == 1  # the PNG (the gate's photos are JPEGs)
    sizes = {Image.open(f).size for f in photo_files} | {Image.open(photo_files[0]).size}
    assert len(calls) == len(sizes)  # one model call per image size, each fed from the device input
    assert all(hasattr(feeds["images"], "__cuda_array_interface__") for feeds in calls)
    assert codec.calls[-1] == len(files) - 1  # one decoder call for the batch (the corrupt header stopped first)


def test_predict_cli_decodes_on_the_gpu_and_counts_pillows_share(
    gpu_embedded, photo_files, tmp_path, on_gpu, monkeypatch, capsys
) -> None:
    _use_codec(monkeypatch, _Codec())
    files = _files(photo_files, tmp_path)
    code, out, err = run_cli(capsys, "predict", str(gpu_embedded), *map(str, files), "--decoder", "gpu", "--json")
    assert code == 1  # the corrupt file
    assert out.count('"predictions"') == len(files) - 1 and out.count('"error"') == 1
    assert "1 of 8 image(s) decoded by Pillow" in err and "1 of 8 input(s) failed" in err


def test_a_gpu_path_below_the_gate_is_refused_or_passed_over(gpu_embedded, on_gpu, monkeypatch, caplog) -> None:
    _use_codec(monkeypatch, _Codec(transform=lambda pixels: 255 - pixels))  # a decoder that gets colours wrong
    with pytest.raises(UserInputError, match="below the gate") as raised:
        load(gpu_embedded, decoder="gpu")
    assert "top-1 agreement" in raised.value.message
    with caplog.at_level(logging.WARNING, logger="tvdeploy"), load(gpu_embedded, decoder="auto") as classifier:
        assert classifier.device_pipeline is None and classifier.decoder_fidelity is not None
    assert "decoding on the CPU" in caplog.text


def test_gpu_decoding_where_it_cannot_run_is_exit_2_naming_why(
    gpu_embedded, resnet18_artifacts, photo_files, capsys, monkeypatch
) -> None:
    photo = str(photo_files[0])
    code, _, err = run_cli(capsys, "predict", str(gpu_embedded), photo, "--decoder", "gpu")
    assert code == 2 and "not on an NVIDIA GPU" in err and "--provider cuda" in err
    code, _, err = run_cli(capsys, "predict", str(resnet18_artifacts["onnx"]), photo, "--decoder", "gpu")
    assert code == 2 and "--embed-preprocess" in err
    code, out, err = run_cli(capsys, "predict", str(gpu_embedded), photo, "--decoder", "auto")
    assert code == 0 and "%" in out and "decoder auto: decoding on the CPU (Pillow): the model runs on cpu" in err
    monkeypatch.setattr("tvdeploy.runtime.runners.onnx.on_gpu", lambda provider: True)
    monkeypatch.setattr("tvdeploy.runtime.runners.onnx.device_memory", lambda index: HostStandIn())

    def missing() -> None:
        raise ImportError("No module named 'nvidia.nvimgcodec'")

    monkeypatch.setattr("tvdeploy.runtime.gpu_decode.nvimgcodec_module", missing)
    code, _, err = run_cli(capsys, "predict", str(gpu_embedded), photo, "--decoder", "gpu")
    assert code == 2 and "nvImageCodec is not installed" in err and "nvidia-nvimgcodec-cu13" in err
    code, _, err = run_cli(capsys, "predict", str(gpu_embedded), photo, "--decoder", "gpu", "--engine", "ray")
    assert code == 2 and "applies to the local engine" in err


def test_fidelity_compares_top1_and_the_scores_over_both_top_ks() -> None:
    def row(*pairs: tuple[int, float]) -> list[Prediction]:
        return [Prediction(label=str(i), index=i, probability=p) for i, p in pairs]

    same = decoder_fidelity([row((1, 0.9), (2, 0.1))], [row((1, 0.9), (2, 0.1))])
    assert same.passed and same.min_cosine == pytest.approx(1.0)
    swapped = decoder_fidelity([row((2, 0.6), (1, 0.4))], [row((1, 0.6), (2, 0.4))])
    assert swapped.top1_agreement == 0.0 and not swapped.passed
    apart = decoder_fidelity([row((1, 0.9), (3, 0.1))], [row((1, 0.5), (2, 0.5))])
    assert apart.top1_agreement == 1.0 and apart.min_cosine < MIN_COSINE and not apart.passed


def test_the_real_nvimagecodec_without_a_gpu_is_a_clear_error(capfd) -> None:
    """nvImageCodec itself (the gpu-decode extra, in ``.[all]``): it imports on any host, without printing its
    notices about the JPEG 2000 and TIFF codecs tvdeploy does not use, and fails to start without a GPU."""
    from tvdeploy.runtime.gpu_decode import GpuImageDecoder, nvimgcodec_module

    pytest.importorskip("nvidia.nvimgcodec", reason="the gpu-decode extra is not installed")
    capfd.readouterr()
    assert hasattr(nvimgcodec_module(), "Decoder")
    assert "nvjpeg2k" not in capfd.readouterr().err.lower()
    with pytest.raises(UserInputError, match="nvImageCodec could not start on GPU 0"):
        GpuImageDecoder(0, cpu_decode=None)


def test_bench_times_gpu_decoding_beside_pillows_in_one_run(gpu_embedded, on_gpu, monkeypatch, capsys) -> None:
    import json

    _use_codec(monkeypatch, _Codec())
    argv = ["bench", str(gpu_embedded), "--e2e", "--decoder", "gpu", "--batch-sizes", "2", "--iterations", "2",
            "--warmup", "1", "--no-cold-start", "--json"]  # fmt: skip
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0
    rows = json.loads(out)["results"]
    assert {row["mode"] for row in rows} == {"model", "e2e", "e2e-gpu"}
    assert all(row["throughput_ips"] > 0 for row in rows)


def test_bench_decoder_gpu_without_a_gpu_is_exit_2(gpu_embedded, capsys) -> None:
    argv = ["bench", str(gpu_embedded), "--e2e", "--decoder", "gpu", "--batch-sizes", "1", "--iterations", "1",
            "--no-cold-start"]  # fmt: skip
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "--decoder gpu cannot run here" in err


def test_a_server_decoding_on_the_gpu_answers_as_pillow_and_refuses_a_bad_image(
    gpu_embedded, photo_files, on_gpu, monkeypatch
) -> None:
    import asyncio

    from tvdeploy.serve.core import ModelCore
    from tvdeploy.serve.failures import InvalidRequest
    from tvdeploy.serve.options import ServeOptions

    _use_codec(monkeypatch, _Codec())
    images = [path.read_bytes() for path in photo_files[:3]]
    cores = {decoder: ModelCore(gpu_embedded, ServeOptions(decoder=decoder)) for decoder in ("cpu", "gpu")}
    try:
        for core in cores.values():
            core.load()
        gpu = cores["gpu"]
        assert gpu.classifier is not None and gpu.classifier.device_pipeline is not None
        answers = {name: asyncio.run(core.classify(images, 3)) for name, core in cores.items()}
        assert [[p.index for p in row] for row in answers["gpu"]] == [[p.index for p in row] for row in answers["cpu"]]
        with pytest.raises(InvalidRequest, match=r"truncated|cannot read"):
            asyncio.run(gpu.classify([images[0], images[1][:300]], 3))
    finally:
        for core in cores.values():
            core.stop()


def test_large_batches_decode_in_runs_that_overlap_the_model(gpu_embedded, photo_files, on_gpu, monkeypatch) -> None:
    """A call's images are decoded in runs bounded by decoded pixels (here two photos' worth), the next run on the
    pipeline's thread while the current one runs through the model; the answers stay in input order."""
    codec = _Codec()
    _use_codec(monkeypatch, codec)
    monkeypatch.setattr("tvdeploy.runtime.gpu_pipeline.MAX_RUN_PIXELS", 2 * 640 * 640)
    files = [*photo_files, *photo_files]
    with load(gpu_embedded, decoder="cpu") as host:
        expected = host.predict(files, top_k=3)
    with load(gpu_embedded, decoder="gpu", batch_size=64) as classifier:
        codec.calls.clear()
        got = classifier.predict(files, top_k=3)
    assert len(codec.calls) > 1 and max(codec.calls) < len(files) and sum(codec.calls) == len(files)
    assert [[p.index for p in row] for row in got] == [[p.index for p in row] for row in expected]


def test_sizes_are_checked_from_headers_before_a_file_is_read(gpu_embedded, photo_files, on_gpu, monkeypatch) -> None:
    """--max-pixels refuses a large image from its header alone (the file is never read whole); the gate's own
    photos are not held to the user's limit."""
    _use_codec(monkeypatch, _Codec())
    read = []
    monkeypatch.setattr("tvdeploy.runtime.gpu_decode._file_bytes", lambda path: read.append(path) or b"")
    with load(gpu_embedded, decoder="gpu", max_pixels=1000) as classifier:
        assert classifier.decoder_fidelity is not None and classifier.decoder_fidelity.passed
        results = list(classifier.predict_stream(photo_files))
    assert all(not r.ok and "exceeds the limit of 1,000" in r.error for r in results)
    assert read == []
