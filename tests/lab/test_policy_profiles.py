"""The policy decides the verdicts: the same lab judged under other profiles, and under a target
that tailors one value, fails (or passes) exactly where the policy says, and says why."""

from pathlib import Path

import pytest

from tests.control_runner import ControlRun, run_control
from ztm.policy import load_policy

pytestmark = [pytest.mark.lab, pytest.mark.sensitivity]

CHACHA20 = "TLS_CHACHA20_POLY1305_SHA256"


def _target_under(lab, tmp_path: Path, policy: str) -> Path:
    """The lab's own target file with a [policy] section appended (the lab writes none)."""
    text = lab.target_file.read_text()
    assert "[policy" not in text, "the lab's target already carries a policy"
    path = tmp_path / "target.toml"
    path.write_text(text + "\n[policy]\n" + policy)
    return path


def _verdicts(run: ControlRun) -> dict[str, str]:
    """Test (without its parameters, e.g. testinfra's '[local]') -> outcome, a failure winning."""
    verdicts: dict[str, str] = {}
    for name, test in run.tests.items():
        base = name.split("[")[0]
        if verdicts.get(base) not in ("failed", "error"):
            verdicts[base] = test.outcome
    return verdicts


def test_default_lab_under_nist_800_52r2_fails_tls1_naming_chacha20(lab, tmp_path):
    run = run_control(_target_under(lab, tmp_path, 'profile = "nist-800-52r2"\n'), "ZTM-TLS-1")
    message = run.assert_failed("test_only_approved_suites_are_accepted", "policy nist-800-52r2",
                                f"unapproved cipher suites accepted: {CHACHA20}")
    assert "TLS_AES_256_GCM_SHA384;" not in message.split("only")[0], "an approved suite was named as unapproved"
    # SP 800-52r2 requires TLS 1.2 too, which the zero-trust lab refuses.
    run.assert_failed("test_only_allowed_protocol_versions_are_accepted", "TLSv1.2")
    # Its P-256 key is strong enough for SP 800-57: that test passes, so the failures above are the policy's.
    assert run.outcome("test_server_certificate_is_valid_for_the_target").outcome == "passed"


def test_default_lab_under_cnsa_fails_naming_chacha20_and_the_p256_key(lab, tmp_path):
    run = run_control(_target_under(lab, tmp_path, 'profile = "cnsa"\n'), "ZTM-TLS-1")
    run.assert_failed("test_only_approved_suites_are_accepted", "policy cnsa", f"unapproved cipher suites accepted: "
                      f"{CHACHA20}; only TLS_AES_256_GCM_SHA384 may be negotiated")
    run.assert_failed("test_server_certificate_is_valid_for_the_target", "EC secp256r1 (P-256) is not allowed",
                      "EC over P-384")
    assert run.outcome("test_only_allowed_protocol_versions_are_accepted").outcome == "passed"


def test_the_same_lab_passes_tls1_under_zero_trust(lab, tmp_path):
    """The baseline of the two tests above: the explicit default profile passes."""
    run_control(_target_under(lab, tmp_path, 'profile = "zero-trust"\n'), "ZTM-TLS-1").assert_all_passed()


def test_allowing_one_more_port_changes_exactly_that_verdict(lab, tmp_path, stray_listener):
    default = run_control(lab.target_file, "ZTM-NET-1")
    default.assert_failed("test_only_expected_ports_listen", "unexpected listening ports", "tcp/5555")
    allowed = load_policy().network["allowed_listen_ports"]
    tailored = run_control(_target_under(lab, tmp_path, "[policy.network]\nallowed_listen_ports = "
                                         f"{[*allowed, 'tcp/5555']!r}\n".replace("'", '"')), "ZTM-NET-1")
    assert tailored.outcome("test_only_expected_ports_listen").outcome == "passed", tailored.output[-2000:]
    changed = {name for name, outcome in _verdicts(tailored).items() if _verdicts(default).get(name) != outcome}
    assert changed == {"test_only_expected_ports_listen"}, (_verdicts(default), _verdicts(tailored))


def test_requiring_one_other_variable_value_changes_exactly_that_verdict(lab, tmp_path):
    """event_scheduler = OFF in the policy: the hardened lab (ON) now fails CFG-1 on that variable alone."""
    default = run_control(lab.target_file, "ZTM-CFG-1")
    tailored = run_control(_target_under(lab, tmp_path, '[policy.variables.hardened]\nevent_scheduler = "OFF"\n'),
                           "ZTM-CFG-1")
    default.assert_all_passed()
    message = tailored.assert_failed("test_live_variables_hardened", "event_scheduler")
    first_line = message.strip().splitlines()[0]
    assert first_line.count(" = ") == 1, f"more than the one variable was named: {first_line}"
    tailored.assert_failed("test_on_disk_configuration_hardened", "event_scheduler")
    changed = {name for name, outcome in _verdicts(tailored).items() if _verdicts(default).get(name) != outcome}
    assert changed == {"test_live_variables_hardened", "test_on_disk_configuration_hardened"}


def test_lab_reconfigured_to_nist_800_52r2_passes_under_that_profile(lab, lab_target, tmp_path):
    """TLS 1.2 and 1.3 with exactly the SP 800-52r2 suites of the profile (no ChaCha20): the whole
    suite passes under nist-800-52r2, and the zero-trust profile now fails the same server."""
    tls = load_policy({"profile": "nist-800-52r2"}).tls
    settings = {"tls_version": ",".join(tls["versions"]),
                **lab_target.dialect.cipher_options(tls["tls13_suites"], tls["tls12_suites"])}
    nist = _target_under(lab, tmp_path, 'profile = "nist-800-52r2"\n')
    with lab.reconfigured(settings):
        under_nist = run_control(nist)  # every control
        under_zero_trust = run_control(lab.target_file, "ZTM-TLS-1")
    under_nist.assert_all_passed()
    under_zero_trust.assert_failed("test_only_allowed_protocol_versions_are_accepted", "TLSv1.2 accepted")
    under_zero_trust.assert_failed("test_only_approved_suites_are_accepted", "TLS_AES_128_GCM_SHA256")
