"""The data-plane SQL files split into statements as the mysql client would, and the
grants parser reads SHOW GRANTS lines of both engines."""

from __future__ import annotations

import pytest

from provision.schema import render, split_statements, sql_files
from ztm.errors import UserError
from ztm.resources.grants import parse


def test_delimiter_blocks_are_one_statement():
    text = ("USE db;\nDELIMITER //\nCREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND //\n"
            "DELIMITER ;\nSELECT 3;\n")
    assert split_statements(text) == ["USE db", "CREATE PROCEDURE p()\nBEGIN\n  SELECT 1;\n  SELECT 2;\nEND",
                                      "SELECT 3"]


def test_unterminated_statement_is_an_error():
    with pytest.raises(ValueError, match="unterminated"):
        split_statements("SELECT 1")


def test_every_sql_file_renders_and_splits():
    files = sql_files()
    assert [f.name for f in files][:2] == ["000_init.sql", "005_definer.sql"]
    for path in files:
        statements = split_statements(render(path, {"account_host": "10.77.0.%", "database": "securedb"}))
        assert statements, path
        assert not any("${" in s for s in statements), path


def test_missing_fact_is_named(tmp_path):
    sql = tmp_path / "999_x.sql"
    sql.write_text("GRANT SELECT ON t TO 'u'@'${host}';\n")
    with pytest.raises(UserError, match="needs the deployment fact 'host'"):
        render(sql, {})


def test_grants_of_both_engines_are_parsed():
    lines = ["GRANT USAGE ON *.* TO `app_user`@`10.77.0.%` REQUIRE SUBJECT '/CN=app_user'",
             "GRANT SELECT, INSERT (a, b) ON `securedb`.`users` TO `app_user`@`10.77.0.%`",
             "GRANT EXECUTE ON PROCEDURE `securedb`.`app_transfer` TO `app_user`@`10.77.0.%`",
             "GRANT DELETE ON `secure%`.* TO `x`@`%`"]
    grants = parse(lines)
    assert [(g.privilege, g.kind, g.database, g.object) for g in grants] == [
        ("USAGE", "TABLE", "*", "*"), ("SELECT", "TABLE", "securedb", "users"),
        ("INSERT", "TABLE", "securedb", "users"), ("EXECUTE", "PROCEDURE", "securedb", "app_transfer"),
        ("DELETE", "TABLE", "secure%", "*")]
    assert grants[-1].covers("securedb", "audit_events") and not grants[1].covers("securedb", "audit_events")


def test_role_grant_lines_of_both_engines_name_their_roles():
    from ztm.dialect import MARIADB, MYSQL
    from ztm.resources.grants import Grantee, parse_role_list, roles_granted

    assert roles_granted(["GRANT `ztm_r` TO `app_user`@`10.77.0.%`",
                          "GRANT SELECT ON `securedb`.`v_users` TO `app_user`@`10.77.0.%`"], MARIADB) == [
        Grantee("ztm_r", None)]
    assert roles_granted(["GRANT `r1`@`%`,`r``2`@`localhost` TO `u`@`h` WITH ADMIN OPTION"], MYSQL) == [
        Grantee("r1", "%"), Grantee("r`2", "localhost")]
    assert parse_role_list("`r1`@`%`, r2@localhost,r3", MYSQL) == [
        Grantee("r1", "%"), Grantee("r2", "localhost"), Grantee("r3", "%")]
    assert parse_role_list("", MYSQL) == []
    assert Grantee("PUBLIC", None).label == "PUBLIC" and Grantee("r", None).label == "role 'r'"
