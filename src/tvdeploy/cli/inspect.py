"""``tvdeploy inspect ARTIFACT``: the manifest, summarised, with the files' hashes checked."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tvdeploy.cli.common import EXIT_FAILED, EXIT_OK, add_json_flag, print_json


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``inspect``."""
    p.add_argument("artifact", type=Path, metavar="ARTIFACT")
    add_json_flag(p)


def run(args: argparse.Namespace) -> int:
    """Print the manifest (``--json``: all of it) and the file checks; exit 1 when a file is missing or modified."""
    from tvdeploy.runtime.manifest import check_artifact_files, read_manifest

    manifest = read_manifest(args.artifact)
    checks = check_artifact_files(args.artifact, manifest)
    if args.json:
        print_json({**manifest.to_dict(), "file_checks": checks})
    else:
        for key, value in _summary(manifest):
            print(f"{key:<13} {value}")
        for entry in manifest.files:
            print(
                f"{'file':<13} {entry.path} {entry.bytes / 1e6:.1f} MB sha256 {entry.sha256[:16]}... {checks[entry.path]}"
            )
        print(f"{'versions':<13} " + ", ".join(f"{k} {v}" for k, v in manifest.versions.items()))
    return EXIT_OK if all(v == "ok" for v in checks.values()) else EXIT_FAILED


def _summary(manifest: Any) -> list[tuple[str, Any]]:
    spec, output = manifest.input, manifest.output
    return [
        ("name", manifest.name),
        ("architecture", manifest.architecture),
        ("weights", manifest.weights),
        ("pretrained", manifest.pretrained),
        ("format", manifest.format),
        ("precision", manifest.precision),
        ("exporter", manifest.exporter),
        ("opset", manifest.opset),
        (
            "input",
            f"{spec.name} {spec.shape} {spec.dtype} {spec.layout}"
            + (f" (batch at most {spec.max_batch})" if spec.max_batch else ""),
        ),
        ("output", f"{output.name} {output.shape} ({output.meaning})"),
        ("preprocess", manifest.preprocess.describe()),
        ("classes", f"{manifest.num_classes} ({', '.join(manifest.labels[:3])}, ...)"),
        ("parity", "not run" if manifest.parity is None else "passed" if manifest.parity.passed else "FAILED"),
        *_export_rows(manifest),
        *((("deployment", _describe_deployment(manifest.deployment)),) if manifest.deployment else ()),
        ("created", manifest.created),
        ("schema", manifest.schema_version),
    ]


def _export_rows(manifest: Any) -> list[tuple[str, Any]]:
    info = manifest.export_info
    rows = list(info.details.items())
    if info.derived_from is not None:
        derived = info.derived_from
        rows.append(("derived_from", f"{derived.artifact} ({derived.precision}, sha256 {derived.sha256[:16]}...)"))
    return rows


def _describe_deployment(record: Any) -> str:
    figures = ", ".join(
        f"b{batch} {values['p50_ms']:.1f} ms, {values['throughput_ips']:.0f} img/s"
        for batch, values in record.figures.items()
    )
    threads = f"{record.threads} thread{'' if record.threads == 1 else 's'}" + (
        f" x {record.streams} streams" if record.streams > 1 else ""
    )
    return (
        f"{record.format} {record.precision} on {record.provider}, {threads}, batch "
        f"{record.batch_size} (tune, {record.objective}: {figures}; {len(record.candidates)} candidates) on "
        f"{record.host_cpu}"
    )
