"""One verification semantics, implemented twice: `ztm evidence verify` and evidence/offline-verify.sh
must accept the genuine bundle and reject every forgery of a corpus made at test time, each with a
reason naming the problem and the same exit status. A disagreement fails the test."""

from __future__ import annotations

import pytest

from tests.unit.evidence_forge import CASES, Lab, build_corpus, make_pki, run_offline, run_python, sign, start_tsa


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    layout = make_pki(tmp_path_factory.mktemp("pki"))
    proc, url = start_tsa(layout)
    yield Lab(layout, url, tmp_path_factory.mktemp("corpus"))
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def genuine(lab):
    return sign(lab, lab.work / "genuine.tar.gz")


@pytest.fixture(scope="module")
def corpus(lab, genuine):
    return build_corpus(lab, genuine)


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 25 and len({c.name for c in CASES}) == len(CASES)


def test_both_verifiers_accept_the_genuine_bundle(lab, genuine):
    code, out = run_python(genuine, ["--ca", str(lab.ca)])
    assert code == 0, out
    assert "verified:" in out and "valid at the timestamp" in out
    code, out = run_offline(genuine, [str(lab.ca)])
    assert code == 0, out
    assert out.startswith("verified:") and "at the timestamp" in out
    assert not (lab.work / "x").exists()


def test_both_verifiers_accept_the_genuine_bundle_with_the_crl(lab, genuine):
    crl = str(lab.layout.evidence_crl)
    assert run_python(genuine, ["--ca", str(lab.ca), "--crl", crl])[0] == 0
    assert run_offline(genuine, [str(lab.ca), "--crl", crl])[0] == 0


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_both_verifiers_reject_each_forgery_for_the_same_reason(corpus, case):
    bundle, py_args, sh_args = corpus[case.name]
    py_code, py_out = run_python(bundle, py_args)
    sh_code, sh_out = run_offline(bundle, sh_args)
    assert py_code == case.code, f"ztm evidence verify: exit {py_code}\n{py_out}"
    assert sh_code == case.code, f"offline-verify.sh: exit {sh_code}\n{sh_out}"
    assert case.expect.lower() in py_out.lower(), f"ztm's reason does not name the problem:\n{py_out}"
    assert case.expect.lower() in sh_out.lower(), f"the offline script's reason does not name the problem:\n{sh_out}"
    for out in (py_out, sh_out):  # a hostile name cannot forge a line of our output either
        assert not any(line.startswith("verified") for line in out.splitlines()), out
    assert "Traceback" not in py_out


@pytest.mark.parametrize("name", ["gzip bomb", "sparse member (100 GB apparent)"])
def test_hostile_archives_are_refused_in_bounded_memory_and_time(corpus, name):
    """ztm inflates into a temporary file, never into memory: under a 768 MiB address-space limit it still
    answers with one reason, quickly."""
    import resource
    import subprocess
    import sys
    import time

    from tests.unit.evidence_forge import ROOT

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (768 * 2**20, 768 * 2**20))

    bundle, py_args, _ = corpus[name]
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "ztm.cli", "evidence", "verify", str(bundle), *py_args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, preexec_fn=limit)
    assert done.returncode == 1 and "MemoryError" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and time.monotonic() - began < 60
