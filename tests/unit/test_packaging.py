"""The wheel carries every data file the code reads, and the installed code finds them.

Built offline from a copy of the source (no index, no build isolation: the dev extra brings
setuptools with bdist_wheel), then installed into a folder of its own and used from there,
away from the source tree, so a file that only exists in the checkout cannot hide a gap.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_IGNORE = shutil.ignore_patterns(".git", ".venv", ".tox", "lab", "lab-*", "reports", "build", "dist",
                                       "*.egg-info", "__pycache__", ".ruff_cache", "bundle*.tar.gz")
# What the installed code reads at run time, by the names it uses.
USES = """
import sys
from pathlib import Path
import ztm, controls, provision, evidence
assert ztm.__file__.startswith(sys.argv[1]), f"not the installed copy: {ztm.__file__}"
from ztm.schemas import SCHEMA_DIR, load_schema
assert str(SCHEMA_DIR).startswith(sys.argv[1]), f"schemas read from {SCHEMA_DIR}, not the installed copy"
for name in sys.argv[2:]:
    load_schema(name)
from evidence.catalog import CATALOG_PATH
assert CATALOG_PATH.is_file(), CATALOG_PATH
from ztm.policy import builtin_profiles, load_policy
assert {"zero-trust", "nist-800-52r2", "cnsa"} <= set(builtin_profiles()), builtin_profiles()
for profile in builtin_profiles():
    load_policy({"profile": profile})
from provision.schema import SQL_DIR
assert sorted(SQL_DIR.glob("*.sql")), SQL_DIR
templates = Path(provision.__file__).parent / "templates"
assert (templates / "ztm-anchor.service").is_file(), templates
assert (Path(evidence.__file__).parent / "offline-verify.sh").is_file()
print("ok")
"""


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("packaging")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=SOURCE_IGNORE)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(work / "dist"), str(source)], env=dict(os.environ, PIP_NO_CACHE_DIR="1"))
    (built,) = (work / "dist").glob("zero_trust_mysql-*.whl")
    return built


@pytest.fixture(scope="module")
def sdist(wheel) -> Path:
    source = wheel.parent.parent / "src"
    out = wheel.parent.parent / "sdist"
    _run([sys.executable, "-c", "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])",
          str(out)], cwd=source)
    (built,) = out.glob("zero_trust_mysql-*.tar.gz")
    return built


def _data_files(folder: str, pattern: str = "*") -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob(pattern) if p.is_file())


def test_wheel_contains_every_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = ["controls/catalog.toml", *_data_files("provision/sql"), *_data_files("provision/templates"),
                *_data_files("ztm/profiles"), "evidence/offline-verify.sh"]
    expected += [f"ztm/{name}" for name in _data_files("schemas")]  # schemas/ ships inside ztm/
    missing = [name for name in expected if name not in names]
    assert not missing, f"not in {wheel.name}: {missing}"


def test_installed_wheel_finds_its_data_away_from_the_source(wheel, tmp_path):
    target = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
          str(wheel)])
    schemas = [str(p.relative_to(ROOT / "schemas")) for p in (ROOT / "schemas").rglob("*.json")]
    done = _run([sys.executable, "-c", USES, str(target), *schemas], cwd=tmp_path,
                env=dict(os.environ, PYTHONPATH=str(target)))
    assert done.stdout.strip() == "ok"


def test_sdist_carries_what_the_wheel_is_built_from(sdist):
    """pip and tox build the wheel from the sdist: schemas/ must be in it, or the wheel has none."""
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    expected = [*_data_files("schemas"), "controls/catalog.toml", *_data_files("provision/sql"),
                *_data_files("ztm/profiles"), "setup.py"]
    missing = [name for name in expected if name not in names]
    assert not missing, f"not in {sdist.name}: {missing}"
