"""Envelope clients built and used by 16 threads at once, 20 rounds, on the lab's SoftHSM2
token: no crash, no error, the token intact (its object file non-empty, both KEKs still
there, read by a fresh process), and every record decrypts. The load runs in a child process
so that a segfault in the PKCS#11 module fails this test instead of killing pytest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
THREADS, ROUNDS = 16, 20


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.lab.envelope_stress", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_sixteen_threads_build_clients_and_encrypt_without_harm_to_the_token(lab, tmp_path):
    rows = tmp_path / "rows.json"
    stress = _run("stress", str(lab.target_file), str(rows), str(THREADS), str(ROUNDS), timeout=900)
    assert stress.returncode in (0, 1), (f"the stress process died (exit {stress.returncode}, a negative code is "
                                         f"a signal): {stress.stderr[-2000:]}")
    summary = json.loads(stress.stdout.strip().splitlines()[-1])
    assert summary["error_count"] == 0, summary["errors"]
    assert summary["records"] == THREADS * ROUNDS * 3

    objects = list((lab.kms.tokens).glob("*/token.object"))
    assert objects and all(path.stat().st_size > 0 for path in objects), \
        f"the token's object file is empty or gone: {[(str(p), p.stat().st_size) for p in objects]}"
    check = _run("check", str(lab.target_file), str(rows), timeout=600)
    assert check.returncode == 0, check.stderr[-2000:]
    result = json.loads(check.stdout.strip().splitlines()[-1])
    assert result["kek"] and result["pq_kek"], f"a KEK is gone from the token: {result}"
    assert result["records"] == summary["records"]
    assert result["undecryptable_count"] == 0, result["undecryptable"]
