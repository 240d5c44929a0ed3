"""A candidate's trial run in a child process: ``python -m tvdeploy.tune.trial ARTIFACT PROVIDER OPTIONS BATCH...``.

Some configurations kill the process that runs them rather than raise (on an H200, ONNX Runtime's CUDA provider
with ``prefer_nhwc=1`` on tvdeploy's fp16 embedded-preprocessing graph with 64 images of 320x320: "CUDA failure
700: an illegal memory access", ``terminate called``). ``tune`` runs each candidate that is not known to be safe
here first, at every batch size it will time and, for an artifact that takes whole images, at two image sizes;
a crash or an error is then a failed row of its report, not the end of the tune.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Image sizes (height, width) an artifact that takes whole images is tried on, beside the timing's own.
TRIAL_IMAGE_SIZES = ((320, 320), (480, 640))
#: Seconds a trial may take (a TensorRT engine build included).
TRIAL_TIMEOUT_S = 900


def run_trial(
    artifact: Path, provider: str, batch_sizes: Sequence[int], options: Mapping[str, Any] | None = None
) -> None:
    """Load ``artifact`` on ``provider`` (with its ``options``) and run it at each batch size (raises what the
    runtime raises)."""
    import numpy as np

    from tvdeploy.runtime.manifest import read_manifest
    from tvdeploy.runtime.providers import SessionConfig
    from tvdeploy.runtime.runners import runner_for_artifact

    manifest = read_manifest(artifact)
    spec = manifest.input
    config = SessionConfig(provider_options=dict(options or {}))
    with runner_for_artifact(artifact, manifest, provider=provider, config=config) as runner:
        for batch in batch_sizes:
            if spec.takes_images:
                rng = np.random.default_rng(batch)
                for height, width in TRIAL_IMAGE_SIZES:
                    runner.infer({spec.name: rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)})
            else:
                runner.infer({spec.name: spec.example(batch)})


def trial_in_child(
    artifact: Path, provider: str, batch_sizes: Sequence[int], options: Mapping[str, Any] | None = None
) -> str | None:
    """:func:`run_trial` in a child process: None where it ran, else why not (its last error line, or the signal
    or exit status that ended it)."""
    command = [
        sys.executable, "-m", "tvdeploy.tune.trial", str(artifact), provider, json.dumps(dict(options or {})),
        *map(str, batch_sizes),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=TRIAL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"its trial run took over {TRIAL_TIMEOUT_S} s"
    if done.returncode == 0:
        return None
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    last = lines[-1][:300] if lines else ""
    ended = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
    return f"its trial run failed ({ended}){': ' + last if last else ''}"


def main(argv: Sequence[str] | None = None) -> int:
    """The child's entry point (``ARTIFACT PROVIDER OPTIONS_JSON BATCH...``): exit 0 when every batch ran."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        run_trial(Path(args[0]), args[1], [int(value) for value in args[3:]], json.loads(args[2]))
    except Exception as exc:  # the parent reads the last line: the error itself, without its hint
        message = getattr(exc, "message", None) or str(exc)
        sys.stderr.write(f"{type(exc).__name__}: {' '.join(message.split())}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
