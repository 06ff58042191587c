"""Failure reports of a bundle run carry no argument values and no locals.

pytest's long tracebacks print the values of a test's arguments (its fixtures) and, with
``--showlocals``, every local: a fixture holding a key, a password or PII would be written
into junit.xml and report.html. The source lines and the assertion message stay; the
bundle's secret scan redacts known values that an assertion message still shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from evidence.scan import PEM_BLOCK, REDACTED, REDACTED_KEY, _forms, usable
from ztm.keep_out import kept_out


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


def mask_text(text: str, needles: list[str]) -> str:
    """``text`` with every PEM private key and every known secret (plain, hex or base64) masked."""
    if "PRIVATE KEY" in text:
        text = PEM_BLOCK.sub(REDACTED_KEY, text.encode()).decode(errors="replace")
    for needle in usable(needles):
        for _, form in _forms(needle):
            text = text.replace(form.decode(), REDACTED.decode())
    return text


def mask_longrepr(longrepr: Any, needles: list[str]) -> Any:
    """A failure or skip representation with known secrets masked in every line pytest prints of it
    (the message, the source lines, a native traceback); returns the (possibly new) longrepr."""
    if isinstance(longrepr, str):
        return mask_text(longrepr, needles)
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
        return (longrepr[0], longrepr[1], mask_text(str(longrepr[2]), needles))
    chain = getattr(longrepr, "chain", None)
    parts = list(chain) if chain else [(getattr(longrepr, "reprtraceback", None),
                                        getattr(longrepr, "reprcrash", None), None)]
    for traceback, crash, _ in parts:  # ExceptionChainRepr.reprcrash is the last part's crash
        if crash is not None and getattr(crash, "message", None):
            crash.message = mask_text(crash.message, needles)
        for entry in getattr(traceback, "reprentries", None) or []:
            entry.lines = [mask_text(line, needles) for line in getattr(entry, "lines", [])]
            funcargs = getattr(entry, "reprfuncargs", None)  # --tb=long shows each argument's value
            if funcargs is not None:
                funcargs.args = [(name, mask_text(str(value), needles)) for name, value in funcargs.args]
            location = getattr(entry, "reprfileloc", None)
            if location is not None and location.message:
                location.message = mask_text(location.message, needles)
    return longrepr


class SecretMask:
    """Known secrets (the target's passwords, PINs and private keys, and what tests registered with
    ``keep_out_of_bundle``) masked in every report where it is made, so neither pytest's terminal
    output, junit, report.html nor the control summary ever prints one, bundle or not."""

    def __init__(self, config: pytest.Config, secrets_of_targets: Callable[[], list[str]]) -> None:
        self.config = config
        self._secrets_of_targets = secrets_of_targets
        self._target_secrets: list[str] | None = None

    def needles(self) -> list[str]:
        if self._target_secrets is None:  # read once, on the first report (the target files exist by then)
            self._target_secrets = self._secrets_of_targets()
        return [*self._target_secrets, *kept_out(self.config)]

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):
        report: pytest.TestReport = yield
        if report.longrepr is not None or report.sections:
            needles = self.needles()
            report.longrepr = mask_longrepr(report.longrepr, needles)
            report.sections = [(title, mask_text(content, needles)) for title, content in report.sections]
        return report
