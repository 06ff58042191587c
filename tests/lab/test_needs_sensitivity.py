"""A control needing a role that the preflight saw refused fails with one sentence naming the
role and the refusal (ztm/needs.py), before any of its fixtures touches the server: never a
pytest error or a driver traceback per test (issue 14)."""

import pytest

from provision.netns import ACCOUNT_HOST

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]

AUDITOR = f"'auditor'@'{ACCOUNT_HOST}'"


def test_a_locked_auditor_fails_the_controls_that_read_as_it(admin_change, control):
    with admin_change([f"ALTER USER {AUDITOR} ACCOUNT LOCK"], [f"ALTER USER {AUDITOR} ACCOUNT UNLOCK"]):
        run = control("ZTM-AUD-2", "ZTM-AUD-4")
    for test in ("test_payload_follows_the_documented_format", "test_data_equals_the_replay_of_its_trail"):
        message = run.assert_failed(test, "the auditor role (auditor) cannot log in: refused (error")
        assert "pymysql" not in message and "Traceback" not in message, message
    assert not [t for t in run.tests.values() if t.outcome == "error"], run.output[-3000:]
