"""ZTM-TLS-1's judgement of a scan matrix against the policy's tls section: what was
accepted that the policy does not allow, what it requires that was refused, and what could
not be proven either way."""

from __future__ import annotations

from typing import Any

from ztm.tls_scan import CertificateInfo, ScanResult, canonical_group, is_hybrid

# NIST names of the curves, for messages an assessor reads next to SP 800-186 or RFC 9151.
NIST_CURVE = {"secp256r1": "P-256", "prime256v1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def _inconclusive(result: ScanResult, *kinds: str) -> list[str]:
    found = result.inconclusive(*kinds)
    if not found:
        return []
    listed = "; ".join(f"{name} ({probe.reason})" for name, probe in found.items())
    return [f"inconclusive, neither accepted nor refused: {listed} - a refusal counts only on a TLS alert or a "
            f"close in answer to the ClientHello; rerun from a client that can offer it ({result.client})"]


def _refused(table: dict[str, Any], names: list[str]) -> list[str]:
    return [f"{n} ({table[n].reason})" for n in names if n in table and table[n].outcome == "refused"]


def protocol_problems(result: ScanResult, tls: dict[str, Any]) -> list[str]:
    """Why the protocol versions do not match the policy (empty: they do)."""
    if not result.tls_supported:
        return [f"{result.address} does not offer TLS at all"]
    problems = []
    allowed = tls["versions"]
    extra = [v for v in result.accepted_protocols() if v not in allowed]
    if extra:
        problems.append(f"{', '.join(extra)} accepted by {result.address}: the policy allows only "
                        f"{', '.join(allowed)}")
    refused = _refused(result.protocols, tls["required_versions"])
    if refused:
        problems.append(f"protocol versions the policy requires were refused: {'; '.join(refused)}")
    return problems + _inconclusive(result, "protocol")


def suite_problems(result: ScanResult, tls: dict[str, Any]) -> list[str]:
    """Why the suites do not match the policy (empty: they do)."""
    if not result.tls_supported:
        return [f"{result.address} does not offer TLS at all"]
    problems = []
    allowed = [*tls["tls13_suites"], *tls["tls12_suites"]]
    accepted = result.accepted_suites()
    unapproved = [s for s in accepted if s not in allowed]
    if unapproved:
        problems.append(f"unapproved cipher suites accepted: {', '.join(unapproved)}; "
                        f"only {', '.join(allowed)} may be negotiated")
    required = [s for s in tls["required_tls13_suites"] if s not in accepted]
    refused = _refused(result.tls13_suites, required)
    if refused:
        problems.append(f"approved suites refused: {'; '.join(refused)}")
    unprobed = [s for s in required if s not in result.tls13_suites]
    if unprobed:
        problems.append(f"approved suites not probed: {', '.join(unprobed)}")
    return problems + _inconclusive(result, "TLS 1.3 suite", "TLS 1.2 suite")


def group_problems(result: ScanResult, tls: dict[str, Any]) -> list[str]:
    """Why the key-exchange groups do not match the policy (empty: they do).

    Every group the scan offered alone and the server accepted must be approved (when the
    policy names approved groups); with ``require_pq_kex`` at least one approved hybrid
    post-quantum group must be accepted, else each missing one is named with its verdict."""
    if not result.tls_supported:
        return [f"{result.address} does not offer TLS at all"]
    problems: list[str] = []
    allowed = tls["groups"]
    approved = {canonical_group(g) for g in allowed}
    if allowed:
        if not result.groups:
            problems.append("no key-exchange group was probed, so none is proven approved")
        unapproved = [g for g in result.accepted_groups() if canonical_group(g) not in approved]
        if unapproved:
            problems.append(f"unapproved key-exchange groups accepted: {', '.join(unapproved)}; "
                            f"only {', '.join(allowed)} may be negotiated")
        negotiated = result.negotiated
        if negotiated is None or not negotiated.accepted:
            problems.append(f"no default handshake completed to learn the negotiated group "
                            f"({negotiated and negotiated.reason})")
        elif negotiated.group is None:
            problems.append(f"the key-exchange group of the handshake cannot be read with this client "
                            f"({result.client})")
        elif canonical_group(negotiated.group) not in approved:
            problems.append(f"key-exchange group {negotiated.group} negotiated by default: the policy allows only "
                            f"{', '.join(allowed)}")
    if tls.get("require_pq_kex"):
        wanted = [g for g in result.groups if is_hybrid(g) and (not allowed or canonical_group(g) in approved)]
        if not wanted:
            problems.append("post-quantum key exchange is required, but no approved hybrid group was probed")
        elif not any(result.groups[g].accepted for g in wanted):
            missing = "; ".join(f"{g} ({result.groups[g].outcome}: {result.groups[g].reason})" for g in wanted)
            problems.append(f"post-quantum key exchange is required, but {result.address} accepts no hybrid "
                            f"group: missing {missing}")
    return problems + (_inconclusive(result, "group") if allowed else [])


def group_verdicts(result: ScanResult, tls: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each probed group with its outcome and the policy's verdict on it (the evidence)."""
    approved = {canonical_group(g) for g in tls["groups"]}
    verdicts = {}
    for name, probe in result.groups.items():
        if probe.inconclusive:
            verdict = "unproven"
        elif not probe.accepted:
            verdict = "refused"
        elif not approved:
            verdict = "accepted (the policy does not judge groups)"
        else:
            verdict = "approved" if canonical_group(name) in approved else "unapproved"
        verdicts[name] = {**probe.__dict__, "hybrid": is_hybrid(name), "verdict": verdict}
    return verdicts


def key_problems(leaf: CertificateInfo, tls: dict[str, Any]) -> list[str]:
    """Whether the server certificate's key is as strong as the policy asks."""
    kind, _, size = leaf.key.partition(" ")
    curves = tls["ec_curves"]
    if kind == "RSA" and int(size) >= tls["min_rsa_bits"]:
        return []
    if kind == "EC" and size in curves:
        return []
    shown = f"EC {size} ({NIST_CURVE[size]})" if kind == "EC" and size in NIST_CURVE else leaf.key
    return [f"the server certificate key {shown} is not allowed: the policy requires RSA of at least "
            f"{tls['min_rsa_bits']} bits or EC over {', '.join(NIST_CURVE.get(c, c) for c in curves)}"]


# MySQL's administrative connection interface (admin_address/admin_port) has its own TLS settings.
ADMIN_VARIABLES = ("admin_address", "admin_port", "admin_tls_version", "admin_tls_ciphersuites")


def admin_interface_problems(live: dict[str, str | None], tls: dict[str, Any]) -> list[str]:
    """Why the administrative interface's TLS settings do not match the policy (empty: they do).

    Judged like the main interface: its versions must be allowed, and its TLS 1.3 suites must
    be named and approved. An empty admin_tls_ciphersuites is a finding: the interface then
    takes suites the policy did not choose, which a setting cannot show to be approved."""
    where = f"the administrative interface ({live.get('admin_address')}:{live.get('admin_port')})"
    problems = []
    versions = [v.strip() for v in (live.get("admin_tls_version") or "").split(",") if v.strip()]
    extra = [v for v in versions if v not in tls["versions"]]
    if extra:
        problems.append(f"{where} allows {', '.join(extra)} (admin_tls_version = {live.get('admin_tls_version')}): "
                        f"the policy allows only {', '.join(tls['versions'])}")
    if not versions:
        problems.append(f"{where} has no admin_tls_version set, so its versions are not pinned")
    suites = [s.strip() for s in (live.get("admin_tls_ciphersuites") or "").split(":") if s.strip()]
    if "TLSv1.3" in versions:
        if not suites:
            problems.append(f"{where} has an empty admin_tls_ciphersuites: its TLS 1.3 suites are not pinned to "
                            f"the approved {', '.join(tls['tls13_suites'])}")
        unapproved = [s for s in suites if s not in tls["tls13_suites"]]
        if unapproved:
            problems.append(f"{where} allows unapproved TLS 1.3 suites {', '.join(unapproved)}")
    return problems
