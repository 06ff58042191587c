"""What a control test needs from the target, and the one sentence when it lacks it (issue 14).

A test declares its needs with ``@pytest.mark.needs(...)`` (``{param}`` is filled from its
parameters: ``needs("login.{role}")``) and through the fixtures it uses (FIXTURE_NEEDS).
``unmet`` judges them against the target file and the preflight facts (ztm.preflight) before
any fixture touches the server, so one missing prerequisite is one sentence per test, never
a cascade of driver errors:

- ``roles.X``, ``tls.ca``, ``host``, ``tenants``, any ``section[.key]``: the target file names
  it, else *not assessed*; ``host`` also needs the host reachable, else *failed* naming it;
- ``server``: a MySQL server answers at the target address, else *failed*;
- ``tls``: the server offers TLS, else *failed* (a zero-trust server must);
- ``login.X``: role X is named and preflight saw it log in, else *failed* (refused, or no TLS
  for a role that logs in over TCP) or *not assessed* (the login could not be tried);
- ``data_plane``: the data plane is in the target database (*not assessed* when absent,
  *failed* when incomplete).

Every need but the target-file ones implies ``server``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from ztm.preflight import Facts, data_plane_problem
from ztm.target import MissingInput, Target

# Fixtures that reach the server (or the host) and what using one needs.
FIXTURE_NEEDS: dict[str, tuple[str, ...]] = {
    "admin": ("login.admin",),
    "accounts": ("login.admin",),
    "account_of": ("login.admin",),
    "connect": ("server",),
    "session": ("server",),
    "tls_probe": ("tls",),
    "data_plane": ("data_plane",),
    "db_host": ("host",),
}
SERVER_NEEDS = ("server", "tls", "data_plane")

Verdict = tuple[Literal["skip", "fail"], str]


class Unmet(Exception):
    """A prerequisite the target does not meet, found by a fixture (the admin path refused, the
    host unreachable): the test *fails* with this sentence (ztm.plugin reports it as the test's
    failure, even when a fixture raised it while setting up)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return self.reason


def declared(markers: Iterable[tuple[str, ...]], fixturenames: Iterable[str], params: dict[str, object]) -> list[str]:
    """The needs of a test: its ``needs`` markers (parameters filled in) and its fixtures'."""
    needs = [str(n).format(**params) if "{" in str(n) else str(n) for args in markers for n in args]
    for name in fixturenames:
        needs.extend(FIXTURE_NEEDS.get(name, ()))
    return list(dict.fromkeys(needs))


def missing_inputs(target: Target, needs: Iterable[str]) -> list[str]:
    """The inputs of ``needs`` ('roles.app', 'tls.ca', 'host', 'tenants', ...) the target file lacks
    (a ``login.X`` need lacks ``roles.X`` when the target names no such role)."""
    missing = []
    for need in needs:
        if need in SERVER_NEEDS:
            continue
        section, _, key = need.partition(".")
        if section in ("roles", "login"):
            present, need = key in target.roles, f"roles.{key}"
        elif need == "tls.ca":
            present = target.ca is not None
        else:
            value = target.section(section)
            present = bool(value) and (not key or key in value)
        if not present and need not in missing:
            missing.append(need)
    return missing


def need_reason(target: Target, need: str) -> str:
    """Why a missing input leaves a test not assessed (without the 'not assessed: ' prefix)."""
    try:
        if need.startswith("roles."):
            target.role(need.removeprefix("roles."))
        elif need == "tls.ca":
            target.need_ca()
    except MissingInput as exc:
        return exc.reason.removeprefix("not assessed: ")
    if need == "host":
        return ("the target has no [host] section, so there is no database host to examine (host checks never "
                "run on the assessor's machine unless [host].spec says local://)")
    return f"the target names no [{need}]"


def unmet(target: Target, facts: Facts, needs: list[str]) -> Verdict | None:
    """("skip", sentence) or ("fail", sentence) for the first need the target does not meet."""
    missing = missing_inputs(target, needs)
    if missing:
        return "skip", "not assessed: " + "; ".join(need_reason(target, need) for need in missing)
    if "host" in needs and facts.host != "ok" and not facts.host.startswith("not "):
        return "fail", facts.host  # the database host could not be reached: each host test says so
    logins = [n.removeprefix("login.") for n in needs if n.startswith("login.")]
    # A role that logs in over the socket does not need TCP (its own login fact says if it works).
    over_tcp = any(n in SERVER_NEEDS for n in needs) or any(target.roles[r].socket is None for r in logins)
    if over_tcp and not facts.reachable:
        return "fail", f"{facts.tcp}; nothing on the database server could be examined"
    if "tls" in needs and facts.tls_offered is False:
        return "fail", (f"the server at {target.host}:{target.port} offers no TLS (its greeting lacks the SSL "
                        "capability): every login and all data cross the network in plaintext")
    plane = data_plane_problem(facts, target.database) if "data_plane" in needs else None
    if plane and facts.data_plane_missing is not None:
        return plane  # nothing (or not all) to probe comes before who could probe it
    for role in logins:
        problem = login_problem(target, facts, role)
        if problem:
            return problem
    return plane  # not examined (e.g. the admin path could not log in): not assessed


def login_problem(target: Target, facts: Facts, role: str) -> Verdict | None:
    """Why role ``role`` cannot be used, from preflight's login fact (None: it logged in)."""
    fact = facts.logins.get(role, "not tried")
    if fact == "ok":
        return None
    identity = target.roles[role]
    who = f"the {role} role ({identity.user})"
    if identity.socket is None and facts.tls_offered is False:
        return "fail", (f"{who} cannot log in: the server at {target.host}:{target.port} offers no TLS, and the "
                        "suite logs in over TLS only")
    if fact.startswith("not tried: "):
        why = fact.removeprefix("not tried: ").removeprefix("not assessed: ")
        return "skip", f"not assessed: {who} could not be tried: {why}"
    return "fail", f"{who} cannot log in: {fact}"
