"""A lab whose data plane lives in another database than the default (`ztm lab up --database`):
the installer, the anchor, the audit tools and every control read the name from the target
file, so the whole suite passes there as it does on the default lab."""

from __future__ import annotations

import subprocess
import sys

import pytest

from provision import lab as lab_mod
from tests.control_runner import ROOT, run_control
from ztm.data_plane import DATABASE
from ztm.target import load_target

pytestmark = pytest.mark.lab

OTHER = "ztm_assessed_db"


@pytest.fixture
def other_database(lab):
    engine = lab.engine().name
    lab_mod.up(lab, engine, OTHER)
    try:
        yield lab
    finally:
        lab_mod.up(lab, engine)  # the default database again, for the other lab tests


def ztm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ztm.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_the_lab_moves_its_data_plane_to_the_named_database(other_database):
    lab = other_database
    assert load_target(lab.target_file).database == OTHER
    assert lab.database() == OTHER
    with lab.admin() as conn, conn.cursor() as cur:
        cur.execute("SHOW DATABASES")
        names = {row[0] for row in cur.fetchall()}
    assert OTHER in names
    assert DATABASE not in names, "the lab's previous database was left behind"
    for command in (("audit", "verify"), ("anchor", "verify")):
        done = ztm(*command, "--target", str(lab.target_file))
        assert done.returncode == 0, f"ztm {' '.join(command)}: {done.stdout}{done.stderr}"


def test_every_control_passes_on_a_lab_with_another_database(other_database):
    run = run_control(other_database.target_file)
    run.assert_all_passed()
    assert run.exit_code == 0, run.output[-2000:]
