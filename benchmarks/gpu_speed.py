"""Model-only speed on a GPU, in one process: tvdeploy's runner from host uint8 images to top-5 on the host, against
torch eager fp16 channels_last (input already on the device), interleaved in rounds. Run by ``gpu_check.py``.

    python benchmarks/gpu_speed.py ARTIFACT --out speed.json [--batches 1,64,256] [--provider cuda]

ARTIFACT takes uint8 images (``optimize --embed-preprocess --embed-postprocess 5``). The runner is tvdeploy's own
(``runner_for_artifact``), with the provider options given (``--nhwc``: the CUDA provider's ``prefer_nhwc=1``;
``--graph``: ``enable_cuda_graph=1``). ``--pinned``: each call first copies the images into the runner's pinned
staging buffer (as the classifier stacks its batch there), so the host-to-device copy runs from pinned memory on the
calling thread's own stream; the copy into staging is part of the time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _time(call, seconds: float) -> list[float]:
    call()
    call()
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 5:
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def _torch_eager(batch: int, seconds: float) -> float | None:
    try:
        import torch
        from torchvision import models
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    model = models.resnet50().eval().half().cuda().to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 224, 224, device="cuda").half().to(memory_format=torch.channels_last)

    def call() -> None:
        with torch.inference_mode():
            model(x)
        torch.cuda.synchronize()

    return statistics.median(_time(call, seconds))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--batches", default="1,64,256")
    parser.add_argument("--provider", default="cuda")
    parser.add_argument("--nhwc", action="store_true")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--streams", type=int, default=1, help="calls in flight at once (the runner's streams)")
    parser.add_argument("--pinned", action="store_true", help="host images through the runner's pinned staging")
    parser.add_argument("--graph", action="store_true", help="the CUDA provider's enable_cuda_graph=1")
    args = parser.parse_args()

    from tvdeploy.runtime.manifest import read_manifest
    from tvdeploy.runtime.providers import SessionConfig
    from tvdeploy.runtime.runners import runner_for_artifact

    manifest = read_manifest(args.artifact)
    options = {**({"prefer_nhwc": 1} if args.nhwc else {}), **({"enable_cuda_graph": 1} if args.graph else {})}
    config = SessionConfig(provider_options=options, streams=args.streams)
    rows = []
    name = manifest.input.name
    with runner_for_artifact(args.artifact, manifest, provider=args.provider, config=config) as runner:
        for batch in [int(b) for b in args.batches.split(",")]:
            images = np.random.default_rng(batch).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)

            def call(images: np.ndarray = images) -> None:
                staging = runner.staging(name, images.shape, np.uint8) if args.pinned else None
                if staging is not None:  # on this thread's own buffer, as the classifier stacks a batch
                    np.copyto(staging, images)
                runner.infer({name: images if staging is None else staging})

            if args.streams > 1:  # a window of calls kept streams deep in flight: the time per call
                window = 4 * args.streams

                def many(call=call, window=window) -> None:
                    list(runner.stream_pool.map(lambda _: call(), range(window)))

                p50 = statistics.median(_time(many, args.seconds)) / window
            else:
                p50 = statistics.median(_time(call, args.seconds))
            torch_p50 = _torch_eager(batch, args.seconds) if batch > 1 else None
            row = {
                "batch": batch,
                "streams": args.streams,
                "pinned": args.pinned,
                "cuda_graph": args.graph,
                "tvdeploy_p50_ms": round(p50 * 1000, 3),
                "tvdeploy_img_s": round(batch / p50, 1),
                "torch_fp16_cl_p50_ms": None if torch_p50 is None else round(torch_p50 * 1000, 3),
                "torch_fp16_cl_img_s": None if torch_p50 is None else round(batch / torch_p50, 1),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.write_text(json.dumps({"artifact": str(args.artifact), "options": options, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
