"""`tools/serve_load.py`, which makes the figures of docs/serving.md, runs end to end against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tvdeploy.runtime.host import usable_cores

pytest.importorskip("tritonclient.http")

TOOL = Path(__file__).resolve().parents[2] / "tools" / "serve_load.py"


@pytest.mark.parametrize("kind", ["tensor", "shm", "image"])
def test_serve_load_compares_each_round_with_offline(resnet18_artifacts, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "load.json"
    command = [
        sys.executable, str(TOOL), str(resnet18_artifacts["onnx"]), "--input", kind, "--clients", "2",
        "--requests", "3", "--rounds", "3", "--json", str(out), "--max-batch-size", "2",
    ]  # fmt: skip
    subprocess.run(command, check=True, timeout=300, capture_output=True)
    got = json.loads(out.read_text())
    shm = ["--shared-memory"] if kind == "shm" else []  # the tool turns the server's extension on for shm
    assert (got["input"], got["clients"], got["server_args"]) == (kind, 2, ["--max-batch-size", "2", *shm])
    assert 1 <= got["mean_batch"] <= 2 and got["offline_batch"] in (1, 2) and got["ready_s"] > 0
    assert len(got["rounds"]) == 3
    for round_ in got["rounds"]:
        assert round_["throughput_ips"] > 0 and round_["offline_throughput_ips"] > 0
        assert round_["p50_ms"] <= round_["p99_ms"]
        assert round_["ratio"] == pytest.approx(round_["throughput_ips"] / round_["offline_throughput_ips"])
        # CPU accounting: the server's loop and model threads, the load generator and the offline runtime all ran
        assert min(round_[f"{key}_cpu_ms"] for key in ("server_loop", "server_other", "client", "offline")) > 0
        per_request = round_["server_loop_cpu_ms"] + round_["server_other_cpu_ms"] + round_["client_cpu_ms"]
        assert round_["cpu_bound_ips"] == pytest.approx(1000 * usable_cores() / per_request)
        assert round_["cpu_ceiling_ratio"] == pytest.approx(round_["cpu_bound_ips"] / round_["offline_throughput_ips"])
        assert 0 < round_["busy"] <= 1.05  # the cores' share used (rounding of short rounds aside)
    median = sorted(got["rounds"], key=lambda r: r["ratio"])[1]
    assert got["ratio"] == median["ratio"] and got["server"]["throughput_ips"] == median["throughput_ips"]
    assert got["busy"] == sorted(r["busy"] for r in got["rounds"])[1]
    assert got["cpu_ms"]["server_other"] == sorted(r["server_other_cpu_ms"] for r in got["rounds"])[1]
