"""ZTM-NET-2: brute-force throttling (fail2ban) proven by behaviour.

fail2ban is asked through testinfra on the database host (``fail2ban-client``), so the same
checks run on the lab and on a VM. Configuration: the jail answers, watches the file the
server writes its log to, and the server does log failed logins. Behaviour: from the
intruder's *allowlisted* address (the firewall lets it reach the port), N wrong logins are
sent, N being the jail's maxretry; within the jail's window the address must be banned
(fail2ban lists it and a TCP probe from it is refused), while another allowlisted client
keeps reaching the server. The ban is lifted afterwards. When no ban comes, the server log
and the jail's logs are compared to say why (fail2ban blind to the log, or nothing logged).
"""

from __future__ import annotations

import time

import pytest

from ztm.netprobe import BLOCKED, COULD_NOT_RUN
from ztm.resources.fail2ban import (
    DEFAULT_SOCKET,
    Fail2banJail,
    ServerLog,
    failed_logins_since,
    realpath,
    server_log,
    size,
)

pytestmark = pytest.mark.control("ZTM-NET-2")


@pytest.fixture(scope="module")
def jail(db_host, target, policy) -> Fail2banJail:
    facts = target.section("host")
    return Fail2banJail(db_host, facts.get("fail2ban_socket", DEFAULT_SOCKET),
                        facts.get("fail2ban_jail", policy.bruteforce["jail"]))


@pytest.fixture(scope="module")
def the_server_log(admin, db_host, target) -> ServerLog:
    return server_log(admin, db_host, target.dialect)


def _require_answer(jail: Fail2banJail) -> None:
    error = jail.status_error
    assert error is None, (f"fail2ban does not answer for jail {jail.name} on the database host "
                           f"(socket {jail.socket}): {error}")


def test_jail_watches_the_server_log(jail, the_server_log, db_host, evidence):
    _require_answer(jail)
    server_log = the_server_log
    watched = {p: realpath(db_host, p) for p in jail.logpaths}
    missing = [p for p in watched if not db_host.file(p).exists]
    evidence.json("jail-logs", {"jail": jail.name, "watched": list(watched), "server_log": server_log.path,
                                server_log.variable: server_log.value})
    assert server_log.logs_failed_logins, (
        f"the server does not log failed logins ({server_log.variable} = {server_log.value}, needs "
        f">= {server_log.needed}): fail2ban has nothing to read")
    assert not missing, f"jail {jail.name} watches log files that do not exist on the host: {', '.join(missing)}"
    if server_log.path is not None:
        assert server_log.path in watched.values(), (
            f"fail2ban is blind to the server log: jail {jail.name} watches {', '.join(watched) or 'nothing'}, "
            f"but the server writes its log to {server_log.path}")


def _poll(probe, until, wait: float):
    """Probe until ``until(verdict)`` or the deadline: fail2ban lists a ban before its action
    has run (and lifts it before the rule is gone), so the firewall's state lags the list."""
    deadline = time.monotonic() + wait
    seen = probe()
    while not until(seen) and time.monotonic() < deadline:
        time.sleep(1.0)
        seen = probe()
    return seen


@pytest.fixture
def lift_ban(jail, network, target, policy, from_netns):
    """Lift the ban afterwards and show the address gets through again (the next run needs it)."""
    source, netns = network.get("intruder_allowlisted_address"), network.get("intruder_netns")
    yield
    if not source or not netns or source not in jail.banned:
        return
    jail.unban(source)
    assert source not in jail.banned, f"could not lift the ban of {source} in jail {jail.name}"
    again = _poll(lambda: from_netns(netns, "connect", target.host, str(target.port), "--source", source),
                  lambda v: v.ok, policy.bruteforce["settle_seconds"])
    assert again.ok, f"the ban of {source} was lifted in fail2ban, but it still cannot reach the server ({again.said})"


def test_repeated_failed_logins_get_the_source_banned(target, network, policy, jail, the_server_log, db_host,
                                                      from_netns, lift_ban, evidence):
    _require_answer(jail)
    server_log = the_server_log
    source, netns = network.get("intruder_allowlisted_address"), network.get("intruder_netns")
    if not source or not netns:
        pytest.skip("the target names no allowlisted intruder ([network].intruder_netns and "
                    "intruder_allowlisted_address): without a client the firewall lets through, brute-force "
                    "throttling cannot be exercised")
    maxretry, findtime = jail.setting("maxretry", 5), jail.setting("findtime", 600)
    before = from_netns(netns, "connect", target.host, str(target.port), "--source", source)
    assert before.verdict != COULD_NOT_RUN, f"the intruder probe could not run: {before.said}"
    assert before.ok, (f"{source} cannot reach the server before the test ({before.said}; banned now: "
                       f"{jail.banned}): no baseline")
    logs = sorted({*jail.logpaths, *([server_log.path] if server_log.path else [])})
    offsets = {p: size(db_host, p) for p in logs}
    attempts = from_netns(netns, "bad-logins", target.host, str(target.port), str(maxretry), "--source", source)
    assert attempts.verdict != COULD_NOT_RUN, f"the failed-login probe could not run: {attempts.said}"
    wait = max(policy.bruteforce["min_wait_seconds"], float(findtime))
    deadline, banned = time.monotonic() + wait, False
    while not banned and time.monotonic() < deadline:
        banned = source in jail.banned
        if not banned:
            time.sleep(1.0)
    seen = {p: failed_logins_since(db_host, p, offsets[p], source) for p in logs}
    after = _poll(lambda: from_netns(netns, "connect", target.host, str(target.port), "--source", source),
                  lambda v: not banned or not v.ok, policy.bruteforce["settle_seconds"])
    other_netns = network.get("other_client_netns")
    other = from_netns(other_netns, "connect", target.host, str(target.port))
    evidence.json("ban", {"jail": jail.name, "maxretry": maxretry, "findtime": findtime, "source": source,
                          "attempts": attempts.said, "listed_as_banned": banned, "failed_logins_logged": seen,
                          "probe_after": after.__dict__, "other_allowlisted_client": other.__dict__})
    assert banned, _why_not_banned(jail, server_log, seen, source, maxretry, wait)
    assert after.verdict != COULD_NOT_RUN, f"the probe after the ban could not run: {after.said}"
    assert after.verdict == BLOCKED, f"{source} is listed as banned but still reaches the database port ({after.said})"
    assert other.ok, f"banning {source} also cut off another allowlisted client ({other.said})"


def _why_not_banned(jail: Fail2banJail, server_log: ServerLog, seen: dict[str, int], source: str, maxretry: int,
                    wait: float) -> str:
    head = f"{maxretry} failed logins from {source} did not get it banned by jail {jail.name} within {wait:.0f} s"
    watched = set(jail.logpaths)
    read = {p: n for p, n in seen.items() if p in watched and n}
    if read:
        return f"{head}, although they reached the jail's log ({read}): check the jail's filter and maxretry"
    if server_log.path and seen.get(server_log.path):
        return (f"{head}: fail2ban is blind to the server log: the server wrote {seen[server_log.path]} failed "
                f"logins to {server_log.path}, but the jail watches {', '.join(sorted(watched)) or 'nothing'}")
    return (f"{head}: the failed logins were not written to any log the jail watches "
            f"({', '.join(sorted(watched)) or 'none'}); the server log was not written "
            f"({server_log.variable} = {server_log.value}, needs >= {server_log.needed})")
