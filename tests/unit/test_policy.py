"""The policy: profiles as data, target tailoring, one-line errors, a digest that follows the values."""

import subprocess
import sys

import pytest

from ztm.errors import UserError
from ztm.policy import DEFAULT_PROFILE, builtin_profiles, load_policy, parse_grant, schema_defaults
from ztm.schemas import errors

PROFILES = ["cnsa", "nist-800-52r2", "zero-trust"]


def test_builtin_profiles_are_shipped_and_valid():
    assert builtin_profiles() == PROFILES
    for name in PROFILES:
        policy = load_policy({"profile": name})
        assert policy.name == name and policy.title
        assert errors(policy.to_json(), "policy.schema.json") == []


def test_schema_defaults_are_the_zero_trust_profile():
    """The schema documents the defaults; the zero-trust file lists them: the two cannot drift."""
    policy, defaults = load_policy(), schema_defaults()
    for section, values in defaults.items():
        if section not in ("title", "source"):
            assert policy.doc[section] == values, section


def test_every_value_of_every_profile_cites_its_source():
    for name in PROFILES:
        policy = load_policy({"profile": name})
        assert set(policy.source) == set(policy.parameters()), name
        missing = [key for key, cited in policy.source.items() if not cited]
        assert not missing, f"{name}: values without a source: {missing}"


def test_profiles_differ_where_their_sources_do():
    zero, nist, cnsa = (load_policy({"profile": p}).tls for p in ("zero-trust", "nist-800-52r2", "cnsa"))
    assert "TLS_CHACHA20_POLY1305_SHA256" in zero["tls13_suites"]
    assert "TLS_CHACHA20_POLY1305_SHA256" not in nist["tls13_suites"] + cnsa["tls13_suites"]
    assert nist["versions"] == ["TLSv1.2", "TLSv1.3"] and nist["min_rsa_bits"] == 2048
    assert cnsa["tls13_suites"] == ["TLS_AES_256_GCM_SHA384"] and cnsa["ec_curves"] == ["secp384r1"]
    assert cnsa["min_rsa_bits"] == 3072 and "secp384r1" in cnsa["groups"]
    # What a profile does not set is the zero-trust value, cited as such.
    cnsa_policy = load_policy({"profile": "cnsa"})
    assert cnsa_policy.network == load_policy().network
    assert cnsa_policy.source["network.allowed_listen_ports"].startswith(f"as {DEFAULT_PROFILE}:")


def test_a_target_overrides_exactly_the_values_it_names():
    base = load_policy({"profile": "nist-800-52r2"})
    tailored = load_policy({"profile": "nist-800-52r2", "network": {"allowed_listen_ports": ["tcp/3306", "tcp/22"]},
                            "variables": {"hardened": {"event_scheduler": "OFF"}}}, where="target file t.toml")
    assert tailored.overridden == ["network.allowed_listen_ports", "variables.hardened.event_scheduler"]
    assert tailored.network["allowed_listen_ports"] == ["tcp/3306", "tcp/22"]
    assert tailored.variables["hardened"]["event_scheduler"] == "OFF"
    assert tailored.variables["hardened"]["local_infile"] == "OFF"  # the rest of the map stays
    assert tailored.source["variables.hardened.event_scheduler"] == "overridden by target file t.toml"
    changed = {k for k, v in tailored.parameters().items() if base.parameters()[k] != v}
    assert changed == set(tailored.overridden)


def test_changing_one_value_changes_the_digest():
    base = load_policy()
    assert load_policy().digest == base.digest  # deterministic
    assert load_policy({"crypto": {"recent_records": 501}}).digest != base.digest
    assert load_policy({"profile": "cnsa"}).digest != base.digest


@pytest.mark.parametrize(("section", "says"), [
    ({"profile": "fips-9000"}, "unknown policy profile 'fips-9000'; built-in profiles: cnsa, nist-800-52r2"),
    ({"profile": 3}, "profile must be a profile name"),
    ({"tls": {"min_rsa_bits": "big"}}, "invalid at tls/min_rsa_bits: 'big' is not of type 'integer'"),
    ({"tls": {"versions": ["SSLv3"]}}, "invalid at tls/versions/0"),
    ({"network": {"allowed_listen_ports": ["3306"]}}, "invalid at network/allowed_listen_ports/0"),
    ({"files": {"key_forbidden_mode": "777"}}, "invalid at files/key_forbidden_mode"),
    ({"tls": {"required_versions": ["TLSv1.2"]}}, "tls.required_versions names TLSv1.2, which tls.versions"),
    ({"tsl": {}}, "'tsl' was unexpected"),
])
def test_a_bad_policy_is_one_clear_line(section, says):
    with pytest.raises(UserError) as caught:
        load_policy(section)
    message = str(caught.value)
    assert says in message and "\n" not in message


def test_a_bad_policy_in_a_target_stops_the_run_before_any_test(tmp_path):
    from tests.unit.test_target import MINIMAL, write  # a minimal valid target file

    target = write(tmp_path, MINIMAL + '[policy]\nprofile = "fips-9000"\n')
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "probe").write_text("unused\n")  # the target's secret files are checked at start
    done = subprocess.run([sys.executable, "-m", "pytest", "controls/test_tls_1_protocols_and_suites.py",
                           "--target", str(target), "-q",
                           "-p", "no:randomly", "-p", "no:cacheprovider"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 4, done.stdout[-2000:]
    assert "unknown policy profile 'fips-9000'" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_grants_are_parsed_from_their_text_form():
    assert parse_grant("EXECUTE PROCEDURE app_transfer") == ("EXECUTE", "PROCEDURE", "app_transfer")
    allowed = load_policy().allowed_grants()
    assert ("SELECT", "TABLE", "v_users") in allowed["app"] and allowed["probe"] == set()
    assert ("UPDATE", "audit_chain_head") in load_policy().definer_audit_grants()
