"""``tvdeploy tune``'s report: a table per candidate and batch size, Markdown, JSON, and a speed-vs-fidelity plot."""

from __future__ import annotations

import json
from pathlib import Path

from tvdeploy.tune.tuner import CandidateResult, TuneReport

_HEADER = ("candidate", "parity", "photos cos", "top-1", "batch", "p50 ms", "img/s", "GMAC/s", "of peak", "")


def _rows(report: TuneReport) -> list[list[str]]:
    rows = []
    for result in report.results:
        parity = "pass" if result.parity_passed else "FAIL"
        cosine = "-" if result.photo_cosine is None else f"{result.photo_cosine:.5f}"
        top1 = "-" if result.photo_top1 is None else f"{result.photo_top1:.0%}"
        marker = "<- chosen" if result is report.winner else ""
        if not result.figures:
            rows.append([result.candidate.name, parity, cosine, top1, "-", "-", "-", "-", "-", result.refused or ""])
        for batch, figures in sorted(result.figures.items()):
            rows.append([
                result.candidate.name, parity, cosine, top1, str(batch), f"{figures['p50_ms']:.2f}",
                f"{figures['throughput_ips']:.1f}", _gmacs(figures), _share(figures),
                marker if batch == report.request.deciding_batch else "",
            ])  # fmt: skip
    return rows


def _gmacs(figures: dict[str, float]) -> str:
    return f"{figures['macs_per_s'] / 1e9:.0f}" if "macs_per_s" in figures else "-"


def _share(figures: dict[str, float]) -> str:
    return f"{figures['peak_share']:.0%}" if "peak_share" in figures else "-"


def format_table(report: TuneReport) -> str:
    """A fixed-width table for the terminal, the reason for the choice, and what was not tried."""
    table = [list(_HEADER), *_rows(report)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADER))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip() for line in table]
    lines.insert(1, "-" * len(lines[0]))
    lines += ["", report.why()]
    lines += [f"not tried: {s.describe()}" for s in report.skipped]
    machine = report.machine
    lines.append(f"{machine['cpu_model']}, {machine['usable_cores']} usable cores, {machine.get('cpu_signature', '')}")
    return "\n".join(lines)


def format_markdown(report: TuneReport) -> str:
    """The same table in Markdown."""
    rows = ["| " + " | ".join(_HEADER[:-1]) + " | |", "|" + "---|" * len(_HEADER)]
    rows += ["| " + " | ".join(row) + " |" for row in _rows(report)]
    machine = report.machine
    return (
        f"`tvdeploy tune {report.request.artifact}` ({report.request.objective}), {machine['cpu_model']}, "
        f"{machine['usable_cores']} cores, `{machine.get('cpu_signature', '')}`:\n\n"
        + "\n".join(rows)
        + f"\n\n{report.why()}\n"
    )


def write_json(report: TuneReport, path: Path) -> None:
    """The JSON report."""
    path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")


def write_plot(report: TuneReport, path: Path) -> None:
    """Speed against fidelity: one point per timed candidate at the deciding batch size (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = report.request.deciding_batch
    key = "p50_ms" if report.request.objective == "latency" else "throughput_ips"
    timed: list[CandidateResult] = [r for r in report.results if batch in r.figures and r.photo_cosine is not None]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in timed:
        x, y = 1 - (result.photo_cosine or 0), result.figures[batch][key]
        axes.scatter([x], [y], s=60 if result is report.winner else 30, zorder=3)
        axes.annotate(result.candidate.name + (" (chosen)" if result is report.winner else ""), (x, y), fontsize=8,
                      xytext=(4, 4), textcoords="offset points")  # fmt: skip
    axes.set_xscale("symlog", linthresh=1e-6)
    axes.set(
        xlabel="1 - smallest cosine to eager fp32 on the photos (lower: closer)",
        ylabel=f"p50 ms at batch {batch}" if key == "p50_ms" else f"img/s at batch {batch}",
        title=f"tune: speed vs fidelity ({report.request.objective})",
    )
    axes.grid(True, alpha=0.3)
    figure.suptitle(f"{report.machine['cpu_model']} ({report.machine['usable_cores']} cores)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
