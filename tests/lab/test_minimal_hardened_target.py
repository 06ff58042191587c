"""The stock lane's other half (issue 14): a hardened server assessed with a minimal target file
(transport, configuration and host only: [target], [tls], [host], the admin and the probe; a
database without the data plane) gets passes where it should, and every data-plane control is
not assessed naming what is missing. No pytest error, no driver traceback; the verdicts are
compared with tests/stock/expected-minimal-hardened.toml."""

from __future__ import annotations

import pytest

from tests.stock.stock_server import HERE, assess, check, minimal_hardened_target

pytestmark = pytest.mark.lab

EMPTY_DATABASE = "ztm_minimal"  # exists, holds nothing of the data plane


@pytest.fixture(scope="module")
def minimal_target(lab, tmp_path_factory):
    with lab.admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {EMPTY_DATABASE}")
    try:
        yield minimal_hardened_target(lab.target_file, tmp_path_factory.mktemp("minimal") / "target.toml",
                                      EMPTY_DATABASE)
    finally:
        with lab.admin() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {EMPTY_DATABASE}")


def test_minimal_hardened_target_passes_transport_config_and_host(minimal_target, tmp_path):
    assessment = assess(minimal_target, tmp_path / "junit.xml")
    check(assessment, HERE / "expected-minimal-hardened.toml")
    for missing in ("holds no data plane", "[roles.app]", "[crypto]", "[anchor]"):
        assert missing in assessment.report, f"no control said why it was not assessed ({missing}):\n" \
                                             f"{assessment.report[-3000:]}"
