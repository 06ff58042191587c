"""ZTM-TLS-1's judgement of a scan matrix: what was accepted, and what could not be proven."""

from __future__ import annotations

from ztm.tls_scan import ScanResult

ALLOWED_PROTOCOL = "TLSv1.3"


def _inconclusive(result: ScanResult, *kinds: str) -> list[str]:
    found = result.inconclusive(*kinds)
    if not found:
        return []
    listed = "; ".join(f"{name} ({probe.reason})" for name, probe in found.items())
    return [f"inconclusive, neither accepted nor refused: {listed} - a refusal counts only on a TLS alert or a "
            f"close in answer to the ClientHello; rerun from a client that can offer it ({result.client})"]


def protocol_problems(result: ScanResult) -> list[str]:
    """Why the protocol versions do not show 'TLS 1.3 only' (empty: they do)."""
    if not result.tls_supported:
        return [f"{result.address} does not offer TLS at all"]
    problems = []
    older = [v for v in result.accepted_protocols() if v != ALLOWED_PROTOCOL]
    if older:
        problems.append(f"{', '.join(older)} accepted by {result.address}: "
                        "protocol versions older than TLS 1.3 must be refused")
    tls13 = result.protocols.get(ALLOWED_PROTOCOL)
    if tls13 is not None and tls13.outcome == "refused":
        problems.append(f"TLS 1.3 itself was refused: {tls13.reason}")
    return problems + _inconclusive(result, "protocol")


def suite_problems(result: ScanResult, approved: tuple[str, ...]) -> list[str]:
    """Why the suites do not show 'only the approved TLS 1.3 suites' (empty: they do)."""
    if not result.tls_supported:
        return [f"{result.address} does not offer TLS at all"]
    problems = []
    accepted = result.accepted_suites()
    unapproved = [s for s in accepted if s not in approved]
    if unapproved:
        problems.append(f"unapproved cipher suites accepted: {', '.join(unapproved)}; "
                        f"only {' and '.join(approved)} may be negotiated")
    missing = [s for s in approved if s not in accepted]
    refused = [s for s in missing if s in result.tls13_suites and result.tls13_suites[s].outcome == "refused"]
    if refused:
        problems.append(f"approved suites refused: {', '.join(refused)} "
                        f"({'; '.join(result.tls13_suites[s].reason for s in refused)})")
    unprobed = [s for s in missing if s not in result.tls13_suites]
    if unprobed:
        problems.append(f"approved suites not probed: {', '.join(unprobed)}")
    return problems + _inconclusive(result, "TLS 1.3 suite", "TLS 1.2 suite")
