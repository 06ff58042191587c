"""ZTM-TLS-1: only TLS 1.3, and only the approved TLS 1.3 suites, are accepted.

The proof is behavioural: the MySQL-protocol scanner offers each protocol version and each
suite alone, one handshake per probe, and records which the server accepts (the scan
matrix is the evidence). A refusal counts only on a TLS alert or a close in answer to the
ClientHello; a probe that proves neither (no answer, a suite this client cannot offer)
fails the control by name, since an unproven refusal is not a refusal. The server
certificate is checked too: it chains to the target's CA, carries the server name, and is
within its validity period.
"""

from __future__ import annotations

import pytest

from ztm.checks.tls import protocol_problems, suite_problems
from ztm.dialect import APPROVED_TLS13_SUITES

pytestmark = pytest.mark.control("ZTM-TLS-1")

# Keys weaker than these do not give the 128-bit security the approved suites promise.
MIN_RSA_BITS = 3072
APPROVED_EC_CURVES = {"secp256r1", "secp384r1", "secp521r1"}


@pytest.fixture(scope="module")
def scan_result(tls_probe):
    """One scan per run: every version and suite probed alone, plus a verified handshake."""
    return tls_probe()


def test_only_tls13_is_accepted(scan_result, evidence):
    evidence.json("scan-matrix", scan_result.to_dict())
    problems = protocol_problems(scan_result)
    assert not problems, "; ".join(problems)


def test_only_approved_suites_are_accepted(scan_result, evidence):
    evidence.json("suites", {"client": scan_result.client,
                             "tls13": {k: v.__dict__ for k, v in scan_result.tls13_suites.items()},
                             "tls12": {k: v.__dict__ for k, v in scan_result.tls12_suites.items()}})
    problems = suite_problems(scan_result, APPROVED_TLS13_SUITES)
    assert not problems, "; ".join(problems)


def test_server_certificate_is_valid_for_the_target(scan_result, target, evidence):
    evidence.json("certificate-chain", [c.__dict__ for c in scan_result.chain])
    assert scan_result.chain, "the server presented no certificate"
    leaf = scan_result.chain[0]
    assert scan_result.verified, (f"the server certificate does not verify against {target.ca} for name "
                                  f"{target.server_name}: {scan_result.verify_error}")
    assert leaf.days_left >= 0, f"the server certificate expired on {leaf.not_after}"
    kind, _, size = leaf.key.partition(" ")
    weak = (kind == "RSA" and int(size) < MIN_RSA_BITS) or (kind == "EC" and size not in APPROVED_EC_CURVES)
    assert not weak, f"the server certificate key is too weak for the approved suites: {leaf.key}"
