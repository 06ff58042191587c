"""The stock-server lane (issue 14) on MySQL: the lab's MySQL binaries (Debian's
mysql-server-core in the cached rootfs) with MySQL's own defaults, a datadir made by
--initialize-insecure as a fresh install does, loopback only, on a free port, assessed with
the smallest target file (one login role plus admin). Every control must fail or be not
assessed with a reason, never pass, never error, never show a driver traceback; the
verdicts are compared with tests/stock/expected-mysql.toml."""

from __future__ import annotations

import pytest

from tests.stock.stock_server import HERE, assess, check, minimal_target, require_stock_lane, stock_mysql

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def stock_target():
    require_stock_lane("mysql")
    with stock_mysql() as server:
        yield minimal_target(server)


def test_stock_mysql_gets_a_reason_for_every_control_and_no_traceback(stock_target, tmp_path):
    assessment = assess(stock_target, tmp_path / "junit.xml")
    check(assessment, HERE / "expected-mysql.toml")
    assert "passed" not in assessment.verdicts.values(), "a stock server passed a control"
    assert "a plaintext (non-TLS) login as ztm_probe was accepted" in assessment.report, assessment.report[-4000:]
