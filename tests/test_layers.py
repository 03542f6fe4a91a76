"""The import contract (pyproject.toml, docs/adr/0007) holds, and breaking it fails
the check: run on a copy of the tree with one forbidden import added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for part in ("services", "generators"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_tree_keeps_the_contract(tree: Path) -> None:
    checked = lint_imports(tree)
    assert checked.returncode == 0, checked.stdout


@pytest.mark.parametrize(
    ("module", "forbidden", "contract"),
    [
        ("common/web/errors.py", "services.gateway.app", "never imports a service"),
        ("common/runtime/logs.py", "services.common.research.studies", "know no research"),
        ("ingest/kinds.py", "services.media.video", "No service imports another"),
    ],
)
def test_a_forbidden_import_breaks_the_build(
    tree: Path, module: str, forbidden: str, contract: str
) -> None:
    path = tree / "services" / module
    path.write_text(path.read_text() + f"\nimport {forbidden}  # noqa\n")
    checked = lint_imports(tree)
    assert checked.returncode != 0
    assert contract in checked.stdout
    assert "BROKEN" in checked.stdout
