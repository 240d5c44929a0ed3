"""Load-test `tvdeploy serve` against the offline runtime, in one run: the figures of docs/serving.md.

    python tools/serve_load.py ARTIFACT [--clients 8] [--requests 50] [--max-batch-size 8] [--json FILE]

Starts the server in a fresh process (time to ready = process start to /v2/health/ready: import, load and
warm-up), drives it with CLIENTS stock tritonclient.http clients sending batch-1 FP32 tensors, reads the
mean batch size the server formed from its /metrics, then times the offline runtime at that batch size in this
process. Client, server and offline run share this machine's cores: the ratio is what one machine gives.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tritonclient.http as http

from tvdeploy.runtime import load
from tvdeploy.runtime.manifest import read_manifest


def start_server(artifact: Path, extra: list[str]) -> tuple[subprocess.Popen[str], str, float]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tvdeploy", "serve", str(artifact), "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    assert proc.stdout is not None
    match = re.search(r"http://([\d.]+:\d+)", proc.stdout.readline())
    assert match, "the server did not start"
    url = match.group(1)
    while True:
        try:
            if urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=2).status == 200:
                return proc, url, time.perf_counter() - start
        except OSError:
            time.sleep(0.02)


def drive(url: str, name: str, input_name: str, shape: list[int], clients: int, requests: int) -> dict[str, float]:
    batch = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)

    def client(_: int) -> list[float]:
        own = http.InferenceServerClient(url)
        tensor = http.InferInput(input_name, shape, "FP32")
        tensor.set_data_from_numpy(batch)
        latencies = []
        for _ in range(requests):
            start = time.perf_counter()
            own.infer(name, [tensor])
            latencies.append(time.perf_counter() - start)
        return latencies

    client(0)  # warm the path once
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [t for per in pool.map(client, range(clients)) for t in per]
    elapsed = time.perf_counter() - start
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return {"throughput_ips": len(latencies) / elapsed, "p50_ms": float(p50), "p99_ms": float(p99)}


def mean_batch(url: str, name: str) -> float:
    text = urllib.request.urlopen(f"http://{url}/metrics", timeout=5).read().decode()
    total = float(re.search(rf'tvdeploy_batch_size_sum\{{model="{name}"\}} (\S+)', text).group(1))  # type: ignore[union-attr]
    count = float(re.search(rf'tvdeploy_batch_size_count\{{model="{name}"\}} (\S+)', text).group(1))  # type: ignore[union-attr]
    return total / count


def offline_throughput(artifact: Path, batch_size: int, seconds: float = 8.0) -> float:
    classifier = load(artifact)
    batch = classifier.manifest.input.example(batch_size)
    classifier.infer(batch)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        classifier.infer(batch)
        calls += 1
    return calls * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="per client")
    parser.add_argument("--json", type=Path)
    args, server_args = parser.parse_known_args()
    manifest = read_manifest(args.artifact)
    shape = [1, *(int(d) for d in manifest.input.shape[1:])]
    results = {"artifact": manifest.name, "server_args": server_args, "clients": args.clients,
               "requests_per_client": args.requests}  # fmt: skip
    proc, url, ready_s = start_server(args.artifact, server_args)
    try:
        results["ready_s"] = ready_s
        results["server"] = drive(url, manifest.name, manifest.input.name, shape, args.clients, args.requests)
        results["mean_batch"] = mean_batch(url, manifest.name)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    effective = max(1, round(results["mean_batch"]))
    results["offline_batch"] = effective
    results["offline_throughput_ips"] = offline_throughput(args.artifact, effective)
    results["ratio"] = results["server"]["throughput_ips"] / results["offline_throughput_ips"]
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
