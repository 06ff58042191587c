"""On a correctly built lab, every control of the suite passes, and the evidence bundle of
that run verifies against the lab CA and carries none of the lab's secrets."""

import pytest

from evidence.scan import find_secrets
from evidence.verify import verify_bundle

pytestmark = pytest.mark.lab


def test_control_suite_passes_on_hardened_lab_and_its_bundle_is_clean(lab, control, tmp_path):
    bundle = tmp_path / "bundle.tar.gz"
    run = control(extra=("--evidence-out", str(bundle)))
    run.assert_all_passed()
    assert run.exit_code == 0, run.output[-2000:]
    verified = verify_bundle(bundle, ca=lab.pki.evidence_ca_cert, crl=lab.pki.evidence_crl)
    assert verified.ok, verified.problems
    secrets = [p.read_text().strip() for p in sorted(lab.secrets.glob("*.password"))]
    assert len(secrets) >= 5 and all(len(s) >= 16 for s in secrets)  # database accounts and KMS PINs
    assert find_secrets(bundle, secrets) == []
