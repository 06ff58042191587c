"""The target file: validation errors are one clear line; secrets are read only when used."""

from pathlib import Path

import pytest

from ztm.errors import UserError
from ztm.target import MissingInput, load_target

MINIMAL = """
[target]
name = "vm1"
engine = "mysql"
version = ">=8.0"
host = "192.0.2.10"
port = 3306
server_name = "db.example"
database = "securedb"

[tls]
ca = "pki/ca.pem"

[roles.app]
user = "app_user"
cert = "pki/app.pem"
key = "pki/app.key"
password = {env = "APP_PW"}
[roles.auditor]
user = "auditor"
[roles.migration]
user = "migration"
[roles.probe]
user = "ztm_probe"
password = {file = "secrets/probe"}
[roles.admin]
user = "root"
socket = "/run/mysqld/mysqld.sock"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "target.toml"
    path.write_text(text)
    return path


def test_minimal_target_loads_and_resolves_paths_against_its_folder(tmp_path):
    target = load_target(write(tmp_path, MINIMAL))
    assert target.engine == "mysql" and target.dialect.name == "mysql"
    assert target.ca == tmp_path / "pki" / "ca.pem"
    assert target.roles["app"].cert == tmp_path / "pki" / "app.pem"
    assert target.roles["admin"].socket == Path("/run/mysqld/mysqld.sock")


def test_secret_from_environment_is_read_when_used(tmp_path, monkeypatch):
    target = load_target(write(tmp_path, MINIMAL))
    monkeypatch.delenv("APP_PW", raising=False)
    with pytest.raises(UserError, match="APP_PW"):
        target.roles["app"].password.reveal()
    monkeypatch.setenv("APP_PW", "s3cret")
    assert target.roles["app"].password.reveal() == "s3cret"
    assert "s3cret" not in target.roles["app"].password.describe()


def test_secret_file_missing_is_a_clear_error(tmp_path):
    target = load_target(write(tmp_path, MINIMAL))
    with pytest.raises(UserError, match="cannot read secret file"):
        target.roles["probe"].password.reveal()


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace('engine = "mysql"', 'engine = "postgres"'), "target/engine"),
    (lambda t: t.replace("port = 3306", "port = 70000"), "target/port"),
    (lambda t: t.replace('password = {env = "APP_PW"}', 'password = "inline-secret"'), "roles/app/password"),
    (lambda t: t.replace('key = "pki/app.key"\n', ""), "roles/app"),
    (lambda t: t + "\n[surprise]\nx = 1\n", "surprise"),
])
def test_invalid_target_names_the_place(tmp_path, edit, message):
    with pytest.raises(UserError, match="invalid at") as info:
        load_target(write(tmp_path, edit(MINIMAL)))
    assert message in str(info.value) or message in str(info.value).replace("'", "")
    assert "\n" not in str(info.value)


def test_not_toml_and_missing_file_are_clear(tmp_path):
    with pytest.raises(UserError, match="not valid TOML"):
        load_target(write(tmp_path, "[target\nname="))
    with pytest.raises(UserError, match="does not exist"):
        load_target(tmp_path / "absent.toml")


def test_only_the_target_section_is_required(tmp_path):
    """An existing server's smallest target: no [tls], no roles, no server_name. What a
    control needs and the file lacks is MissingInput (not assessed), naming the section."""
    f = tmp_path / "target.toml"
    f.write_text('[target]\nname = "stock"\nengine = "mariadb"\nhost = "127.0.0.1"\nport = 3306\n'
                 'database = "app"\n')
    t = load_target(f)
    assert t.roles == {} and t.ca is None and t.verify_name == "127.0.0.1"
    with pytest.raises(MissingInput, match=r"no \[roles\.app\]"):
        t.role("app")
    with pytest.raises(MissingInput, match=r"no CA \(\[tls\]\.ca\)"):
        t.need_ca()
