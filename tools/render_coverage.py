"""Render docs/coverage.md from the rows the zoo sweep wrote (docs/coverage.jsonl).

Usage: python tools/render_coverage.py [RESULTS.jsonl] [OUTPUT.md]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _load(path: Path) -> dict[tuple[str, str], dict]:
    """Rows by (model, format). A later run of a model (a new block of its lines) replaces the earlier rows of
    the formats it ran and the model's whole-model failure row; a whole-model failure replaces the rows of the
    formats its sweep tried (``formats``; all of them in rows written before that was recorded). So a sweep of
    only the new formats adds their rows and keeps the others."""
    rows: dict[tuple[str, str], dict] = {}
    block: list[dict] = []

    def flush() -> None:
        if not block:
            return
        model = block[0]["model"]
        formats = {row["format"] for row in block}
        for row in block:  # a whole-model failure covers the formats its sweep tried (all of them if not said)
            if row["format"] == "all":
                formats |= set(row.get("formats", ())) or {"*"}
        for key in list(rows):
            if key[0] == model and ("*" in formats or key[1] in formats or key[1] == "all"):
                del rows[key]
        for row in block:
            rows[(model, row["format"])] = row
        block.clear()

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if block and row["model"] != block[0]["model"]:
                flush()
            block.append(row)
    flush()
    return rows


def render(
    rows: dict[tuple[str, str], dict], expected: list[str] | None = None, formats: list[str] | None = None
) -> str:
    """The Markdown page; ``expected`` (all catalog models) adds a 'not run' line for each model without rows.

    ``formats``: the columns, the format registry's formats by default (a model without a row for one
    gets 'not run').
    """
    from tvdeploy.runtime.formats import format_names

    models = sorted({model for model, _ in rows})
    missing = sorted(set(expected or []) - set(models))
    formats = list(formats or format_names())
    passed = sum(1 for r in rows.values() if r.get("passed"))
    lines = [
        "# Model coverage",
        "",
        "Every torchvision classifier exported to every format of the registry (" + ", ".join(formats) + ")",
        "with `--weights none` (seeded random init;",
        "weight matrices torchvision initialises to zero, the ViT heads, are redrawn so the logits carry signal),",
        "then checked for parity against eager PyTorch (fp32 criteria: top-1 agreement 100% on the six photos,",
        "max |diff| <= 1e-3 * (1 + max |logit|) on photos and noise). Produced by",
        "`pytest -m zoo tests/export/test_zoo.py` and `python tools/render_coverage.py` on 2 CPU cores.",
        "Each model's rows are from its latest sweep (`docs/coverage.jsonl` keeps every run, in order); export",
        "times depend on the host of that run.",
        "",
        f"**{passed} of {len(rows)} model x format results pass** ({len(models)} of {len(models) + len(missing)} models run).",
        "",
        "Per format: "
        + "; ".join(
            f"{fmt} {sum(1 for (_, f) in rows if f == fmt)} of {len(models) + len(missing)} models run, "
            f"{sum(1 for (_, f), r in rows.items() if f == fmt and r.get('passed'))} pass"
            for fmt in formats
        )
        + ".",
        "",
        "| model | format | exporter | photos max abs diff | limit | top-1 | top-5 | min cosine | noise max abs diff | pass | export + parity s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in models:
        if (model, "all") in rows:
            row = rows[(model, "all")]
            lines.append(f"| {model} | all | - | - | - | - | - | - | - | FAIL: {row.get('error', '')[:120]} | - |")
            continue
        for fmt in formats:
            row = rows.get((model, fmt))
            if row is None:
                lines.append(f"| {model} | {fmt} | not run | | | | | | | | |")
                continue
            if "error" in row:
                lines.append(f"| {model} | {fmt} | - | - | - | - | - | - | - | FAIL: {row['error'][:120]} | - |")
                continue
            lines.append(
                f"| {model} | {fmt} | `{row['exporter']}` | {row['photos_max_abs_diff']:.1e} | {row['photos_atol_limit']:.1e} "
                f"| {row['photos_top1']:.0%} | {row['photos_top5']:.0%} | {row['photos_min_cosine']:.6f} "
                f"| {row['random_max_abs_diff']:.1e} | {'yes' if row['passed'] else 'NO'} | {row['export_seconds']:.0f} |"
            )
    for model in missing:
        lines.append(f"| {model} | - | not run | | | | | | | | |")
    notes = [r for r in rows.values() if len(r.get("attempts", [])) > 1 or not r.get("passed")]
    if notes:
        lines += ["", "## Fallbacks and failures", ""]
        for row in notes:
            attempts = "; ".join(
                f"{a['strategy']}: "
                + (a.get("error") or ("parity passed" if a.get("parity_passed") else "parity failed"))
                for a in row.get("attempts", [])
            )
            lines.append(f"- **{row['model']} / {row['format']}**: {attempts or row.get('error', '')}")
    return "\n".join(lines) + "\n"


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "coverage.jsonl"
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "docs" / "coverage.md"
    from tvdeploy.models.catalog import list_catalog

    target.write_text(render(_load(source), [m.name for m in list_catalog()]), encoding="utf-8")
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
