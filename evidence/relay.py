"""What an xdist worker hands to the controller's bundle writer.

The target identity (read by the worker's fixtures, server version included) and the values
registered with ``keep_out_of_bundle`` exist only in the worker process. They travel in
``workeroutput`` (execnet, in memory) when the worker finishes and are received in
``pytest_testnodedown`` on the controller.
"""

from __future__ import annotations

from typing import Any

import pytest

from ztm.keep_out import kept_out
from ztm.plugin import targets_info

WORKER_KEY = "ztm_evidence"


class WorkerRelay:
    """Registered on xdist workers of a bundle run."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        # Runs inside xdist's own sessionfinish wrapper, before it sends workeroutput.
        self.config.workeroutput[WORKER_KEY] = {  # type: ignore[attr-defined]
            "targets": targets_info(self.config),
            "kept_out": sorted(kept_out(self.config)),
        }


def received(node: Any) -> dict[str, Any]:
    """What one finished worker sent ({} if it crashed or sent nothing)."""
    return dict(getattr(node, "workeroutput", {}).get(WORKER_KEY) or {})
