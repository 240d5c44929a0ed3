"""Check tvdeploy on a machine with an NVIDIA GPU, in one bounded run, and write a Markdown report.

    python benchmarks/gpu_check.py --out DIR            # on the GPU machine (onnxruntime-gpu installed)
    python benchmarks/gpu_check.py --out DIR --dry-run  # the same steps on the CPU, small, to check the script

Steps, each a ``tvdeploy`` command with a timeout (a step that fails is reported, the next ones still run):
export resnet50 (random weights) to ONNX; validate it on the GPU provider; ``predict --provider auto``; ``bench``
on the GPU at batch 1, 64 and 256 (model-only figures, with the share of the GPU's datasheet peak); ``tune
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
    for nhwc in (False,) if args.dry_run else (False, True):  # prefer_nhwc is an option of the CUDA provider
        name = "speed_nhwc" if nhwc else "speed"
        _script(name, [str(Path(__file__).parent / "gpu_speed.py"), str(embedded), "--out", str(out / f"{name}.json"),
                       "--batches", "1,2" if args.dry_run else "1,64,256", "--provider", provider,
                       "--seconds", "0.5" if args.dry_run else "3", *(["--nhwc"] if nhwc else [])], out, 300, steps)  # fmt: skip
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
