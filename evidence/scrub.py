"""Failure reports of a bundle run carry no argument values and no locals.

pytest's long tracebacks print the values of a test's arguments (its fixtures) and, with
``--showlocals``, every local: a fixture holding a key, a password or PII would be written
into junit.xml and report.html. The source lines and the assertion message stay; the
bundle's secret scan redacts known values that an assertion message still shows.
"""

from __future__ import annotations

from typing import Any

import pytest


def scrub(longrepr: Any) -> None:
    """Drop argument values and locals from every traceback entry of a failure representation."""
    chain = getattr(longrepr, "chain", None)
    tracebacks = [tb for tb, _, _ in chain] if chain else [getattr(longrepr, "reprtraceback", None)]
    for traceback in tracebacks:
        for entry in getattr(traceback, "reprentries", None) or []:
            if hasattr(entry, "reprfuncargs"):
                entry.reprfuncargs = None
            if hasattr(entry, "reprlocals"):
                entry.reprlocals = None


class FailureScrubber:
    """Registered in every process of a bundle run (the reports are made where tests run)."""

    def __init__(self, config: pytest.Config) -> None:
        config.option.showlocals = False  # passed on to xdist workers with the other options

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        report: pytest.TestReport = yield
        scrub(report.longrepr)
        return report

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_make_collect_report(self, collector: pytest.Collector):
        report: pytest.CollectReport = yield
        scrub(report.longrepr)
        return report
