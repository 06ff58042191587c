"""The database name comes from the target (or `ztm lab up --database`) and reaches SQL as an
identifier: only names that need no quoting get there, and a bad one is one line, exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from provision.schema import init_sql, render, split_statements, sql_files
from ztm.audit_chain import head_query, row_query
from ztm.db import quote_name
from ztm.errors import UserError


@pytest.mark.parametrize("name", ["securedb", "ztm_assessed_db", "DB2"])
def test_plain_names_are_quoted_identifiers(name):
    assert quote_name(name) == f"`{name}`"


@pytest.mark.parametrize("name", ["", "a`b", "x;y", "db name", "dé", "a.b", "x'--"])
def test_names_that_would_need_escaping_are_refused(name):
    with pytest.raises(UserError, match="not a database name"):
        quote_name(name)


def test_every_sql_file_uses_the_database_it_is_given():
    for path in sql_files():
        text = render(path, {"account_host": "10.77.0.%", "database": "ztm_other"})
        assert "securedb" not in text, f"{path.name} still names securedb"
        assert split_statements(text), path
    assert "CREATE DATABASE IF NOT EXISTS ztm_other " in init_sql("ztm_other")


def test_audit_queries_name_the_database():
    assert "FROM `ztm_other`.audit_events" in row_query("ztm_other")
    assert "FROM `ztm_other`.audit_chain_head" in head_query("ztm_other")


def test_lab_up_with_a_bad_database_name_is_one_line_and_exit_2():
    done = subprocess.run([sys.executable, "-m", "ztm.cli", "lab", "up", "--database", "x;DROP"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("ztm: ") and done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr
