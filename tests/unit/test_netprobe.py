"""ztm.netprobe on loopback (no lab needed): verdicts, exit codes and the JSON line."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from ztm.netprobe import BLOCKED, COULD_NOT_RUN, REACHABLE, connect, main, run_from


@contextmanager
def _closed_port() -> Iterator[int]:
    """A port bound but never listening (the kernel answers a SYN with a reset); held while
    in use, so no other process can start listening on it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_listening_port_is_reachable_and_a_closed_one_blocked_by_reset():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert connect("127.0.0.1", port).verdict == REACHABLE
        assert run_from(None, "connect", "127.0.0.1", str(port)).verdict == REACHABLE
    with _closed_port() as port:
        closed = connect("127.0.0.1", port)
    assert (closed.verdict, closed.how) == (BLOCKED, "tcp-reset")


def test_source_address_not_configured_here_could_not_run():
    seen = connect("127.0.0.1", 9, source="192.0.2.1")  # TEST-NET-1: on no interface; no packet is sent
    assert (seen.verdict, seen.how) == (COULD_NOT_RUN, "bind")


def test_exit_codes_follow_the_verdict(capsys):
    with socket.create_server(("127.0.0.1", 0)) as server:
        assert main(["connect", "127.0.0.1", str(server.getsockname()[1])]) == 0
    with _closed_port() as port:
        assert main(["connect", "127.0.0.1", str(port)]) == 1
    assert main(["connect", "127.0.0.1", "9", "--source", "192.0.2.1"]) == 2
    assert '"verdict": "could not run"' in capsys.readouterr().out


def test_probe_that_cannot_start_or_is_misused_could_not_run():
    assert run_from(None, "connect", "127.0.0.1", "1", python="/nonexistent/python3").verdict == COULD_NOT_RUN
    misused = run_from(None, "connect", "127.0.0.1", "not-a-port")
    assert misused.verdict == COULD_NOT_RUN and "invalid int value" in misused.said


def test_drop_counter_is_read_per_source_from_nft_json():
    from ztm.netprobe import DROP_SET, dropped_packets

    ruleset = {"nftables": [{"metainfo": {"version": "1.0.6"}},
                            {"set": {"family": "inet", "name": DROP_SET, "table": "ztm_filter", "type": "ipv4_addr",
                                     "elem": [{"elem": {"val": "10.77.3.66", "counter": {"packets": 3, "bytes": 180}}},
                                              {"elem": {"val": "10.77.3.67", "counter": {"packets": 9}}}]}}]}
    assert dropped_packets(ruleset, "10.77.3.66") == 3
    assert dropped_packets(ruleset, "10.77.3.99") == 0  # the set exists, no packet from that source yet
    assert dropped_packets({"nftables": [{"set": {"name": "db_allowlist"}}]}, "10.77.3.66") is None
    assert dropped_packets({}, "10.77.3.66") is None


def test_the_firewall_counts_policy_drops_to_the_database_port_per_source():
    from provision.firewall import nftables_ruleset
    from ztm.netprobe import DROP_SET

    ruleset = nftables_ruleset(["10.77.0.0/28"], db_port=3306)
    lines = [line.strip() for line in ruleset.splitlines()]
    assert f"set {DROP_SET} {{" in lines and "counter" in lines
    update = lines.index(f'tcp dport 3306 update @{DROP_SET} {{ ip saddr }} comment "database port, dropped by policy"')
    assert lines[update + 1].startswith("counter"), "the per-source count must be the last rule before the policy"
    assert update > lines.index('ip saddr @db_allowlist tcp dport 3306 accept comment "database, allowlisted clients"')
