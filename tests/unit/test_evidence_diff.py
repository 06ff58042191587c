"""``ztm evidence diff`` on real bundles written by two plugin runs (before and after a control
breaks), and its refusal to diff a bundle that does not verify."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.unit.test_evidence_bundle import CONFTEST, INI, issue_signer, make_ca, make_key, members, rewrite
from ztm.cli import main as ztm_main

BEFORE = '''
import pytest

@pytest.mark.control("ZTM-TLS-1")
def test_tls(evidence):
    evidence.json("matrix", {"TLSv1.3": True})

@pytest.mark.control("ZTM-CFG-1")
def test_cfg(evidence):
    evidence.json("vars", {"local_infile": 0})

@pytest.mark.control("ZTM-TLS-2")
def test_plain():
    assert False, "plaintext login accepted"
'''
# ZTM-CFG-1 breaks, ZTM-TLS-2 is fixed, ZTM-TLS-1 keeps its verdict with other evidence data.
AFTER = (BEFORE.replace('{"local_infile": 0})', '{"local_infile": 1})\n    assert False, "local_infile=1"')
         .replace('assert False, "plaintext login accepted"', "pass")
         .replace('{"TLSv1.3": True}', '{"TLSv1.3": True, "TLSv1.2": True}'))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    work = tmp_path_factory.mktemp("diff")
    (work / "pytest.ini").write_text(INI)
    (work / "conftest.py").write_text(CONFTEST)
    key = make_key(work / "signer.key")
    ca_pem, ca_key = make_ca(work)
    cert = issue_signer(ca_pem, ca_key, key, work / "signer.pem")
    out = {}
    for name, suite in (("old", BEFORE), ("new", AFTER)):
        (work / "test_controls.py").write_text(suite)
        out[name] = work / f"{name}.tar.gz"
        done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--evidence-out",
                               str(out[name]), "--evidence-key", str(key), "--evidence-cert", str(cert),
                               "--fail-on", "high"], cwd=work, capture_output=True, text=True)
        assert out[name].exists(), done.stdout[-2000:]
    return out["old"], out["new"], ca_pem


def test_run_json_records_the_gate(bundles):
    old, _, _ = bundles
    assert json.loads(members(old)["bundle/run.json"])["fail_on"] == "high"


def test_diff_names_the_regression_the_fix_and_changed_evidence(bundles, capsys):
    old, new, ca = bundles
    assert ztm_main(["evidence", "diff", str(old), str(new), "--ca", str(ca)]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED ZTM-CFG-1 (medium): satisfied -> not satisfied: test_cfg: AssertionError: local_infile=1" in out
    assert "FIXED ZTM-TLS-2 (high): not satisfied -> satisfied" in out
    assert "EVIDENCE CHANGED ZTM-TLS-1 (verdict satisfied unchanged): evidence/ZTM-TLS-1/test_tls/matrix.json" in out
    assert "1 regressed, 1 fixed, 0 still failing" in out
    assert "ZTM-NET-1" not in out, "a control not assessed in both runs is no change"


def test_diff_json_backwards(bundles, capsys):
    old, new, ca = bundles
    assert ztm_main(["evidence", "diff", str(new), str(old), "--ca", str(ca), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in doc["regressed"]] == ["ZTM-TLS-2"]
    assert [r["id"] for r in doc["fixed"]] == ["ZTM-CFG-1"]


def test_same_bundle_twice_has_no_change(bundles, capsys):
    old, _, ca = bundles
    assert ztm_main(["evidence", "diff", str(old), str(old), "--ca", str(ca)]) == 0
    assert "0 regressed, 0 fixed, 1 still failing" in capsys.readouterr().out


@pytest.mark.parametrize("which", ["old", "new"])
def test_tampered_bundle_is_not_diffed(bundles, tmp_path, capsys, which):
    old, new, ca = bundles
    files = members(old if which == "old" else new)
    results = json.loads(files["bundle/results.json"])
    for test in results["tests"]:
        test["outcome"] = "passed"  # a forger hides the failures
    files["bundle/results.json"] = json.dumps(results).encode()
    forged = tmp_path / "forged.tar.gz"
    rewrite(forged, files)
    args = [str(forged), str(new)] if which == "old" else [str(old), str(forged)]
    assert ztm_main(["evidence", "diff", *args, "--ca", str(ca)]) == 3
    err = capsys.readouterr()
    assert "did not verify, not diffed: results.json: content changed" in err.err and err.out == ""


def test_diff_needs_a_trust_anchor(bundles, capsys):
    old, new, _ = bundles
    assert ztm_main(["evidence", "diff", str(old), str(new)]) == 1
    assert "no trust anchor" in capsys.readouterr().err


def test_diff_of_a_missing_bundle_is_one_line(bundles, tmp_path, capsys):
    old, _, ca = bundles
    assert ztm_main(["evidence", "diff", str(old), str(tmp_path / "nope.tar.gz"), "--ca", str(ca)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_partly_assessed_then_failing_is_a_regression():
    """Some tests passed and one was skipped (an engine-specific test): failing next time is a regression."""
    from evidence.diff import Side, diff

    old = Side({"ZTM-CFG-1": ("not assessed", "t2 skipped: mysql only"), "ZTM-NET-1": ("not assessed", "")},
               {"ZTM-CFG-1": 1, "ZTM-NET-1": 0}, {"ZTM-CFG-1": "medium", "ZTM-NET-1": "high"}, "t0", {})
    new = Side({"ZTM-CFG-1": ("not satisfied", "t1: local_infile"), "ZTM-NET-1": ("not satisfied", "open port")},
               {"ZTM-CFG-1": 0, "ZTM-NET-1": 0}, {"ZTM-CFG-1": "medium", "ZTM-NET-1": "high"}, "t1", {})
    result = diff(old, new)
    assert [r["id"] for r in result.changes["regressed"]] == ["ZTM-CFG-1"]
    assert [r["id"] for r in result.changes["newly assessed"]] == ["ZTM-NET-1"]


def test_assessor_report_in_the_bundle_and_next_to_it(bundles):
    """Every catalog control has a section with its verdict; every evidence link names a bundle file;
    no script and no external resource; the copy beside the archive links into the unpacked bundle/."""
    import re

    from evidence.catalog import load_catalog

    _, new, _ = bundles
    files = members(new)
    page = files["bundle/assessor.html"].decode()
    for cid in load_catalog().controls:
        section = re.search(rf'<section id="{cid}" class="control">(.*?)</section>', page, re.S)
        assert section and 'data-verdict="' in section.group(1), cid
    assert re.search(r'<section id="ZTM-CFG-1".*?data-verdict="not satisfied"', page, re.S)
    first = page.split('<section id=')[0]
    assert 'id="failing"' in first and "ZTM-CFG-1" in first.split('id="failing"')[1].split("</ul>")[0]
    assert "<svg" in first and "<script" not in page and not re.search(r'(src|href)="https?:', page)
    links = re.findall(r'class="evidence" href="([^"]+)"', page)
    assert links and all(f"bundle/{link}" in files for link in links)
    beside = new.with_name("new.html").read_text()
    assert re.findall(r'class="evidence" href="([^"]+)"', beside) == [f"bundle/{link}" for link in links]
