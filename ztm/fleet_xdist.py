"""xdist scheduling of a fleet: every test of one target on one worker.

A process can hold only one configuration of a PKCS#11 module (SoftHSM reads SOFTHSM2_CONF
once), and each target's session fixtures (connections, preflight, host) are best set up once:
so a fleet run gets at least one xdist worker per target and the tests of a target are one
scope of xdist's ``loadscope`` scheduling, told apart by the target name that leads the test id.
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadScopeScheduling


class TargetScheduling(LoadScopeScheduling):
    def __init__(self, config: Any, log: Any = None, names: list[str] | None = None) -> None:
        super().__init__(config, log)
        self.names = sorted(names or [], key=len, reverse=True)  # "db-2" before "db"

    def _split_scope(self, nodeid: str) -> str:
        params = nodeid.rpartition("::")[2].partition("[")[2]
        for name in self.names:
            if params == f"{name}]" or params.startswith(f"{name}-"):
                return name
        return super()._split_scope(nodeid)  # a test that does not use the target
