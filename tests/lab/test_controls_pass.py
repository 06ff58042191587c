"""On a correctly built lab, every control of the suite passes."""

import pytest

pytestmark = pytest.mark.lab


def test_control_suite_passes_on_hardened_lab(control):
    run = control()
    run.assert_all_passed()
    assert run.exit_code == 0, run.output[-2000:]
