"""Check tvdeploy on a machine with an NVIDIA GPU, in one bounded run, and write a Markdown report.

    python benchmarks/gpu_check.py --out DIR            # on the GPU machine (onnxruntime-gpu installed)
    python benchmarks/gpu_check.py --out DIR --dry-run  # the same steps on the CPU, small, to check the script

Steps, each a ``tvdeploy`` command with a timeout (a step that fails is reported, the next ones still run):
export resnet50 (random weights) to ONNX; validate it on the GPU provider; ``predict --provider auto``; ``bench``
on the GPU at batch 1, 64 and 256 (model-only figures, with the share of the GPU's datasheet peak); the fp16
artifact with embedded pre/post-processing: where ONNX Runtime places its nodes (``gpu_placement.py``), its speed
from host uint8 images to top-5 against torch eager fp16 channels_last (``gpu_speed.py``: plain, NHWC, pinned
staging, two streams, CUDA graphs), and ``bench --e2e --decoder auto`` from 2,048 JPEG files (Pillow beside
nvImageCodec, with the decoder's fidelity gate on the photos); ``tune
--objective throughput`` (which must finish whether or not TensorRT can start, naming each GPU configuration it did
not try and why); and the manifest's recorded onnxruntime version and distribution. The report names the GPU, the
driver and the versions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(
    name: str, argv: list[str], out: Path, timeout: float, steps: list[dict]
) -> subprocess.CompletedProcess | None:
    start = time.perf_counter()
    command = [sys.executable, "-m", "tvdeploy", *argv]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        steps.append({"step": name, "status": f"timed out after {timeout:.0f} s", "seconds": timeout})
        return None
    seconds = time.perf_counter() - start
    steps.append({"step": name, "status": f"exit {done.returncode}", "seconds": round(seconds, 1),
                  "command": "tvdeploy " + " ".join(argv), "stdout": done.stdout[-6000:],
                  "stderr": done.stderr[-3000:]})  # fmt: skip
    return done


def _script(name: str, argv: list[str], out: Path, timeout: float, steps: list[dict]) -> None:
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        steps.append({"step": name, "status": f"timed out after {timeout:.0f} s", "seconds": timeout})
        return
    steps.append({"step": name, "status": f"exit {done.returncode}", "seconds": round(time.perf_counter() - start, 1),
                  "stdout": done.stdout[-6000:], "stderr": done.stderr[-3000:]})  # fmt: skip


def _jpeg_files(folder: Path, count: int) -> list[Path]:
    """The bundled photos repeated to ``count`` files (the decoders see every file as new)."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = sorted((Path(__file__).parents[1] / "src/tvdeploy/export/photos").glob("*.jpg"))
    files = []
    for index in range(count):
        target = folder / f"{index:05d}-{photos[index % len(photos)].name}"
        shutil.copyfile(photos[index % len(photos)], target)
        files.append(target)
    return files


def _gpu_description() -> str:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        return done.stdout.strip() or done.stderr.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"no nvidia-smi ({exc})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check")))
    parser.add_argument("--dry-run", action="store_true", help="the CPU, resnet18, small batches")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    provider = "cpu" if args.dry_run else "cuda"
    model = args.model or ("resnet18" if args.dry_run else "resnet50")
    batches = "1,2" if args.dry_run else "1,64,256"
    budget = "0.5" if args.dry_run else "3"
    work = Path(tempfile.mkdtemp(prefix="tvdeploy-gpu-check-"))  # artifacts here; only the report goes to --out
    art = work / f"{model}-onnx"
    steps: list[dict] = []
    _run("export", ["export", "--model", model, "--weights", "none", "--format", "onnx", "--output", str(art),
                    "--force"], out, 600, steps)  # fmt: skip
    _run("validate", ["validate", str(art), "--provider", provider], out, 300, steps)
    _run("predict_auto", ["predict", str(art), str(Path(__file__).parents[1] / "src/tvdeploy/export/photos"),
                          "--provider", "auto", "--json"], out, 300, steps)  # fmt: skip
    _run("bench", ["bench", str(art), "--provider", provider, "--batch-sizes", batches, "--time-budget", budget,
                   "--no-cold-start"], out, 600, steps)  # fmt: skip
    embedded = work / f"{model}-fp16-pre-top5"
    _run("optimize_embedded", ["optimize", str(art), "--precision", "fp16", "--embed-preprocess",
                               "--embed-postprocess", "5", "--output", str(embedded), "--force"], out, 600, steps)  # fmt: skip
    _script("placement", [str(Path(__file__).parent / "gpu_placement.py"), str(embedded), "--out",
                          str(out / "placement.json"), "--provider", provider], out, 120, steps)  # fmt: skip
    # each a process of its own (a configuration that kills its process is a failed step); prefer_nhwc, CUDA graphs
    # and streams are the CUDA provider's, pinned staging needs the CUDA runtime: the dry run times the plain path
    variants = {"speed": []} if args.dry_run else {
        "speed": [], "speed_nhwc": ["--nhwc"], "speed_nhwc_pinned": ["--nhwc", "--pinned"],
        "speed_nhwc_pinned_s2": ["--nhwc", "--pinned", "--streams", "2"], "speed_nhwc_graph": ["--nhwc", "--graph"],
    }  # fmt: skip
    for name, flags in variants.items():
        _script(name, [str(Path(__file__).parent / "gpu_speed.py"), str(embedded), "--out", str(out / f"{name}.json"),
                       "--batches", "1,2" if args.dry_run else "1,64,256", "--provider", provider,
                       "--seconds", "0.5" if args.dry_run else "2", *flags], out, 240, steps)  # fmt: skip
    files = _jpeg_files(work / "jpegs", 16 if args.dry_run else 2048)
    _run("e2e", ["bench", str(embedded), "--provider", provider, "--e2e", "--decoder", "auto", "--images",
                 *map(str, files), "--batch-sizes", "8" if args.dry_run else "256", "--time-budget", budget,
                 "--no-cold-start"], out, 300, steps)  # fmt: skip
    _run("tune", ["tune", str(art), "--output", str(work / "tuned"), "--objective", "throughput", "--batch-sizes",
                  "1,2" if args.dry_run else "1,64", "--budget-s", budget, "--save-json", str(work / "tune.json"),
                  "--force"], out, 900, steps)  # fmt: skip
    manifest = json.loads((art / "tvdeploy.json").read_text()) if (art / "tvdeploy.json").is_file() else {}
    versions = manifest.get("versions", {})
    lines = [
        "# tvdeploy GPU check",
        "",
        f"GPU: {_gpu_description()}; host {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"onnxruntime recorded in the manifest: {versions.get('onnxruntime')} "
        f"({versions.get('onnxruntime_distribution')}); torch {versions.get('torch')}",
        "",
        "| step | status | seconds |",
        "|---|---|---|",
        *[f"| {s['step']} | {s['status']} | {s['seconds']} |" for s in steps],
    ]
    titles = {
        "bench": "bench (the fp32 artifact, numpy in and out)",
        "speed": "speed (host uint8 images in, top-5 on the host; torch eager fp16 channels_last, input on the device)",
        "speed_nhwc": "speed with prefer_nhwc=1",
        "speed_nhwc_pinned": "speed with prefer_nhwc=1, pinned staging",
        "speed_nhwc_pinned_s2": "speed with prefer_nhwc=1, pinned staging, 2 streams",
        "speed_nhwc_graph": "speed with prefer_nhwc=1 and CUDA graphs",
        "placement": "Memcpy nodes ONNX Runtime adds (the fp16 embedded artifact)",
        "e2e": "end to end from JPEG files: Pillow (e2e) and nvImageCodec (e2e-gpu)",
        "tune": "tune --objective throughput",
    }
    for step in steps:
        if step["step"] in titles:
            text = step.get("stdout", "").strip() or step.get("stderr", "").strip()[-1500:]
            lines += ["", f"## {titles[step['step']]}", "", "```", text, "```"]
    shutil.rmtree(work, ignore_errors=True)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "steps.json").write_text(json.dumps(steps, indent=2) + "\n")
    print("\n".join(lines))
    return 0 if all(s["status"] == "exit 0" for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
