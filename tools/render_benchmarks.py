"""Render docs/benchmarks.md from `tvdeploy bench --json` reports (docs/bench/*.json).

Usage: python tools/render_benchmarks.py [REPORT.json ...]
"""

from __future__ import annotations

import json
import statistics
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
    lines = [
        "| backend | mode | batch | p50 ms | mean ms | p90 ms | p99 ms | min ms | max ms | img/s | cold start ms | peak RSS MB | file MB | speedup vs eager |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['name']} | {r['mode']} | {r['batch_size']} | {lat['p50']:.1f} | {lat['mean']:.1f} | {lat['p90']:.1f} "
            f"| {lat['p99']:.1f} | {lat['min']:.1f} | {lat['max']:.1f} | {r['throughput_ips']:.1f} "
            f"| {r['cold_start_ms'] or '-'} | {r['peak_rss_mb'] or '-'} | {r['file_mb'] or '-'} "
            f"| {r['speedup_vs_eager'] or '-'} |"
        )
    return lines


def _runs_section(runs: dict[str, dict]) -> list[str]:
    """resnet50 batch-1 ratios of every kept run (docs/bench/runs/*.json) and their medians."""
    columns = [
        ("ONNX Runtime / eager", ("onnx", "model"), ("eager", "model")),
        ("end-to-end / model-only", ("onnx", "e2e"), ("onnx", "model")),
        ("predict / torchvision tutorial pipeline", ("onnx", "e2e"), ("eager", "e2e")),
        ("bench / bare session.run", ("onnx", "model"), ("onnx", "bare")),
    ]
    out = [
        "",
        "## resnet50, batch 1, across runs",
        "",
        "Single runs swing by several percent on this shared machine; these are the ratios (p50) of every",
        "run kept in `docs/bench/runs/` plus the resnet50 run above, and their medians.",
        "",
        "| run | " + " | ".join(name for name, _, _ in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    values: list[list[float]] = [[] for _ in columns]
    for name, report in runs.items():
        cells = []
        for index, (_, top, bottom) in enumerate(columns):
            a, b = _row(report["results"], *top, 1), _row(report["results"], *bottom, 1)
            if a is None or b is None:
                cells.append("-")
                continue
            values[index].append(a["latency_ms"]["p50"] / b["latency_ms"]["p50"])
            cells.append(f"{values[index][-1]:.3f}")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    medians = [f"**{statistics.median(v):.3f}** ({len(v)} runs)" if v else "-" for v in values]
    out.append("| median | " + " | ".join(medians) + " |")
    return out


def _edge_section(edge: dict[str, dict]) -> list[str]:
    """Deployment runtimes side by side (docs/bench/edge/*.json): each backend's p50 and its ratio to eager and to
    ONNX Runtime, per model and batch, from one interleaved run per model."""
    out = [
        "",
        "## Deployment runtimes: ONNX Runtime, OpenVINO, ExecuTorch",
        "",
        "One `tvdeploy bench` run per model with every backend interleaved on the CPU provider; p50 per batch, and",
        "the ratio to eager and to ONNX Runtime in the same run (below 1 is faster). OpenVINO runs with its",
        "fp32 inference precision pinned and the latency hint; ExecuTorch through its Python runtime with the",
        "XNNPACK delegate. Cold start (load + first inference in a fresh process) and peak RSS are per backend.",
        "",
        "| model | batch | backend | p50 ms | / eager | / ONNX Runtime | cold start ms | peak RSS MB | file MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, report in edge.items():
        results = report["results"]
        backends = list(dict.fromkeys(r["backend"] for r in results))
        for batch in sorted({r["batch_size"] for r in results}):
            eager, onnx = _row(results, "eager", "model", batch), _row(results, "onnx", "model", batch)
            for backend in backends:
                row = _row(results, backend, "model", batch)
                if row is None:
                    continue
                out.append(
                    f"| {model} | {batch} | {backend} | {row['latency_ms']['p50']:.1f} | {_ratio(row, eager)} "
                    f"| {_ratio(row, onnx)} | {row['cold_start_ms'] or '-'} | {row['peak_rss_mb'] or '-'} "
                    f"| {row['file_mb'] or '-'} |"
                )
    for model, report in edge.items():
        out += ["", f"### {model}", "", f"`{report.get('command', 'tvdeploy bench')}`", "", *_table(report["results"])]
    return out


def render(reports: dict[str, dict], runs: dict[str, dict] | None = None, edge: dict[str, dict] | None = None) -> str:
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
        "| model | batch | ONNX Runtime / eager | TorchScript / eager | .pt2 / eager | end-to-end / model-only (ONNX) | tvdeploy predict / torchvision tutorial pipeline |",
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
        out += ["", f"## {model}", "", f"`{report.get('command', 'tvdeploy bench')}`", "", *_table(report["results"])]
        plot = BENCH / f"{model}.png"
        if plot.exists():
            out += ["", f"![{model}: latency and throughput against batch size](bench/{plot.name})"]
    if edge:
        out += _edge_section(edge)
    if runs:
        out += _runs_section(runs)
    return "\n".join(out) + "\n"


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or sorted(BENCH.glob("*.json"))
    reports = {p.stem: json.loads(p.read_text()) for p in paths}
    from tvdeploy.bench.report import plot_results

    for model, report in reports.items():
        plot_results(report, BENCH / f"{model}.png")
    target = ROOT / "docs" / "benchmarks.md"
    notes = ROOT / "docs" / "bench" / "notes.md"
    runs = {p.stem: json.loads(p.read_text()) for p in sorted((BENCH / "runs").glob("*.json"))}
    if "resnet50" in reports:
        runs["resnet50 (above)"] = reports["resnet50"]
    edge = {p.stem: json.loads(p.read_text()) for p in sorted((BENCH / "edge").glob("*.json"))}
    text = render(reports, runs, edge) + (("\n" + notes.read_text()) if notes.exists() else "")
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
