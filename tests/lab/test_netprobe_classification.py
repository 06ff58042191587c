"""How ztm.netprobe classifies what a firewall does, shown with real nftables rules in the
lab's database namespace and probes from the intruder namespace (see ztm/netprobe.py).

A REJECT (TCP reset, ICMP port-unreachable, ICMP admin-prohibited) and a DROP (silence) are
"blocked"; an ICMP host-unreachable, an absent host, a missing namespace, source address or
tool are "could not run", never "blocked". Each rule sits in its own table, on a port no
control uses, and is removed afterwards.
"""

from __future__ import annotations

import subprocess

import pytest

from provision import netns
from ztm.netprobe import BLOCKED, COULD_NOT_RUN, REACHABLE, run_from

pytestmark = pytest.mark.lab

TABLE = "ztm_probe_classification"
PORT = 4444  # nothing listens here; the firewall lets it through only via the rule under test
UNUSED_ADDRESS = str(netns.SUBNET.network_address + 99)  # in the lab subnet, on no interface


def nft(*args: str) -> None:
    subprocess.run(netns.in_netns(netns.DB.netns, ["nft", *args]), check=True, capture_output=True, text=True)


@pytest.fixture
def rule(lab):
    """``rule("reject with tcp reset")``: applied to PORT from the intruder, ahead of the
    lab firewall (a lower priority number runs first); the table is deleted afterwards."""

    def apply(verdict: str) -> None:
        nft("add", "table", "inet", TABLE)
        nft("add", "chain", "inet", TABLE, "input", "{ type filter hook input priority -10; policy accept; }")
        nft("add", "rule", "inet", TABLE, "input", "ip", "saddr", netns.INTRUDER.address, "tcp", "dport", str(PORT),
            *verdict.split())

    yield apply
    subprocess.run(netns.in_netns(netns.DB.netns, ["nft", "delete", "table", "inet", TABLE]), capture_output=True)


def probe(port: int = PORT, host: str = netns.DB.address, source: str = netns.INTRUDER.address,
          namespace: str = netns.INTRUDER.netns, **kw):
    return run_from(namespace, "connect", host, str(port), "--source", source, **kw)


@pytest.mark.parametrize(("verdict", "how", "said"), [
    ("reject with tcp reset", "tcp-reset", "TCP reset"),
    ("reject", "icmp-3", "port unreachable from " + netns.DB.address),
    ("reject with icmp type admin-prohibited", "icmp-13", "administratively prohibited from " + netns.DB.address),
    ("drop", "timeout", "no answer within"),
])
def test_firewall_rejects_and_drops_count_as_blocked(rule, verdict, how, said):
    rule(verdict)
    seen = probe()
    assert (seen.verdict, seen.how) == (BLOCKED, how), seen
    assert said in seen.said


def test_icmp_host_unreachable_from_the_target_is_could_not_run(rule):
    """The target itself says "host unreachable": that message means "no path", and a
    firewall using it cannot be told from an absent host, so it is no proof of a denial."""
    rule("reject with icmp type host-unreachable")
    seen = probe()
    assert (seen.verdict, seen.how) == (COULD_NOT_RUN, "icmp-1"), seen
    assert "host unreachable" in seen.said


def test_absent_host_is_could_not_run_not_a_silent_drop(lab):
    """No one answers ARP for the address: the kernel reports host unreachable after about
    3 s, well inside the probe's timeout, so the silence is not taken for a firewall DROP."""
    seen = probe(3306, host=UNUSED_ADDRESS)
    assert (seen.verdict, seen.how) == (COULD_NOT_RUN, "icmp-1"), seen


def test_missing_namespace_source_address_or_tool_is_could_not_run(lab):
    missing_ns = probe(namespace=f"{netns.INTRUDER.netns}-absent")
    assert missing_ns.verdict == COULD_NOT_RUN and "could not run" in missing_ns.said, missing_ns
    foreign_source = probe(source=netns.LOG.address)  # the log host's address is not in the intruder namespace
    assert (foreign_source.verdict, foreign_source.how) == (COULD_NOT_RUN, "bind"), foreign_source
    no_tool = probe(python="/nonexistent/python3")
    assert no_tool.verdict == COULD_NOT_RUN and "No such file" in no_tool.said, no_tool
    bad_usage = run_from(netns.INTRUDER.netns, "connect", netns.DB.address, "not-a-port")
    assert bad_usage.verdict == COULD_NOT_RUN, bad_usage


def test_allowlisted_source_reaches_the_server(lab):
    seen = run_from(None, "connect", netns.DB.address, "3306")
    assert (seen.verdict, seen.how) == (REACHABLE, "connected"), seen
