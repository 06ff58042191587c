"""The dependency rule (DESIGN §2) as import-linter contracts in pyproject.toml: the project
keeps them, and an import that breaks the rule makes `lint-imports` fail naming it.

The breaking imports are added to a copy of the source in a temporary folder, never to the
checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("ztm", "evidence", "provision", "envelope", "controls", "tests")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_project_keeps_its_import_contracts():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("src")
    shutil.copy(ROOT / "pyproject.toml", root)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "vectors"))
    return root


@pytest.mark.parametrize(("module", "line", "named"), [
    ("ztm/errors.py", "import provision.lab", "ztm.errors -> provision.lab"),
    ("ztm/anchoring/__init__.py", "from evidence import sign", "ztm.anchoring -> evidence.sign"),
    ("provision/anchor_cli.py", "from evidence.sign import load_signing_key", "provision.anchor_cli -> evidence.sign"),
    ("evidence/plugin.py", "import envelope.record", "evidence.plugin -> envelope.record"),
    ("controls/test_aud_3_anchor.py", "from provision import anchor_cli", "controls.test_aud_3_anchor -> provision"),
    ("ztm/dialect.py", "from ztm import target", "No cycles are allowed in ztm"),
])
def test_a_forbidden_import_breaks_a_contract(source_copy, module, line, named):
    path = source_copy / module
    original = path.read_text()
    path.write_text(original + f"\n{line}  # added by the test: forbidden\n")
    try:
        done = lint_imports(source_copy)
    finally:
        path.write_text(original)
    assert done.returncode == 1, done.stdout + done.stderr
    assert named in done.stdout, done.stdout
