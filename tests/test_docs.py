"""The docs tell users what works: how to install a package that is not on the package index, and the commands
they show exist."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_no_doc_installs_tvdeploy_from_the_package_index() -> None:
    """tvdeploy is not on the index: `pip install tvdeploy` (or with extras) would fail for a user."""
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            assert not re.search(r"pip install (--\S+ )*['\"]?tvdeploy(\[|\b)(?!-)", line), f"{doc.name}: {line}"


@pytest.mark.slow  # exports a model or runs subprocesses (seconds)
def test_the_documented_wheel_builds_and_holds_the_runtime(tmp_path: Path) -> None:
    """docs/deployment.md's `pip wheel --no-deps . -w dist` (the build backend as installed: no network)."""
    assert "pip wheel --no-deps . -w dist" in (ROOT / "docs" / "deployment.md").read_text()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".", "-w", str(tmp_path)],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [wheel] = tmp_path.glob("tvdeploy-*-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "tvdeploy/runtime/classifier.py" in names and "tvdeploy/serve/triton_preprocess.py" in names
    assert any(name.startswith("tvdeploy/export/photos/") and name.endswith(".jpg") for name in names)


def test_the_curl_examples_use_the_servers_upload_route() -> None:
    from tvdeploy.serve.datatypes import CLASSIFY_ROUTE  # not server: KServe's protobufs clash with tritonclient's

    text = (ROOT / "docs" / "serving.md").read_text()
    examples = re.findall(r"curl [^\n]*http://127\.0\.0\.1:8000(/\S+?)[?\"]", text)
    assert examples, "docs/serving.md shows curl against the upload route"
    route = re.compile("^" + re.escape(CLASSIFY_ROUTE).replace(r"\{model_name\}", "[^/]+") + "$")
    assert all(route.match(path) for path in examples), examples
