"""ZTM-TLS-1: only the protocol versions, suites and key-exchange groups the policy allows are
accepted, and the server certificate key is as strong as the policy asks.

The proof is behavioural: the MySQL-protocol scanner offers each protocol version, each
suite and each key-exchange group (classical, and hybrid post-quantum ML-KEM groups where the
client has them) alone, one handshake per probe, and records which the server accepts (the scan
matrix is the evidence). A refusal counts only on a TLS alert or a close in answer to the
ClientHello; a probe that proves neither (no answer, a suite this client cannot offer)
fails the control by name, since an unproven refusal is not a refusal. The server
certificate is checked too: it chains to the target's CA, carries the server name, and is
within its validity period. What is allowed comes from the policy's tls section
(zero-trust: TLS 1.3 with AES-256-GCM or ChaCha20-Poly1305); with ``require_pq_kex`` the
server must accept a hybrid post-quantum group, and each missing one is named.
"""

from __future__ import annotations

import pytest

from ztm.checks.tls import (
    ADMIN_VARIABLES,
    admin_interface_problems,
    group_problems,
    group_verdicts,
    key_problems,
    protocol_problems,
    suite_problems,
)
from ztm.resources.variables import live_variables

pytestmark = pytest.mark.control("ZTM-TLS-1")


@pytest.fixture(scope="module")
def scan_result(tls_probe):
    """One scan per run: every version and suite probed alone, plus a verified handshake."""
    return tls_probe()


def test_only_allowed_protocol_versions_are_accepted(scan_result, policy, evidence):
    evidence.json("scan-matrix", scan_result.to_dict())
    problems = protocol_problems(scan_result, policy.tls)
    assert not problems, f"policy {policy.name}: " + "; ".join(problems)


def test_only_approved_suites_are_accepted(scan_result, policy, evidence):
    evidence.json("suites", {"client": scan_result.client,
                             "tls13": {k: v.__dict__ for k, v in scan_result.tls13_suites.items()},
                             "tls12": {k: v.__dict__ for k, v in scan_result.tls12_suites.items()},
                             "negotiated": scan_result.negotiated and scan_result.negotiated.__dict__})
    problems = suite_problems(scan_result, policy.tls)
    assert not problems, f"policy {policy.name}: " + "; ".join(problems)


def test_only_approved_key_exchange_groups_are_accepted(scan_result, policy, evidence):
    evidence.json("groups", {"client": scan_result.client, "approved": policy.tls["groups"],
                             "require_pq_kex": policy.tls["require_pq_kex"],
                             "groups": group_verdicts(scan_result, policy.tls),
                             "negotiated": scan_result.negotiated and scan_result.negotiated.__dict__})
    problems = group_problems(scan_result, policy.tls)
    assert not problems, f"policy {policy.name}: " + "; ".join(problems)


@pytest.mark.needs("tls.ca")
def test_server_certificate_is_valid_for_the_target(scan_result, target, policy, evidence):
    evidence.json("certificate-chain", [c.__dict__ for c in scan_result.chain])
    assert scan_result.chain, "the server presented no certificate"
    leaf = scan_result.chain[0]
    assert scan_result.verified, (f"the server certificate does not verify against {target.ca} for name "
                                  f"{target.verify_name}: {scan_result.verify_error}")
    assert leaf.days_left >= 0, f"the server certificate expired on {leaf.not_after}"
    problems = key_problems(leaf, policy.tls)
    assert not problems, f"policy {policy.name}: " + "; ".join(problems)


@pytest.mark.needs("login.admin")
def test_administrative_interface_tls_matches_the_policy(target, policy, evidence, admin):
    """MySQL's administrative interface (admin_address) has its own TLS versions and suites;
    whenever it is enabled they are judged like the main interface's (read through the admin
    path, which the rest of this control does not need)."""
    live = live_variables(admin, list(ADMIN_VARIABLES))
    evidence.json("admin-interface", live)
    if live["admin_address"] is None:
        pytest.skip(f"not applicable: {target.engine} has no administrative connection interface (admin_address)")
    if not live["admin_address"]:
        pytest.skip("not applicable: admin_address is not set, so no administrative interface listens")
    problems = admin_interface_problems(live, policy.tls)
    assert not problems, f"policy {policy.name}: " + "; ".join(problems)
