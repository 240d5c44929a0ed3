"""Load-test `tvdeploy serve` against the offline runtime, in one run: the figures of docs/serving.md.

    python tools/serve_load.py ARTIFACT [--clients 8] [--requests 50] [--rounds 5] [--client raw|tritonclient]
        [--input tensor|shm|image] [--json FILE]
        [server options: --max-batch-size 4 --instances 2 ...]

Starts the server in a fresh process (time to ready = process start to /v2/health/ready: import, load and
warm-up), drives it with CLIENTS concurrent clients sending batch-1 requests (``tensor``: an FP32 tensor;
``shm``: the same tensor, written once into a system shared memory region per client, the request naming it;
``image``: one of the six shipped photos as encoded bytes, with ``class_count=5``), reads the mean batch size
the server formed from its /metrics, and times the offline runtime at that batch size doing the same work
(``infer`` on a tensor batch; ``predict_stream`` on the photos: decode, preprocess, model, top-5) in this process
right after each round of load, the server stopped meanwhile. This machine's speed drifts by tens of percent within
minutes, so each round's server throughput is compared with the offline figure taken next to it (timed for
as long as the round of load took, at least 1 s), over ROUNDS rounds, and the round with the median ratio is
reported (all rounds are in the JSON). Many short rounds follow the drift better than a few long ones.

CPU accounting (Linux): each round also records the CPU time per request of the server's event loop (its main
thread), of its other threads (the model instances, image decoding), of the load generator, and the offline
runtime's CPU time per image. From them, ``cpu_bound_ips``: the throughput if every usable core did nothing but
this work, and ``cpu_ceiling_ratio`` (that over the offline figure): the most the ratio can be on this machine
with the client sharing its cores, whatever the server's scheduling. ``busy`` is the share of the cores the
server and client used. The summary gives their medians over the rounds, and ``cpu_ms`` the medians of the CPU
times.

Clients: ``tritonclient`` is the stock tritonclient.http client, one per thread (what user code looks like;
its own encoding costs about half a millisecond of CPU a request); ``raw`` sends the very bytes tritonclient
sends (built once by tritonclient) over keep-alive connections from one asyncio loop, as a load generator
such as Triton's perf_analyzer does, so that the client takes little of the cores the server needs. Client,
server and offline run share this machine's cores: the ratio is what one machine gives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.http as http
import tritonclient.utils.shared_memory as shared_memory

from tvdeploy.export.inputs import photo_paths
from tvdeploy.runtime import load
from tvdeploy.runtime.classifier import Classifier
from tvdeploy.runtime.host import usable_cores
from tvdeploy.runtime.manifest import Manifest, read_manifest
from tvdeploy.serve.datatypes import ENCODED_IMAGES_INPUT


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


def summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    return {"throughput_ips": len(latencies) / elapsed, "p50_ms": float(p50), "p99_ms": float(p99)}


class Payload:
    """What each client sends: one batch-1 FP32 tensor, or one encoded photo (client i sends photo i mod 6) with
    Triton's classification extension asking for the top 5, decoded and preprocessed by the server."""

    def __init__(self, manifest: Manifest, kind: str) -> None:
        self.kind = kind
        self.output = manifest.output.name
        self.regions: list[Any] = []
        if self.sends_tensor:
            shape = [1, *(int(d) for d in manifest.input.shape[1:])]
            self.tensor = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
            self.input_name = manifest.input.name
        else:
            self.photos = [path.read_bytes() for path in photo_paths()]
            self.input_name = ENCODED_IMAGES_INPUT

    @property
    def sends_tensor(self) -> bool:
        """``tensor`` and ``shm`` carry the model's FP32 input (in the body or in a region); ``image`` photos."""
        return self.kind in ("tensor", "shm")

    @staticmethod
    def region_name(client: int) -> str:
        return f"load{client}"

    def register_regions(self, url: str, clients: int) -> None:
        """``shm``: one system shared memory region per client holding the tensor, registered with the server."""
        if self.kind != "shm":
            return
        client = http.InferenceServerClient(url)
        for index in range(clients):
            name, key = self.region_name(index), f"/tvdeploy_load_{index}"
            region = shared_memory.create_shared_memory_region(name, key, self.nbytes)
            shared_memory.set_shared_memory_region(region, [self.tensor])
            client.register_system_shared_memory(name, key, self.nbytes)
            self.regions.append(region)

    def release_regions(self) -> None:
        for region in self.regions:
            shared_memory.destroy_shared_memory_region(region)
        self.regions.clear()

    @property
    def nbytes(self) -> int:
        return int(self.tensor.nbytes)

    def inputs(self, client: int) -> tuple[list[http.InferInput], list[http.InferRequestedOutput] | None]:
        if self.sends_tensor:
            tensor = http.InferInput(self.input_name, list(self.tensor.shape), "FP32")
            if self.kind == "shm":
                tensor.set_shared_memory(self.region_name(client), self.nbytes)
            else:
                tensor.set_data_from_numpy(self.tensor)
            return [tensor], None
        photo = np.array([self.photos[client % len(self.photos)]], dtype=np.object_)
        tensor = http.InferInput(self.input_name, [1], "BYTES")
        tensor.set_data_from_numpy(photo)
        return [tensor], [http.InferRequestedOutput(self.output, class_count=5)]


#: A load generator: (url, model name, payload, clients, requests per client, meter of its timed part) ->
#: throughput and latencies.
Drive = Callable[[str, str, "Payload", int, int, "CpuMeter | None"], dict[str, float]]


def drive_tritonclient(
    url: str, name: str, payload: Payload, clients: int, requests: int, meter: CpuMeter | None = None
) -> dict[str, float]:
    def client(index: int) -> list[float]:
        own = http.InferenceServerClient(url)
        inputs, outputs = payload.inputs(index)
        latencies = []
        for _ in range(requests):
            start = time.perf_counter()
            own.infer(name, inputs, outputs=outputs)
            latencies.append(time.perf_counter() - start)
        return latencies

    client(0)  # warm the path once
    with meter or contextlib.nullcontext(), ThreadPoolExecutor(clients) as pool:
        start = time.perf_counter()
        latencies = [t for per in pool.map(client, range(clients)) for t in per]
        elapsed = time.perf_counter() - start
    return summary(latencies, elapsed)


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 response's status line, after its headers and body (Content-Length or chunked) are read."""
    status = await reader.readline()
    length = None
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.partition(b":")
        if key.strip().lower() == b"content-length":
            length = int(value)
    if length is not None:
        await reader.readexactly(length)
    else:
        while size := int((await reader.readline()).strip(), 16):
            await reader.readexactly(size + 2)
        await reader.readline()
    return status


def drive_raw(
    url: str, name: str, payload: Payload, clients: int, requests: int, meter: CpuMeter | None = None
) -> dict[str, float]:
    def request(index: int) -> bytes:
        inputs, outputs = payload.inputs(index)
        body, json_size = http.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
        binary = (  # no binary part (shm: the tensor is in the region): a plain JSON request
            f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {json_size}\r\n"
            if json_size is not None
            else "Content-Type: application/json\r\n"
        )
        head = f"POST /v2/models/{name}/infer HTTP/1.1\r\nHost: {url}\r\n{binary}Content-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    requests_by_client = [request(index) for index in range(clients)]
    host, port = url.rsplit(":", 1)

    async def client(count: int, index: int = 0) -> list[float]:
        request = requests_by_client[index]
        reader, writer = await asyncio.open_connection(host, int(port))
        latencies = []
        for _ in range(count):
            start = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - start)
            if b" 200 " not in status:
                raise RuntimeError(f"the server answered {status.decode().strip()}")
        writer.close()
        return latencies

    async def run() -> tuple[list[float], float]:
        await client(10)  # warm the path once
        with meter or contextlib.nullcontext():
            start = time.perf_counter()
            per_client = await asyncio.gather(*(client(requests, index) for index in range(clients)))
            elapsed = time.perf_counter() - start
        return [t for per in per_client for t in per], elapsed

    try:
        import uvloop  # KServe's dependency: a cheaper event loop for the client too

        latencies, elapsed = uvloop.run(run())
    except ImportError:
        latencies, elapsed = asyncio.run(run())
    return summary(latencies, elapsed)


def process_cpu_s(pid: int) -> tuple[float, float]:
    """CPU seconds a process's threads have run (``/proc/<pid>/task/*/schedstat``, in nanoseconds): its main
    thread (the server's event loop), and all its threads (the server's threads live as long as it does)."""
    main = total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            seconds = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (FileNotFoundError, ProcessLookupError):  # a thread that ended meanwhile
            continue
        total += seconds
        if task.name == str(pid):
            main = seconds
    return main, total


def own_cpu_s() -> float:
    """CPU seconds this process (the load generator, or the offline runtime) has used, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds the server (its event loop; all its threads) and this process used inside ``with meter:``,
    the timed part of a round of load (not its warm-up)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._start = (0.0, 0.0, 0.0)
        self.loop_s = self.server_s = self.client_s = 0.0

    def _now(self) -> tuple[float, float, float]:
        return (*process_cpu_s(self.pid), own_cpu_s())

    def __enter__(self) -> CpuMeter:
        self._start = self._now()
        return self

    def __exit__(self, *_: object) -> None:
        self.loop_s, self.server_s, self.client_s = (b - a for a, b in zip(self._start, self._now(), strict=True))

    def per_request_ms(self, requests: int) -> dict[str, float]:
        """The round's CPU time per request: the server's event loop, its other threads, the load generator."""
        return {
            "server_loop_cpu_ms": 1000 * self.loop_s / requests,
            "server_other_cpu_ms": 1000 * (self.server_s - self.loop_s) / requests,
            "client_cpu_ms": 1000 * self.client_s / requests,
        }


def batch_totals(url: str, name: str) -> tuple[float, float]:
    """The server's batch-size histogram so far: rows run and model calls."""
    text = urllib.request.urlopen(f"http://{url}/metrics", timeout=5).read().decode()
    total = float(re.search(rf'tvdeploy_batch_size_sum\{{model="{name}"\}} (\S+)', text).group(1))  # type: ignore[union-attr]
    count = float(re.search(rf'tvdeploy_batch_size_count\{{model="{name}"\}} (\S+)', text).group(1))  # type: ignore[union-attr]
    return total, count


def offline_throughput(classifier: Classifier, payload: Payload, seconds: float) -> tuple[float, float]:
    """Images per second of the offline runtime at ``classifier.batch_size``, doing the server's work: ``infer``
    on a tensor batch, or ``predict_stream`` on the photos (decoding in a thread pool ahead of the model,
    preprocessing, model, top-5: the runtime's fastest path for many images); and its CPU seconds per image."""
    if payload.sends_tensor:
        batch = classifier.manifest.input.example(classifier.batch_size)
        classifier.infer(batch)
        calls, start, cpu = 0, time.perf_counter(), own_cpu_s()
        while time.perf_counter() - start < seconds:
            classifier.infer(batch)
            calls += 1
        images = calls * classifier.batch_size
    else:
        stream = classifier.predict_stream(itertools.cycle(payload.photos), top_k=5)
        for _ in itertools.islice(stream, 2 * classifier.batch_size):  # warm the pool and the model
            pass
        images, start, cpu = 0, time.perf_counter(), own_cpu_s()
        for _ in stream:
            images += 1
            if time.perf_counter() - start >= seconds:
                break
    return images / (time.perf_counter() - start), (own_cpu_s() - cpu) / images


def cpu_budget(served: dict[str, float], offline_ips: float, offline_cpu_s: float) -> dict[str, float]:
    """The round's ratio to offline, and what this machine's cores allow: see the module docstring."""
    per_request_ms = served["server_loop_cpu_ms"] + served["server_other_cpu_ms"] + served["client_cpu_ms"]
    cores = usable_cores()
    cpu_bound_ips = 1000 * cores / per_request_ms
    return {
        "offline_throughput_ips": offline_ips,
        "offline_cpu_ms": 1000 * offline_cpu_s,
        "ratio": served["throughput_ips"] / offline_ips,
        "cpu_bound_ips": cpu_bound_ips,
        "cpu_ceiling_ratio": cpu_bound_ips / offline_ips,
        "busy": served["throughput_ips"] / cpu_bound_ips,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=50, help="per client")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of load, each followed by offline timing")
    parser.add_argument("--client", choices=["raw", "tritonclient"], default="raw", help="see the docstring")
    parser.add_argument("--input", choices=["tensor", "shm", "image"], default="tensor",
                        help="what each request carries (shm: the name of a shared memory region holding the tensor)")  # fmt: skip
    parser.add_argument("--json", type=Path)
    args, server_args = parser.parse_known_args()
    manifest = read_manifest(args.artifact)
    payload = Payload(manifest, args.input)
    results = {"artifact": manifest.name, "server_args": server_args, "client": args.client, "input": args.input,
               "clients": args.clients, "requests_per_client": args.requests}  # fmt: skip
    drive: Drive = drive_raw if args.client == "raw" else drive_tritonclient
    # this machine's speed drifts: after each round the offline runtime is timed at the batch size the server
    # formed, and each round's server figure is compared with the offline figure next to it
    if args.input == "shm" and "--shared-memory" not in server_args:
        server_args.append("--shared-memory")  # off by default in the server
    proc, url, ready_s = start_server(args.artifact, server_args)
    rounds: list[dict[str, float]] = []
    try:
        results["ready_s"] = ready_s
        payload.register_regions(url, args.clients)
        drive(url, manifest.name, payload, args.clients, 10, None)  # warm the path
        rows, calls = batch_totals(url, manifest.name)
        offline_classifier: Classifier | None = None  # loaded once, at the batch size the server formed
        requests = args.clients * args.requests  # per round
        for _ in range(args.rounds):
            meter = CpuMeter(proc.pid)
            served = drive(url, manifest.name, payload, args.clients, args.requests, meter)
            served.update(meter.per_request_ms(requests))
            if offline_classifier is None:
                rows_now, calls_now = batch_totals(url, manifest.name)
                effective = max(1, round((rows_now - rows) / (calls_now - calls)))  # the batch the server formed
                offline_classifier = load(args.artifact, batch_size=effective)
            load_s = requests / served["throughput_ips"]
            proc.send_signal(signal.SIGSTOP)  # the server holds no core while the offline runtime is timed
            try:  # for as long as the round of load took: short rounds, close together, follow the drift
                offline, offline_cpu_s = offline_throughput(offline_classifier, payload, max(1.0, load_s))
            finally:
                proc.send_signal(signal.SIGCONT)
            rounds.append({**served, **cpu_budget(served, offline, offline_cpu_s)})
        rows_end, calls_end = batch_totals(url, manifest.name)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        payload.release_regions()
    results["rounds"] = rounds
    results["mean_batch"] = (rows_end - rows) / (calls_end - calls)
    results["offline_batch"] = offline_classifier.batch_size if offline_classifier is not None else 0
    median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]  # the round with the median ratio
    results["server"] = {key: median[key] for key in ("throughput_ips", "p50_ms", "p99_ms")}
    results["offline_throughput_ips"] = median["offline_throughput_ips"]
    results["ratio"] = median["ratio"]
    # medians over the rounds: the ceiling and the cores' use, CPU per request (server, client) and per image (offline)
    for key in ("cpu_ceiling_ratio", "busy"):
        results[key] = float(np.median([r[key] for r in rounds]))
    results["cpu_ms"] = {
        key: float(np.median([r[f"{key}_cpu_ms"] for r in rounds]))
        for key in ("server_loop", "server_other", "client", "offline")
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
