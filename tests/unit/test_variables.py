"""Comparing live and on-disk server variables."""

from ztm.checks.variables import mismatches, normalise_value, parse_mycnf, parse_persisted
from ztm.dialect import MARIADB, MYSQL, dialect_for


def test_spellings_compare_equal():
    assert normalise_value("local_infile", "0") == normalise_value("local_infile", "OFF")
    assert normalise_value("skip_name_resolve", "ON") == normalise_value("skip_name_resolve", "1")
    assert normalise_value("sql_mode", "A,B") == normalise_value("sql_mode", "B,A")
    assert normalise_value("tls_ciphersuites", "X:Y") == normalise_value("tls_ciphersuites", "Y:X")


def test_mismatches_name_variable_and_both_values():
    problems = mismatches({"local_infile": "0", "tls_version": "TLSv1.3"},
                          {"local_infile": "ON", "tls_version": "TLSv1.2,TLSv1.3"})
    assert problems == ["local_infile = ON (expected 0)", "tls_version = TLSv1.2,TLSv1.3 (expected TLSv1.3)"]
    assert mismatches({"ssl_crl": "x"}, {}) == ["ssl_crl is not set (expected x)"]


def test_mycnf_sections_dashes_and_bare_options():
    text = "[client]\nlocal-infile = 1\n[mysqld]\nlocal-infile = 0\nskip-name-resolve\n!includedir /etc/x\n" \
           "[mariadb]\nloose-require-secure-transport = ON # comment\n"
    options = parse_mycnf(text)
    assert options == {"local_infile": "0", "skip_name_resolve": "ON", "require_secure_transport": "ON"}


def test_persisted_variables_flattened():
    text = '{"Version": 2, "mysql_server": {"require_secure_transport": {"Value": "OFF", "Metadata": {}},' \
           ' "mysql_server_static_options": {"local_infile": {"Value": "1"}}}}'
    assert parse_persisted(text) == {"require_secure_transport": "OFF", "local_infile": "1"}


def test_dialects_carry_the_engine_differences():
    assert dialect_for("mariadb") is MARIADB and dialect_for("mysql") is MYSQL
    assert MARIADB.tls13_suites_variable == "ssl_cipher"
    assert MYSQL.tls13_suites_variable == "tls_ciphersuites"
    assert 3159 in MYSQL.insecure_transport_errors
    for dialect in (MARIADB, MYSQL):
        settings = dialect.server_settings(crl="/c.pem", secure_file_priv="/f")
        assert settings["require_secure_transport"] == "ON" and settings["tls_version"] == "TLSv1.3"
        assert settings[dialect.tls13_suites_option] == "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


def test_persisted_variables_version_2_format():
    # What MySQL 9.7 writes after SET PERSIST local_infile = ON (captured from the lab).
    text = ('{"Version": 2, "mysql_dynamic_variables": {"local_infile": {"Value": "ON", "Metadata": '
            '{"Host": "localhost", "User": "root", "Timestamp": 1795357134954525}}}}')
    assert parse_persisted(text) == {"local_infile": "ON"}
