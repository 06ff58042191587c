"""ZTM-NET-1: firewall default deny; the database port only for allowlisted clients.

Configuration: the live nftables ruleset of the database host has an input hook whose
policy is drop. Behaviour, by TCP probes from outside the host: an address outside the
allowlist cannot reach the database port, an allowlisted one can; and only the expected
ports listen at all.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.control("ZTM-NET-1")


def _ruleset(host, host_netns_argv) -> dict:
    command = " ".join([*host_netns_argv, "nft", "-j", "list", "ruleset"])
    result = host.run(command)
    assert result.rc == 0, f"cannot read the nftables ruleset of the database host: {result.stderr.strip()}"
    return json.loads(result.stdout)


def test_input_policy_is_drop(host, host_netns_argv, evidence):
    ruleset = _ruleset(host, host_netns_argv)
    evidence.json("nft-ruleset", ruleset)
    chains = [item["chain"] for item in ruleset.get("nftables", []) if "chain" in item]
    inputs = [c for c in chains if c.get("hook") == "input" and c.get("type") == "filter"]
    assert inputs, "no nftables filter chain hooks input: nothing filters incoming traffic"
    accepting = [f"{c['family']} {c['table']} {c['name']}" for c in inputs if c.get("policy") != "drop"]
    # fail2ban's own chain (policy accept, it only adds rejections) is not a gap in the policy.
    accepting = [name for name in accepting if "f2b-" not in name]
    assert not accepting, f"input chain(s) with policy accept: {', '.join(accepting)}; default must be deny"


def test_database_port_reachable_only_from_the_allowlist(target, network, from_netns, evidence):
    intruder = from_netns(network["intruder_netns"], "connect", target.host, str(target.port),
                          "--source", network["intruder_address"])
    assessor = from_netns(None, "connect", target.host, str(target.port))
    evidence.json("reachability", {"intruder": {"address": network["intruder_address"], **intruder.__dict__},
                                   "allowlisted": {"address": network.get("assessor_address"),
                                                   **assessor.__dict__},
                                   "allowlist": network.get("allowlisted_cidrs")})
    assert assessor.ok, f"the allowlisted assessor cannot reach {target.host}:{target.port} ({assessor.said})"
    assert not intruder.ok, (f"{network['intruder_address']} (not allowlisted) reached the database port "
                             f"{target.host}:{target.port}: the firewall does not restrict it")


def test_only_expected_ports_listen(host, host_netns_argv, network, evidence):
    result = host.run(" ".join([*host_netns_argv, "ss", "-H", "-ltn"]))
    assert result.rc == 0, f"cannot list listening sockets: {result.stderr.strip()}"
    listening = sorted({int(line.split()[3].rsplit(":", 1)[1]) for line in result.stdout.splitlines() if line.strip()})
    expected = sorted(network.get("listen_ports", []))
    evidence.json("listening", {"tcp": listening, "expected": expected})
    unexpected = [p for p in listening if p not in expected]
    assert not unexpected, f"unexpected listening TCP ports on the database host: {unexpected} (expected {expected})"


