"""``predict --engine ray`` against the local ``predict_stream`` on the same images: throughput once the cluster is
up, and the fixed start-up cost (docs/batch.md).

    python tools/ray_throughput.py ARTIFACT IMAGE_DIR [--copies 40] [--address auto] [--json out.json]

The images of IMAGE_DIR are copied ``--copies`` times into a scratch folder (distinct files, the same pixels).
Each engine classifies a small and a large share of them; the difference divides out what every run pays once
(Ray: the instance, the actors' start and the model load; local: the model load), so
``throughput = (large - small) / (time(large) - time(small))`` and ``start-up = time(small) - small / throughput``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tvdeploy.batch.ray_job import RayJob, run_ray_job  # noqa: E402
from tvdeploy.runtime.classifier import load  # noqa: E402
from tvdeploy.runtime.host import (  # noqa: E402
    cpu_model,
    cpu_signature,
    usable_cores,
)
from tvdeploy.runtime.inputs import collect_inputs  # noqa: E402


def _folder(source: Path, copies: int, scratch: Path) -> list[Path]:
    images = [Path(p) for p in collect_inputs([source]).files if not p.endswith("bad.jpg")]
    scratch.mkdir(parents=True)
    made = []
    for copy in range(copies):
        for image in images:
            target = scratch / f"{copy:04d}_{image.name}"
            shutil.copy(image, target)
            made.append(target)
    return made


def _local(artifact: Path, files: list[Path], batch_size: int) -> float:
    start = time.perf_counter()
    with load(artifact, batch_size=batch_size) as classifier:
        for _ in classifier.predict_stream([str(f) for f in files]):
            pass
    return time.perf_counter() - start


def _ray(artifact: Path, folder: Path, out: Path, args: argparse.Namespace) -> float:
    start = time.perf_counter()
    run_ray_job(
        RayJob(artifact=artifact, inputs=[str(folder)], output=out, batch_size=args.batch_size, address=args.address,
               concurrency=args.concurrency, num_cpus=args.num_cpus, threads=args.threads)
    )  # fmt: skip
    return time.perf_counter() - start


def _rates(small: int, large: int, t_small: float, t_large: float) -> dict[str, float]:
    throughput = (large - small) / (t_large - t_small)
    return {"throughput_ips": round(throughput, 2), "startup_s": round(t_small - small / throughput, 2),
            "small_s": round(t_small, 2), "large_s": round(t_large, 2)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--address", help="a running Ray cluster (default: a local instance per run)")
    parser.add_argument("--concurrency", type=int, help="actors (default: the job's)")
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per actor")
    parser.add_argument("--threads", type=int, help="threads per actor (default: the job's)")
    parser.add_argument("--skip-local", action="store_true", help="time only the Ray engine")
    parser.add_argument("--node-ip", help="this driver's node address in the cluster (e.g. 127.0.0.2, as ray start's)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.address:  # connected once here; every job below uses this connection
        import ray

        ray.init(address=args.address, _node_ip_address=args.node_ip, log_to_driver=False)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        files = _folder(args.images, args.copies, scratch / "all")
        small_files = files[: max(args.batch_size, len(files) // 6)]
        (scratch / "small").mkdir()
        for f in small_files:
            shutil.copy(f, scratch / "small" / f.name)
        local = None if args.skip_local else _rates(
            len(small_files), len(files), _local(args.artifact, small_files, args.batch_size),
            _local(args.artifact, files, args.batch_size),
        )  # fmt: skip
        ray = _rates(
            len(small_files), len(files),
            _ray(args.artifact, scratch / "small", scratch / "small.jsonl", args),
            _ray(args.artifact, scratch / "all", scratch / "all.jsonl", args),
        )  # fmt: skip
    result = {
        "artifact": str(args.artifact), "images": len(files), "batch_size": args.batch_size, "address": args.address,
        "cpu": cpu_model(), "cpu_signature": cpu_signature(), "usable_cores": usable_cores(),
        "concurrency": args.concurrency, "num_cpus": args.num_cpus, "threads": args.threads,
        "local_predict_stream": local, "ray": ray,
        "ratio": round(ray["throughput_ips"] / local["throughput_ips"], 3) if local else None,
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
