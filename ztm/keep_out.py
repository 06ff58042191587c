"""Values a test makes that must never reach an evidence bundle (PII sentinels, unwrapped
keys). Tests register them here; the evidence plugin reads them and redacts any it finds."""

from __future__ import annotations

import pytest

KEPT_OUT = pytest.StashKey[set[str]]()


def keep_out_of_bundle(config: pytest.Config, *values: str) -> None:
    """Register values that must not appear in the evidence bundle; the writer redacts any it finds.

    Call it where a test makes such a value, e.g. ``keep_out_of_bundle(request.config, pii["email"])``.
    Under xdist the values travel to the controller with the worker's output, never to a file.
    """
    config.stash.setdefault(KEPT_OUT, set()).update(v for v in values if v)


def kept_out(config: pytest.Config) -> set[str]:
    return set(config.stash.get(KEPT_OUT, set()))
