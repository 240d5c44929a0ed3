"""Benchmark output: a terminal table, Markdown, JSON and a plot."""

from __future__ import annotations

import json
from pathlib import Path

from tvdeploy.bench.run import BenchReport, BenchRow

_HEADER = (
    "name",
    "backend",
    "mode",
    "batch",
    "mean ms",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "min ms",
    "img/s",
    "import ms",
    "cold ms",
    "RSS MB",
    "file MB",
    "GMAC/s",
    "of peak",
    "speedup",
)


def _cells(row: BenchRow) -> list[str]:
    lat = row.latency

    def opt(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    return [
        row.name,
        row.backend,
        row.mode if row.in_flight == 1 else f"{row.mode} x{row.in_flight}",
        str(row.batch_size),
        f"{lat.mean:.2f}",
        f"{lat.p50:.2f}",
        f"{lat.p90:.2f}",
        f"{lat.p99:.2f}",
        f"{lat.min:.2f}",
        f"{row.throughput_ips:.1f}",
        opt(row.import_ms, ".0f"),
        opt(row.cold_start_ms, ".0f"),
        opt(row.peak_rss_mb, ".0f"),
        opt(row.file_mb, ".1f"),
        opt(None if row.macs_per_s is None else row.macs_per_s / 1e9, ".0f"),
        opt(None if row.peak_share is None else row.peak_share * 100, ".0f") + ("%" if row.peak_share else ""),
        opt(row.speedup, ".2f") + (f"x vs {row.baseline}" if row.speedup is not None else ""),
    ]


def format_table(report: BenchReport) -> str:
    """A fixed-width table for the terminal."""
    table = [list(_HEADER)] + [_cells(r) for r in report.rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADER))]
    lines = [
        "  ".join(
            cell.rjust(w) if i >= 3 else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=False))
        )
        for line in table
    ]
    lines.insert(1, "-" * len(lines[0]))
    machine = report.machine
    lines.append(
        f"\n{machine['cpu_model']}, {machine['usable_cores']} usable cores, threads {machine['threads'] or 'default'}"
        f", provider {report.provider or report.config.provider}"
    )
    notes = sorted({row.peak_note for row in report.rows if row.peak_note and row.peak_share is None})
    lines += [f"of peak -: {note}" for note in notes]
    return "\n".join(lines)


def format_markdown(report: BenchReport) -> str:
    """A Markdown table with the machine description."""
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in report.rows]
    machine = report.machine
    lines += [
        "",
        f"Machine: {machine['cpu_model']}, {machine['logical_cores']} logical / {machine['usable_cores']} usable "
        f"cores, threads {machine['threads'] or 'default'}, {machine['os']}, Python {machine['python']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()) + ".",
    ]
    return "\n".join(lines) + "\n"


def write_json(report: BenchReport, path: Path) -> None:
    """The JSON report."""
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")


def write_plot(report: BenchReport, path: Path) -> None:
    """Latency and throughput against batch size, one line per target and mode (matplotlib)."""
    plot_results(report.to_dict(), path)


def plot_results(data: dict, path: Path) -> None:
    """The plot of a JSON report (``BenchReport.to_dict()`` or a ``--json`` file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    results = data["results"]
    figure, (latency_ax, throughput_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    series: dict[tuple[str, str], list[dict]] = {}
    for row in results:
        series.setdefault((row["name"], row["mode"]), []).append(row)
    for (name, mode), rows in series.items():
        rows.sort(key=lambda r: r["batch_size"])
        label = name if mode == "model" else f"{name} ({mode})"
        sizes = [r["batch_size"] for r in rows]
        latency_ax.plot(sizes, [r["latency_ms"]["p50"] for r in rows], marker="o", label=label)
        throughput_ax.plot(sizes, [r["throughput_ips"] for r in rows], marker="o", label=label)
    latency_ax.set(xlabel="batch size", ylabel="p50 latency per batch (ms)", title="Latency", xscale="log")
    throughput_ax.set(xlabel="batch size", ylabel="images / s", title="Throughput", xscale="log")
    for ax in (latency_ax, throughput_ax):
        ax.grid(True, alpha=0.3)
        ax.set_xticks(sorted({r["batch_size"] for r in results}))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    throughput_ax.legend(fontsize=8)
    machine = data["machine"]
    figure.suptitle(f"{machine['cpu_model']} ({machine['usable_cores']} cores)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
