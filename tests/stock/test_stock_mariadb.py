"""The stock-server lane (issue 14): a stock Debian MariaDB, started here as a process (its
own datadir, socket and port in a temp folder, loopback only, Debian's defaults otherwise),
assessed with the smallest target file (one login role plus admin). Every control must fail
or be not assessed with a reason, never pass silently, never error, never show a driver
traceback; the verdicts are compared with tests/stock/expected-mariadb.toml."""

from __future__ import annotations

import pytest

from tests.stock.stock_server import HERE, assess, check, minimal_target, require_stock_lane, stock_mariadb

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def stock_target():
    require_stock_lane("mariadb", "mariadbd")
    with stock_mariadb() as server:
        yield minimal_target(server)


def test_stock_mariadb_gets_a_reason_for_every_control_and_no_traceback(stock_target, tmp_path):
    assessment = assess(stock_target, tmp_path / "junit.xml")
    check(assessment, HERE / "expected-mariadb.toml")
    assert "passed" not in assessment.verdicts.values(), "a stock server passed a control"
    # TLS-2 names the plaintext login it saw, although the server offers no TLS and no CA is named.
    assert ("a plaintext (non-TLS) login as ztm_probe was accepted: the server does not require secure transport "
            "(and it offers no TLS at all)") in assessment.report, assessment.report[-4000:]
