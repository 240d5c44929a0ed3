"""Cold start and peak memory of one backend, measured in a fresh process.

``python -m tvdeploy.bench.coldstart SPEC_JSON`` loads the model, runs one
inference and prints ``{"import_ms", "cold_start_ms", "peak_rss_mb"}``: a fresh
process is the only honest cold start, and the only way to give each backend
its own peak RSS.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def measure_in_subprocess(spec: dict[str, Any], timeout: float = 600) -> dict[str, float]:
    """Run this module in a new interpreter for ``spec`` and return what it measured."""
    proc = subprocess.run(
        [sys.executable, "-m", "tvdeploy.bench.coldstart", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"cold-start measurement failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _measure(spec: dict[str, Any]) -> dict[str, float]:
    start = time.perf_counter()
    from tvdeploy.runtime.manifest import Source, read_manifest
    from tvdeploy.runtime.providers import SessionConfig, get_provider
    from tvdeploy.runtime.runners import Runner, runner_for_artifact

    backend = spec["backend"]
    if backend == "eager":
        import torch  # noqa: F401  (the import is part of eager's price, counted in import_ms)

        from tvdeploy.export.eager import EagerRunner
        from tvdeploy.models.loader import load_model
    imported = time.perf_counter()
    if backend == "eager":
        from tvdeploy.export.options import ExportOptions
        from tvdeploy.export.pipeline import tensor_specs

        source = Source.from_dict(spec["source"])
        model = load_model(spec["source"]["architecture"], source.weights_argument, seed=source.seed, progress=False)
        input_spec, output_spec = tensor_specs(model, ExportOptions())
        runner: Runner = EagerRunner(
            model.module, input_spec, output_spec.name, device=get_provider(spec["provider"]).torch_device or "cpu"
        )
    else:
        artifact = Path(spec["artifact"])
        manifest = read_manifest(artifact)
        input_spec = manifest.input
        runner = runner_for_artifact(
            artifact, manifest, provider=spec["provider"], config=SessionConfig(intra_op_threads=spec.get("threads"))
        )
    batch = input_spec.example(spec["batch_size"])
    with runner:
        runner.infer({input_spec.name: batch})
    done = time.perf_counter()
    return {
        "import_ms": (imported - start) * 1000,
        "cold_start_ms": (done - imported) * 1000,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set size.

    Linux's ``ru_maxrss`` survives ``execve`` (a child reports at least its parent's
    peak), so the per-process high-water mark ``VmHWM`` is read instead where it exists.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """Entry point of the measuring subprocess."""
    print(json.dumps(_measure(json.loads(sys.argv[1]))))


if __name__ == "__main__":
    main()
