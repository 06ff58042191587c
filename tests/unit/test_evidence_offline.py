"""The offline check an assessor runs with only openssl and coreutils (evidence/offline-verify.sh, shown
verbatim in evidence/README.md), and `ztm evidence verify`, on input that is not a bundle at all: one
line, exit 2, bounded time; the script never hangs and always removes its temporary folder.
(The forgery corpus that both must reject alike is tests/unit/test_evidence_forgery.py.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.test_evidence_bundle import built_bundle

__all__ = ["built_bundle"]  # the module-scoped fixture: one real plugin run, signed by a CA-certified key

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "evidence" / "offline-verify.sh"


def offline_check(bundle: Path, ca: Path, tmpdir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"TMPDIR": str(tmpdir)} if tmpdir else {})}
    return subprocess.run(["sh", str(SCRIPT), str(bundle), str(ca)], capture_output=True, text=True, timeout=120,
                          env=env)


def test_readme_shows_exactly_the_script_that_is_tested():
    body = "set -eu\n" + SCRIPT.read_text().split("set -eu\n", 1)[1]
    assert body in (ROOT / "evidence" / "README.md").read_text(), "evidence/README.md must show the script verbatim"
    readme = (ROOT / "README.md").read_text()
    if "offline-verify.sh" in readme and "set -eu" in readme:  # the project README may show it too: then exactly
        assert body in readme, "README.md must show evidence/offline-verify.sh verbatim"


def test_bundle_of_a_real_run_passes_the_offline_check_and_leaves_no_temporary_folder(built_bundle, tmp_path):
    out, _, ca_pem = built_bundle
    done = offline_check(out, ca_pem, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("verified:") and "at now (no timestamp token)" in done.stdout
    assert list(tmp_path.iterdir()) == []


def _not_bundles(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo.tar.gz"
    os.mkfifo(fifo)
    (tmp_path / "empty.tar.gz").write_bytes(b"")
    (tmp_path / "text.tar.gz").write_bytes(b"just some text, not gzip\n")
    (tmp_path / "folder").mkdir()
    return {"/dev/zero": Path("/dev/zero"), "a FIFO": fifo, "a directory": tmp_path / "folder",
            "a 0-byte file": tmp_path / "empty.tar.gz", "a non-gzip file": tmp_path / "text.tar.gz"}


@pytest.mark.parametrize("what", ["/dev/zero", "a FIFO", "a directory", "a 0-byte file", "a non-gzip file"])
def test_not_a_bundle_is_one_line_and_exit_2_for_both_verifiers(built_bundle, tmp_path, what):
    _, _, ca_pem = built_bundle
    victim = _not_bundles(tmp_path)[what]
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "ztm.cli", "evidence", "verify", str(victim), "--ca", str(ca_pem)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("ztm: ") and "Traceback" not in done.stderr
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    offline = offline_check(victim, ca_pem, scratch)
    assert offline.returncode == 2 and offline.stdout == "", offline.stdout + offline.stderr
    assert len(offline.stderr.splitlines()) == 1 and offline.stderr.startswith("offline-verify: ")
    assert list(scratch.iterdir()) == []
    assert time.monotonic() - began < 30


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_offline_script_removes_its_temporary_folder_when_interrupted(built_bundle, tmp_path, sig):
    """Interrupted while inflating a large (but in-bound) stream: the trap removes the work folder."""
    import gzip

    _, _, ca_pem = built_bundle
    big = tmp_path / "big.tar.gz"
    with gzip.open(big, "wb", compresslevel=1) as handle:
        for _ in range(250):  # 250 MiB of tar (in bounds) from about 1 MiB: inflating it takes a moment
            handle.write(bytes(2**20))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen(["sh", str(SCRIPT), str(big), str(ca_pem)], env={**os.environ, "TMPDIR": str(scratch)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 20
    while not any(scratch.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(scratch.iterdir()), "the script never made its work folder"
    os.killpg(proc.pid, sig)  # as a terminal does: the whole foreground group
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert list(scratch.iterdir()) == [], "the work folder survived the interruption"
