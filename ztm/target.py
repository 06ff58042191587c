"""The target file: one deployment under assessment (schemas/target.schema.json)."""

from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ztm.dialect import Dialect, dialect_for
from ztm.errors import UserError
from ztm.schemas import validate

ROLES = ("app", "auditor", "migration", "probe", "admin")
# What each role lets the suite see: the reason given when a control needs a role the target lacks.
ROLE_USE = {
    "app": "the application's account, which the access, tenant, crypto and mTLS controls log in as",
    "auditor": "the auditor's account, which reads the audit trail",
    "migration": "the schema owner's account",
    "probe": "a low-privilege account the transport probes log in as",
    "admin": "the admin path, which reads configuration, accounts and grants",
}


class MissingInput(Exception):
    """The target file lacks an input a control needs: that control is *not assessed*, with
    this sentence as the reason (ztm.plugin turns it into a skip; the CLI into one line)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:  # what pytest shows: the sentence, never a traceback
        return self.reason
MAX_SECRET_FILE = 1 << 16  # a secret is one short line; never read a whole large file for it


@dataclass(frozen=True)
class SecretRef:
    """A secret referenced by file or environment variable; read only when used."""

    file: Path | None = None
    env: str | None = None

    def reveal(self) -> str:
        """The secret: the file's first line, or the variable's value. An empty secret is
        refused (an empty file is a mistake, not an empty password)."""
        if self.file is not None:
            try:
                lines = self.file.read_bytes()[:MAX_SECRET_FILE].decode().splitlines()
            except OSError as exc:
                raise UserError(f"cannot read secret file {self.file}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise UserError(f"secret file {self.file} is not UTF-8 text") from None
            value = lines[0] if lines else ""
        else:
            assert self.env is not None
            found = os.environ.get(self.env)
            if found is None:
                raise UserError(f"environment variable {self.env} (a secret named by the target) is not set")
            value = found
        if not value:
            raise UserError(f"the secret ({self.describe()}) is empty")
        return value

    def describe(self) -> str:
        """Where the secret is, never what it is (for logs and evidence)."""
        return f"file:{self.file}" if self.file is not None else f"env:{self.env}"


@dataclass(frozen=True)
class Identity:
    role: str
    user: str
    cert: Path | None = None
    key: Path | None = None
    password: SecretRef | None = None
    socket: Path | None = None
    key_passphrase: SecretRef | None = None


@dataclass(frozen=True)
class Credential:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Target:
    path: Path
    raw: dict[str, Any]
    name: str
    engine: str
    version: str | None
    host: str
    port: int
    server_name: str | None
    database: str
    ca: Path | None
    crl: Path | None
    roles: dict[str, Identity]
    negative: dict[str, Credential] = field(default_factory=dict)

    @property
    def dialect(self) -> Dialect:
        return dialect_for(self.engine)

    def role(self, name: str) -> Identity:
        """The identity of a target role; MissingInput (not assessed) when the target names none."""
        identity = self.roles.get(name)
        if identity is None:
            raise MissingInput(f"not assessed: the target names no [roles.{name}] ({ROLE_USE.get(name, name)})")
        return identity

    def need_ca(self) -> Path:
        """The CA the server certificate must chain to; MissingInput when the target names none."""
        if self.ca is None:
            raise MissingInput("not assessed: the target names no CA ([tls].ca), so the server certificate "
                               "and client certificates cannot be verified")
        return self.ca

    @property
    def verify_name(self) -> str:
        """The name the server certificate must carry: [target].server_name, else the host."""
        return self.server_name or self.host

    def section(self, name: str) -> dict[str, Any]:
        """A raw optional section (host, network, kms, anchor, ...) or {}."""
        return self.raw.get(name, {})

    def resolve(self, value: str) -> Path:
        return resolve_path(self.path.parent, value)

    def check_secret_files(self) -> None:
        """UserError unless every secret file the roles name is readable, UTF-8 and not empty
        (checked once before a run; variables are read when used)."""
        for identity in self.roles.values():
            for ref in (identity.password, identity.key_passphrase):
                if ref is not None and ref.file is not None:
                    ref.reveal()

    @property
    def lab_dir(self) -> Path | None:
        lab = self.raw.get("lab")
        return self.resolve(lab["dir"]) if lab and "dir" in lab else None


def resolve_path(base: Path, value: str) -> Path:
    """A path named in a target file: ``~`` expanded, relative to the file's folder ``base``."""
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def secret_ref(base: Path, ref: dict[str, str] | None) -> SecretRef | None:
    """A ``{file = ...}`` or ``{env = ...}`` table of a target file as a SecretRef (None if empty)."""
    if not ref:
        return None
    return SecretRef(file=resolve_path(base, ref["file"]) if "file" in ref else None, env=ref.get("env"))


def read_target_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The target file's TOML as it is, not validated (``load_target`` validates and resolves);
    UserError when it is missing, unreadable or not TOML."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"target file {p} does not exist (run 'ztm lab up' to create the lab's)") from None
    except OSError as exc:
        raise UserError(f"cannot read target file {p}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"target file {p} is not UTF-8 text (TOML files are UTF-8)") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"target file {p} is not valid TOML: {exc}") from None


def check_host_name(host: str, where: str = "") -> None:
    """An IP address or a name a resolver can be asked for (the idna codec refuses empty
    labels, labels over 63 characters and characters no host name may carry)."""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise UserError(f"{where}{host!r} is not a valid host name ({exc})") from None


def load_target(path: str | os.PathLike[str]) -> Target:
    """Read, validate and resolve a target file; UserError on anything wrong."""
    p = Path(path)
    raw = read_target_file(p)
    validate(raw, "target.schema.json", f"target file {p}")
    check_host_name(raw["target"]["host"], f"target file {p}: [target].host ")
    base = p.resolve().parent
    t, tls = raw["target"], raw.get("tls", {})
    roles = {
        role: Identity(
            role=role,
            user=spec["user"],
            cert=resolve_path(base, spec["cert"]) if "cert" in spec else None,
            key=resolve_path(base, spec["key"]) if "key" in spec else None,
            password=secret_ref(base, spec.get("password")),
            socket=resolve_path(base, spec["socket"]) if "socket" in spec else None,
            key_passphrase=secret_ref(base, spec.get("key_passphrase")),
        )
        for role, spec in raw.get("roles", {}).items()
    }
    negative = {
        kind: Credential(cert=resolve_path(base, c["cert"]), key=resolve_path(base, c["key"]))
        for kind, c in raw.get("negative", {}).items()
    }
    return Target(
        path=p.resolve(),
        raw=raw,
        name=t["name"],
        engine=t["engine"],
        version=t.get("version"),
        host=t["host"],
        port=t["port"],
        server_name=t.get("server_name"),
        database=t["database"],
        ca=resolve_path(base, tls["ca"]) if "ca" in tls else None,
        crl=resolve_path(base, tls["crl"]) if "crl" in tls else None,
        roles=roles,
        negative=negative,
    )
