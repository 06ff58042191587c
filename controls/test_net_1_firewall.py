"""ZTM-NET-1: firewall default deny; the database port only for allowlisted clients.

Configuration: the live nftables ruleset of the database host (read through testinfra) has
an input hook whose policy is drop. Behaviour, by TCP probes from outside the host: an
address outside the allowlist cannot reach the database port, an allowlisted one can; and
only the expected ports listen at all.

A probe that could not run (missing namespace or tool, host or network unreachable) is
never taken as "blocked": the control fails and says the probe could not run. A silent
drop is trusted only when the firewall's own per-source drop counter (an nftables set with
counters on the drop path) moved for the intruder's packets, which proves they reached the
host and its policy dropped them, in about a second; on a firewall without that counter, only
once the host is shown to answer the same source on another port (SSH, which the firewall
leaves open), so a broken path cannot pass for a firewall.
"""

from __future__ import annotations

import pytest

from ztm.netprobe import (
    BLOCKED,
    COULD_NOT_RUN,
    DEFAULT_TIMEOUT,
    DROP_PROBE_TIMEOUT,
    DROP_SET,
    REACHABLE,
    dropped_packets,
)
from ztm.resources.host import in_netns, input_chains, listening_ports, nft_ruleset

pytestmark = pytest.mark.control("ZTM-NET-1")


@pytest.fixture(scope="module")
def db_netns_host(db_host, target):
    """The database host as seen from inside its network namespace (the lab's), or itself."""
    return in_netns(db_host, target.section("host").get("netns"))


@pytest.fixture(scope="module")
def live_ruleset(db_netns_host) -> dict | str:
    """The live ruleset read once per module (each read is an SSH round trip), or why not."""
    try:
        return nft_ruleset(db_netns_host)
    except (AssertionError, ValueError) as exc:
        return str(exc)[-300:]


def test_input_policy_is_drop(live_ruleset, evidence):
    if isinstance(live_ruleset, str):
        pytest.fail(f"cannot read the nftables ruleset of the database host: {live_ruleset}")
    ruleset = live_ruleset
    evidence.json("nft-ruleset", ruleset)
    inputs = input_chains(ruleset)
    assert inputs, "no nftables filter chain hooks IPv4 input: nothing filters incoming traffic"
    # A packet must pass every base chain on the hook, so one chain with policy drop makes the
    # default deny; chains with policy accept next to it (fail2ban's) cannot widen it.
    dropping = [c for c in inputs if c.get("policy") == "drop"]
    accepting = ", ".join(f"{c['family']} {c['table']} {c['name']}" for c in inputs if c.get("policy") != "drop")
    assert dropping, f"no input chain has policy drop (policy accept: {accepting}): the default must be deny"


def _host_answers(from_netns, netns: str, address: str, port: int, source: str) -> tuple[bool, str]:
    """Does the host answer this source at all (connect or reset on a port left open)?"""
    seen = from_netns(netns, "connect", address, str(port), "--source", source)
    return seen.verdict == REACHABLE or (seen.verdict == BLOCKED and seen.how != "timeout"), seen.said


def test_allowlisted_client_reaches_the_database_port(target, network, from_netns, evidence):
    assessor = from_netns(None, "connect", target.host, str(target.port))
    evidence.json("allowlisted", {"address": network.get("assessor_address"), **assessor.__dict__,
                                  "allowlist": network.get("allowlisted_cidrs")})
    assert assessor.verdict != COULD_NOT_RUN, f"the allowlisted probe could not run: {assessor.said}"
    assert assessor.ok, f"the allowlisted assessor cannot reach {target.host}:{target.port} ({assessor.said})"


def _drop_count(db_netns_host, source: str) -> int | None:
    """The firewall's count of dropped database-port packets from ``source`` (None: none kept)."""
    try:
        return dropped_packets(nft_ruleset(db_netns_host), source)
    except (AssertionError, ValueError):
        return None


def test_database_port_reachable_only_from_the_allowlist(target, network, from_netns, db_netns_host, live_ruleset,
                                                         evidence):
    if not network.get("intruder_netns") or not network.get("intruder_address"):
        pytest.skip("the target names no intruder vantage point ([network].intruder_netns and intruder_address: a "
                    "namespace on the assessor's machine with an address outside the allowlist), so the deny half "
                    "of the firewall cannot be exercised")
    netns, source = network["intruder_netns"], network["intruder_address"]
    assessor = from_netns(None, "connect", target.host, str(target.port))
    # With the firewall's own drop counter, a silent drop is proven by the counter moving: a
    # short wait suffices. Without it, the probe waits out the full timeout and the path check
    # below must show the host answers this source at all.
    # The counter only grows, so the module's ruleset (read before this probe) gives "before".
    before = None if isinstance(live_ruleset, str) else dropped_packets(live_ruleset, source)
    timeout = DROP_PROBE_TIMEOUT if before is not None else DEFAULT_TIMEOUT
    intruder = from_netns(netns, "connect", target.host, str(target.port), "--source", source,
                          "--timeout", str(timeout))
    path, counted = None, None
    if intruder.verdict == BLOCKED and intruder.how == "timeout":
        if before is not None:
            counted = (before, _drop_count(db_netns_host, source))
        if counted is None or counted[1] is None or counted[1] <= counted[0]:
            path = _host_answers(from_netns, netns, target.host, network.get("ssh_port", 22), source)
    evidence.json("reachability", {"intruder": {"address": source, **intruder.__dict__},
                                   "firewall_drop_counter": counted and {"set": DROP_SET, "before": counted[0],
                                                                         "after": counted[1]},
                                   "intruder_path_check": path and {"port": network.get("ssh_port", 22),
                                                                    "host_answers": path[0], "said": path[1]},
                                   "allowlisted": {"address": network.get("assessor_address"), **assessor.__dict__},
                                   "allowlist": network.get("allowlisted_cidrs")})
    assert assessor.verdict != COULD_NOT_RUN, f"the allowlisted probe could not run: {assessor.said}"
    assert assessor.ok, (f"the allowlisted assessor cannot reach {target.host}:{target.port} ({assessor.said}): "
                         "no baseline to show the intruder is refused by the firewall")
    assert intruder.verdict != COULD_NOT_RUN, (f"the intruder probe could not run ({intruder.said}); that is no "
                                               "proof that the firewall blocks it")
    assert not intruder.ok, (f"{source} (not allowlisted) reached the database port {target.host}:{target.port}: "
                             "the firewall does not restrict it")
    if path is not None:
        assert path[0], (f"the intruder probe could not run conclusively: {intruder.said}, and the host does not "
                         f"answer {source} on port {network.get('ssh_port', 22)} either ({path[1]}), so a firewall "
                         "drop cannot be told from a broken path")
    if counted is not None:
        assert counted[1] is not None and counted[1] > counted[0], (
            f"{intruder.said}, but the firewall's drop counter for {source} ({DROP_SET}) did not move "
            f"({counted[0]} -> {counted[1]}): the packets were lost before the firewall's policy, not dropped by it")


def test_only_expected_ports_listen(db_netns_host, network, policy, evidence):
    try:
        listening = listening_ports(db_netns_host)
    except (AssertionError, RuntimeError) as exc:
        pytest.fail(f"cannot list listening sockets: {str(exc)[-300:]}")
    # The policy's ports, plus those the target declares for this deployment ([network].listen_ports).
    expected = sorted({*policy.network["allowed_listen_ports"], *(f"tcp/{p}" for p in network.get("listen_ports", []))})
    evidence.json("listening", {"sockets": listening, "expected": expected})
    unexpected = [p for p in listening if p not in expected]
    assert not unexpected, (f"unexpected listening ports on the database host: {unexpected} (policy {policy.name} "
                            f"and the target allow {expected})")
