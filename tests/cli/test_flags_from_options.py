"""The CLI's flags come from the option dataclasses: every field a flag, every default the dataclass's, units and
"0 means none" applied once; and each command imports only itself."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from tvdeploy.bench.run import BenchConfig
from tvdeploy.cli import build_parser
from tvdeploy.cli.flags import options_from_args
from tvdeploy.flags import flag_fields
from tvdeploy.serve.options import ServeOptions
from tvdeploy.serve.triton import TritonOptions
from tvdeploy.tune.tuner import TuneRequest


def _parse(*argv: str):
    return build_parser(argv[0]).parse_args(list(argv))


@pytest.mark.parametrize(
    ("command", "options", "given"),
    [
        ("serve", ServeOptions, {}),
        ("export-triton", TritonOptions, {}),
        ("bench", BenchConfig, {}),
        ("tune", TuneRequest, {"artifact": "a", "output": "o"}),
    ],
)
def test_defaults_on_the_command_line_are_the_dataclass_defaults(command, options, given) -> None:
    positional = {"serve": ["A"], "export-triton": ["A", "--output", "R"], "bench": [], "tune": ["A", "--output", "O"]}
    args = _parse(command, *positional[command])
    parsed = options_from_args(options, args, **given)
    defaults = options(**given)
    for field, _ in flag_fields(options):
        assert getattr(parsed, field.name) == getattr(defaults, field.name), field.name


def test_serve_flags_apply_units_and_zero_as_no_limit() -> None:
    args = _parse("serve", "A", "--max-body-mb", "1.5", "--max-header-kb", "8", "--max-pixels", "0",
                  "--no-pin-instances", "--provider", "cuda", "--shared-memory", "--grpc-port", "0")  # fmt: skip
    options = options_from_args(ServeOptions, args)
    assert options.max_body_bytes == int(1.5 * 1024 * 1024) and options.max_head_bytes == 8192
    assert options.max_pixels is None and options.max_request_pixels == ServeOptions().max_request_pixels
    assert (options.pin_instances, options.provider, options.shared_memory, options.grpc_port) == (
        False,
        "cuda",
        True,
        0,
    )
    with pytest.raises(SystemExit):
        _parse("serve", "A", "--max-batch-size", "0")  # argparse refuses it, naming the flag
    with pytest.raises(SystemExit):
        _parse("serve", "A", "--provider", "tpu")


def test_every_serve_option_is_a_flag_and_its_help_shows_the_default(capsys) -> None:
    with pytest.raises(SystemExit):
        _parse("serve", "--help")
    text = " ".join(capsys.readouterr().out.split())
    for field, spec in flag_fields(ServeOptions):
        assert spec.flag_name(field.name) in text
    assert "larger bodies get 413 (default 32)" in text and "(default 64)" in text  # MB and KB, not bytes
    assert {f.name for f in dataclasses.fields(ServeOptions)} == {f.name for f, _ in flag_fields(ServeOptions)}


def test_bench_iterations_and_time_budget_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        _parse("bench", "--iterations", "3", "--time-budget", "2")
    args = _parse("bench", "--time-budget", "2", "--batch-sizes", "1,8", "--no-cold-start", "--bare-ort")
    config = options_from_args(BenchConfig, args, iterations=None)
    assert (config.time_budget_s, config.batch_sizes, config.cold_start, config.bare) == (2.0, [1, 8], False, True)


def test_only_the_command_being_run_is_imported(resnet18_artifacts) -> None:
    probe = (
        "import sys; from tvdeploy.cli import main; code = main(['inspect', sys.argv[1]]);"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'PIL', 'torch', 'onnxruntime', 'kserve')"
        " or m.startswith(('tvdeploy.serve', 'tvdeploy.bench', 'tvdeploy.export', 'tvdeploy.tune', 'tvdeploy.cli.serve')));"
        "print('HEAVY', heavy); sys.exit(code)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(resnet18_artifacts["onnx"])], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


@pytest.mark.parametrize("argv", [("serve", "A", "--max-body-mb", "nan"), ("serve", "A", "--request-timeout", "inf"),
                                  ("tune", "A", "--output", "O", "--budget-s", "nan"),
                                  ("predict", "A", "x.jpg", "--num-cpus", "nan")])  # fmt: skip
def test_a_number_that_is_not_finite_is_a_usage_error(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        _parse(*argv)  # not a ValueError from int(nan * MB) later, nor a timeout of nan seconds
    assert exited.value.code == 2 and "must be a finite number" in capsys.readouterr().err
