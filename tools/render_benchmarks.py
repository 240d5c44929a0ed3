"""Render docs/benchmarks.md from `tvdeploy bench --json` reports (docs/bench/*.json).

Usage: python tools/render_benchmarks.py [REPORT.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "docs" / "bench"


def _row(results: list[dict], name: str, mode: str, batch: int) -> dict | None:
    return next((r for r in results if r["name"] == name and r["mode"] == mode and r["batch_size"] == batch), None)


def _ratio(a: dict | None, b: dict | None, key: str = "p50") -> str:
    if a is None or b is None:
        return "-"
    return f"{a['latency_ms'][key] / b['latency_ms'][key]:.2f}"


def _table(results: list[dict]) -> list[str]:
    lines = ["| backend | mode | batch | p50 ms | mean ms | p90 ms | p99 ms | min ms | max ms | img/s | cold start ms | peak RSS MB | file MB | speedup vs eager |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['name']} | {r['mode']} | {r['batch_size']} | {lat['p50']:.1f} | {lat['mean']:.1f} | {lat['p90']:.1f} "
            f"| {lat['p99']:.1f} | {lat['min']:.1f} | {lat['max']:.1f} | {r['throughput_ips']:.1f} "
            f"| {r['cold_start_ms'] or '-'} | {r['peak_rss_mb'] or '-'} | {r['file_mb'] or '-'} "
            f"| {r['speedup_vs_eager'] or '-'} |"
        )
    return lines


def render(reports: dict[str, dict]) -> str:
    first = next(iter(reports.values()))
    machine = first["machine"]
    out = [
        "# Benchmarks",
        "",
        f"Machine: {machine['cpu_model']}, {machine['usable_cores']} usable cores ({machine['logical_cores']} logical), "
        f"threads: library defaults, {machine['os']}, Python {machine['python']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in first["versions"].items()) + ".",
        "",
        "Every number below comes from `tvdeploy bench` runs on that machine, with the backends interleaved",
        "(A B A B ...) in one run, so the ratios are what to read: the machine is shared and noisy, and absolute",
        "milliseconds move from hour to hour. Models use `--weights none` (seeded random init), which times",
        "exactly like pretrained weights. Latency is per batch.",
        "",
        "## Ratios (p50, same run)",
        "",
        "| model | batch | ONNX Runtime / eager | TorchScript / eager | .pt2 / eager | end-to-end / model-only (ONNX) | tvdeploy predict / seeds' eager pipeline |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, report in reports.items():
        results = report["results"]
        for batch in sorted({r["batch_size"] for r in results}):
            eager = _row(results, "eager", "model", batch)
            out.append(
                f"| {model} | {batch} | {_ratio(_row(results, 'onnx', 'model', batch), eager)} "
                f"| {_ratio(_row(results, 'torchscript', 'model', batch), eager)} "
                f"| {_ratio(_row(results, 'pt2', 'model', batch), eager)} "
                f"| {_ratio(_row(results, 'onnx', 'e2e', batch), _row(results, 'onnx', 'model', batch))} "
                f"| {_ratio(_row(results, 'onnx', 'e2e', batch), _row(results, 'eager', 'e2e', batch))} |"
            )
    for model, report in reports.items():
        out += ["", f"## {model}", "", f"`{report.get('command', 'tvdeploy bench')}`", ""] + _table(report["results"])
        plot = BENCH / f"{model}.png"
        if plot.exists():
            out += ["", f"![{model}: latency and throughput against batch size](bench/{plot.name})"]
    return "\n".join(out) + "\n"


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or sorted(BENCH.glob("*.json"))
    reports = {p.stem: json.loads(p.read_text()) for p in paths}
    from tvdeploy.bench.report import plot_results

    for model, report in reports.items():
        plot_results(report, BENCH / f"{model}.png")
    target = ROOT / "docs" / "benchmarks.md"
    notes = ROOT / "docs" / "bench" / "notes.md"
    text = render(reports) + (("\n" + notes.read_text()) if notes.exists() else "")
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
