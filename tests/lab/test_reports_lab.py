"""Reports against the lab: two real bundles, before and after breaking one control
(``local_infile`` switched on at runtime: ZTM-CFG-1), and ``ztm evidence diff`` names exactly
that control as regressed; the control table and ``--fail-on`` see the same."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
CONTROLS = ("ZTM-CFG-1", "ZTM-TLS-2")  # CFG-1 (medium) is broken below; TLS-2 (high) must not move


@pytest.fixture(scope="module")
def before_after(lab, tmp_path_factory):
    from tests.control_runner import run_control

    out = tmp_path_factory.mktemp("reports")
    before, after = out / "before.tar.gz", out / "after.tar.gz"
    first = run_control(lab.target_file, *CONTROLS, extra=("--evidence-out", str(before)))
    assert first.exit_code == 0, f"the lab must start healthy for these controls:\n{first.output[-3000:]}"
    with lab.admin() as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL local_infile = 1")
    try:
        second = run_control(lab.target_file, *CONTROLS, extra=("--evidence-out", str(after), "-v",
                                                                "--fail-on", "high"))
    finally:
        with lab.admin() as conn, conn.cursor() as cur:
            cur.execute("SET GLOBAL local_infile = 0")
    return before, after, second


def test_summary_and_gate_on_a_broken_lab(before_after):
    _, _, second = before_after
    assert "NOT SATISFIED ZTM-CFG-1 (medium): test_live_variables_hardened" in second.output, second.output[-3000:]
    assert "local_infile" in second.output.split("NOT SATISFIED ZTM-CFG-1")[1].splitlines()[0]
    assert second.exit_code == 0, "--fail-on high: only a medium control is not satisfied"


def test_diff_names_exactly_the_broken_control(lab, before_after):
    before, after, _ = before_after
    done = subprocess.run([sys.executable, "-m", "ztm.cli", "evidence", "diff", str(before), str(after), "--json",
                           "--ca", str(lab.pki.evidence_ca_cert), "--crl", str(lab.pki.evidence_crl)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    doc = json.loads(done.stdout)
    assert [r["id"] for r in doc["regressed"]] == ["ZTM-CFG-1"]
    assert doc["fixed"] == [] and doc["still_failing"] == [] and doc["changed"] == []
    assert "local_infile" in doc["regressed"][0]["reason"]


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    import shutil

    binary = shutil.which("chromium")
    assert binary, "Debian's chromium is not installed (tasks.py install puts it in APT_PACKAGES)"
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-background-networking", *args], capture_output=True, text=True, timeout=180)


def test_assessor_report_in_headless_chromium(before_after, tmp_path):
    """The report beside the 'after' bundle, with the bundle unpacked next to it, rendered by Chromium:
    every catalog control has a section with its verdict, every evidence link resolves to a bundle
    file, and the broken control is red on the first screen. A screenshot goes to reports/."""
    import re
    import tarfile

    from evidence.catalog import load_catalog

    _, after, _ = before_after
    page = after.with_name("after.html")
    with tarfile.open(after, "r:gz") as tar:
        tar.extractall(after.parent, filter="data")
    done = _chromium("--dump-dom", page.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    for cid in load_catalog().controls:
        assert re.search(rf'<section id="{cid}" class="control">.*?data-verdict="', dom, re.S), cid
    links = re.findall(r'class="evidence" href="([^"]+)"', dom)
    assert links and all((page.parent / link).is_file() for link in links), links
    first = dom.split("<section")[0]
    failing = first.split('id="failing"')[1].split("</ul>")[0]
    assert "ZTM-CFG-1" in failing and "#cf222e" in failing and "ZTM-TLS-2" not in failing
    shots = ROOT / "reports"
    shots.mkdir(exist_ok=True)
    shot = _chromium(f"--screenshot={shots / 'assessor-broken-cfg1.png'}", "--window-size=1280,1600",
                     page.as_uri())
    assert shot.returncode == 0 and (shots / "assessor-broken-cfg1.png").stat().st_size > 10000, shot.stderr[-2000:]


def test_hdf_of_a_real_bundle_passes_inspecjs_and_opens_in_heimdall_lite(before_after, tmp_path):
    """The 'after' bundle's hdf.json: MITRE's parser (inspecjs convertFile) reads it as InSpec exec JSON, and
    Heimdall Lite in headless chromium shows one row per control of the bundle, the broken ZTM-CFG-1 as
    Failed and ZTM-TLS-2 as Passed. A screenshot goes to reports/."""
    import tarfile

    from tests.heimdall_lite import open_in_heimdall
    from tests.unit.test_evidence_hdf import validate

    _, after, _ = before_after
    with tarfile.open(after, "r:gz") as tar:
        hdf = tar.extractfile("bundle/hdf.json").read()
        results = json.loads(tar.extractfile("bundle/results.json").read())
    path = tmp_path / "hdf.json"
    path.write_bytes(hdf)
    checked = validate(path)
    assert checked.returncode == 0 and "exec JSON" in checked.stdout, checked.stdout + checked.stderr
    controls = [c["id"] for c in results["controls"]]
    view = open_in_heimdall(path, ROOT / "reports" / "heimdall-broken-cfg1.png")
    assert sorted(i for i, _ in view.rows) == sorted(controls), view.rows
    assert view.viewed == f"0/{len(controls)} Controls Viewed"
    shown = dict(view.rows)
    assert (shown["ZTM-CFG-1"], shown["ZTM-TLS-2"]) == ("Failed", "Passed"), shown
    assert {s for c, s in view.rows if c not in CONTROLS} == {"Not Reviewed"}, "the controls this run did not assess"
