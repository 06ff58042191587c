"""Comparing live and on-disk server variables."""

from ztm.dialect import MARIADB, MYSQL, dialect_for
from ztm.resources.variables import mismatches, normalise_value, parse_mycnf, parse_persisted


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


def _write(folder, name, text):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def test_includes_are_followed_where_they_appear(tmp_path):
    from ztm.resources.variables import LocalFiles, read_config

    _write(tmp_path, "conf.d/10-tls.cnf", "[mysqld]\ntls_version = TLSv1.3\n")
    _write(tmp_path, "conf.d/99-local.cnf", "[mysqld]\nlocal_infile = 1  # an operator's 'temporary' change\n")
    _write(tmp_path, "conf.d/README", "[mysqld]\nlocal_infile = 2\n")  # not *.cnf: the server ignores it
    _write(tmp_path, "extra.cnf", "[mysqld]\nsql_mode = ''\n")
    main = _write(tmp_path, "my.cnf", "[mysqld]\nlocal_infile = 0\nsql_mode = STRICT_ALL_TABLES\n"
                                      "!include extra.cnf\n!includedir " + str(tmp_path / "conf.d") + "\n")
    read = read_config(LocalFiles(), main)
    assert read.options["local_infile"] == "1" and read.origin["local_infile"].endswith("conf.d/99-local.cnf")
    assert read.options["sql_mode"] == "''" and read.origin["sql_mode"].endswith("extra.cnf")
    assert [p.removeprefix(str(tmp_path) + "/") for p in read.files] == [
        "my.cnf", "extra.cnf", "conf.d/10-tls.cnf", "conf.d/99-local.cnf"]
    assert mismatches({"local_infile": "0"}, read.options) == ["local_infile = 1 (expected 0)"]


def test_a_line_after_an_include_overrides_it(tmp_path):
    from ztm.resources.variables import LocalFiles, read_config

    _write(tmp_path, "lax.cnf", "[mysqld]\nlocal_infile = 1\n")
    main = _write(tmp_path, "my.cnf", "[mysqld]\n!include lax.cnf\n[mysqld]\nlocal_infile = 0\n")
    assert read_config(LocalFiles(), main).options["local_infile"] == "0"


def test_include_loops_and_missing_includes_do_not_hang_or_hide(tmp_path):
    from ztm.resources.variables import LocalFiles, read_config

    main = _write(tmp_path, "my.cnf", "!include my.cnf\n!include gone.cnf\n!includedir nodir\n[mysqld]\na = 1\n")
    read = read_config(LocalFiles(), main)
    assert read.options == {"a": "1"}
    assert any("nested deeper" in m for m in read.missing)
    assert str(tmp_path / "gone.cnf") in read.missing and str(tmp_path / "nodir") + "/" in read.missing


def test_enable_disable_skip_prefixes_and_quoted_comments():
    text = ("[mysqld]\nenable-local-infile\nskip-name-resolve\ndisable-event-scheduler\n"
            "secure_file_priv = '/srv/a#b' # comment\n")
    options = parse_mycnf(text)
    assert options["local_infile"] == "ON" and options["skip_name_resolve"] == "ON"
    assert options["event_scheduler"] == "OFF" and options["secure_file_priv"] == "'/srv/a#b'"
    assert parse_mycnf("[mysqld]\nskip-local-infile\n")["local_infile"] == "OFF"


def test_option_groups_are_the_engines_own():
    from ztm.resources.variables import server_sections

    assert "mariadb-10.11" in server_sections(MARIADB, "10.11")
    assert "mariadb" not in server_sections(MYSQL, "9.7") and "mysqld-9.7" in server_sections(MYSQL, "9.7")
    assert server_sections(MYSQL, ">=8.0") == MYSQL.option_groups


def test_another_engines_group_is_not_read(tmp_path):
    from ztm.resources.variables import LocalFiles, read_config, server_sections

    main = _write(tmp_path, "my.cnf", "[mysqld]\nlocal_infile = 0\n[mariadb]\nlocal_infile = 1\n")
    assert read_config(LocalFiles(), main, server_sections(MYSQL, "9.7")).options["local_infile"] == "0"
    assert read_config(LocalFiles(), main, server_sections(MARIADB, "10.11")).options["local_infile"] == "1"
