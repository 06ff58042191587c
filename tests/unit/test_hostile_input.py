"""Hostile and malformed input, one table: each case runs the real command line (``ztm`` or
``pytest``) in a child process and must end with its usage exit code, a message naming the
cause, no traceback or INTERNALERROR, and within a time bound. Add a row for every new case.

The loopback servers for ``ztm tls-scan`` are tiny fakes written here (a real MySQL server
cannot be made to trickle bytes or stall on purpose): they speak just enough of the MySQL
protocol, and one a real TLS 1.3 handshake (pyOpenSSL), to reach the code under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.unit.test_tls_scan import FakeMySQL, silent, tls_server

ROOT = Path(__file__).resolve().parents[2]
TENANT = "6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f"
HUGE_HEADER = b"\xff\xff\xff\x00"  # a 16 MiB packet announced
SHORT_HEADER = b"\x64\x00\x00\x00"  # 100 bytes announced, then a trickle
PASSPHRASE = "correct horse battery"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trickle(first: bytes) -> Callable[[socket.socket, threading.Event], None]:
    """Send ``first`` (a packet header), then one byte every half second until stopped."""

    def serve(conn: socket.socket, stopped: threading.Event) -> None:
        conn.sendall(first)
        while not stopped.wait(0.5):
            conn.sendall(b"\0")

    return serve


class _Trickler(FakeMySQL):
    """A 'server' whose greeting never ends: a header, then a byte every half second."""

    def __init__(self, first: bytes) -> None:
        self.first = first
        super().__init__(None, greeting_bytes=b"")

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            _trickle(self.first)(conn, self.stopped)
        conn.close()


class _SilentListener(FakeMySQL):
    """Accepts the connection and never sends a byte (no greeting)."""

    def __init__(self) -> None:
        super().__init__(None, greeting_bytes=b"")

    def _serve(self, conn: socket.socket) -> None:
        self.stopped.wait()
        conn.close()


class World:
    """The files and loopback servers the cases point at, made on demand in ``root``."""

    def __init__(self, root: Path, pki) -> None:
        self.root, self.pki = root, pki
        self.servers: list[FakeMySQL] = []
        self.port = _closed_port()

    def file(self, name: str, data: bytes | str) -> str:
        path = self.root / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return str(path)

    def target(self, name: str = "t.toml", *, host: str = "127.0.0.1", ca: str | None = None,
               auditor: str = "", extra: str = "", port: int | None = None) -> str:
        ca = ca or str(self.pki.ca_cert)
        return self.file(name, f'''
[target]
name = "hostile"
engine = "mariadb"
host = "{host}"
port = {port or self.port}
server_name = "db.test"
database = "securedb"
[tls]
ca = "{ca}"
[roles.app]
user = "app_user"
[roles.auditor]
user = "auditor"
{auditor}
[roles.migration]
user = "migration"
[roles.probe]
user = "ztm_probe"
[roles.admin]
user = "root"
socket = "/nonexistent/mysqld.sock"
{extra}
''')

    def auditor(self, *, key: str | None = None, passphrase: str = "", password: bytes = b"pw-of-the-auditor\n") -> str:
        pw = self.file("auditor.pw", password)
        key = key or str(self.pki.client("app", "key"))
        return (f'cert = "{self.pki.client("app", "pem")}"\nkey = "{key}"\npassword = {{file = "{pw}"}}\n'
                + passphrase)

    def encrypted_key(self) -> str:
        key = serialization.load_pem_private_key(Path(self.pki.client("app", "key")).read_bytes(), None)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(PASSPHRASE.encode()))
        return self.file("enc.key", pem)

    def serve(self, answer, **kw) -> int:
        self.servers.append(FakeMySQL(answer, **kw))
        return self.servers[-1].port

    def silent_listener(self) -> int:
        self.servers.append(_SilentListener())
        return self.servers[-1].port

    def trickle(self, first: bytes) -> int:
        self.servers.append(_Trickler(first))
        return self.servers[-1].port

    def close(self) -> None:
        for server in self.servers:
            server.close()


def _self_signed_garbage_ca(world: World) -> str:
    return world.file("garbage-ca.pem", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                                        "-----END CERTIFICATE-----\n")


@dataclass(frozen=True)
class Case:
    name: str
    argv: Callable[[World], list[str]]
    code: int
    fragment: str
    seconds: float = 30.0
    tool: str = "ztm"  # or "pytest" (exit 4 is pytest's usage error)


def _pii_nested(w: World) -> str:
    return w.file("pii.json", "[" * 100_000 + "]" * 100_000)


def _kmip_target(w: World) -> str:
    cert, key, ca = w.pki.client("app", "pem"), w.pki.client("app", "key"), w.pki.ca_cert
    return w.target("kmip.toml", extra=f'''
[kms]
provider = "kmip"
host = "127.0.0.1"
port = {w.port}
cert = "{cert}"
client_key = "{key}"
ca = "{ca}"
key_uid = "1"
[crypto]
require_pq = false
''')


def _good_pii(w: World) -> str:
    return w.file("good-pii.json", json.dumps({"name": "N", "email": "e@example.invalid", "phone": "+1555"}))


CASES = [
    # -- files that are not UTF-8, empty, or of the wrong shape -------------------------------------
    Case("target file not UTF-8", lambda w: ["audit", "verify", "--target", w.file("t.toml", b"\xff\xfe[target]\n")],
         2, "is not UTF-8 text"),
    Case("password file not UTF-8",
         lambda w: ["audit", "verify", "--target", w.target(auditor=w.auditor(password=b"\xff\xfe\xfd\n"))],
         2, "is not UTF-8 text"),
    Case("empty password file", lambda w: ["audit", "verify", "--target", w.target(auditor=w.auditor(password=b""))],
         2, "is empty"),
    Case("audit dump not UTF-8", lambda w: ["audit", "verify", "--dump", w.file("d.jsonl", b'{"seq": 1}\n\xff\xfe\n')],
         2, "is not UTF-8 text"),
    Case("audit dump seq 1e400",
         lambda w: ["audit", "verify", "--dump", w.file("d.jsonl", '{"lane": 0, "seq": 1e400, "payload": "x", '
                                                                    '"prev_hash": "0", "curr_hash": "0"}\n')],
         2, "line 1 is not an audit row"),
    Case("waiver file not UTF-8", lambda w: ["--waivers", w.file("w.toml", b"\xff\xfe[[waiver]]\n")],
         4, "is not UTF-8 text", tool="pytest"),
    Case("JSON waivers: a list", lambda w: ["--waivers", w.file("w.json", "[]")], 4, "top level must be an object",
         tool="pytest"),
    Case("JSON waivers: a string", lambda w: ["--waivers", w.file("w.json", '"waive it all"')], 4,
         "top level must be an object", tool="pytest"),
    Case("JSON waivers: null", lambda w: ["--waivers", w.file("w.json", "null")], 4, "not null", tool="pytest"),
    Case("PII with 100k nested brackets",
         lambda w: ["envelope", "encrypt", "--target", w.target(), "--tenant", TENANT, "--pii", _pii_nested(w)],
         2, "nested too deeply"),
    Case("import: a JSON Lines record nested 100k deep",
         lambda w: ["envelope", "import", "--target", w.target(), "--tenant", TENANT, "--input",
                    w.file("p.jsonl", json.dumps({"name": "N", "email": "e", "phone": "1"}) + "\n"
                           + "[" * 100_000 + "]" * 100_000 + "\n")],
         2, "line 2: nested too deeply"),
    Case("import: a line not UTF-8",
         lambda w: ["envelope", "import", "--target", w.target(), "--tenant", TENANT, "--input",
                    w.file("p.jsonl", b'{"name": "\xff"}\n')],
         2, "line 1: not UTF-8 text"),
    Case("import: a line of the wrong shape",
         lambda w: ["envelope", "import", "--target", w.target(), "--tenant", TENANT, "--input",
                    w.file("p.jsonl", '{"name": 1, "email": "e", "phone": "p"}\n')],
         2, "line 1: the PII JSON must be an object"),
    Case("import: --batch 0",
         lambda w: ["envelope", "import", "--target", w.target(), "--tenant", TENANT, "--input", _good_pii(w),
                    "--batch", "0"],
         2, "--batch must be 1..10000"),
    # -- host names and ports ----------------------------------------------------------------------
    Case("tls-scan a..b", lambda w: ["tls-scan", "a..b:3306"], 2, "not a valid host name"),
    Case("tls-scan .", lambda w: ["tls-scan", ".:3306"], 2, "not a valid host name"),
    Case("tls-scan 64-character label", lambda w: ["tls-scan", "a" * 64 + ".example:3306"], 2, "not a valid host name"),
    Case("tls-scan superscript port", lambda w: ["tls-scan", "127.0.0.1:²"], 2, "port 1-65535"),
    Case("target host a..b", lambda w: ["audit", "verify", "--target", w.target(host="a..b")], 2,
         "[target].host 'a..b' is not a valid host name"),
    # -- servers that stall -------------------------------------------------------------------------
    Case("tls-scan: 0xFFFFFF length then a trickle",
         lambda w: ["tls-scan", f"127.0.0.1:{w.trickle(HUGE_HEADER)}", "--timeout", "2"],
         2, "announces 16777215 bytes", seconds=10),
    Case("tls-scan: short length then a trickle (overall greeting deadline)",
         lambda w: ["tls-scan", f"127.0.0.1:{w.trickle(SHORT_HEADER)}", "--timeout", "2"],
         2, "sent no MySQL greeting within 2 s", seconds=10),
    Case("tls-scan: greets, then silent on TLS (whole-scan deadline)",
         lambda w: ["tls-scan", f"127.0.0.1:{w.serve(silent)}", "--timeout", "1", "--deadline", "4"],
         0, "not probed: the scan's deadline of 4 s passed", seconds=12),
    Case("tls-scan: completes TLS, then silent",
         lambda w: ["tls-scan", f"127.0.0.1:{w.serve(tls_server(w.pki))}", "--timeout", "1", "--deadline", "20"],
         0, "TLSv1.3", seconds=25),
    Case("database server accepts and never greets (login deadline)",
         lambda w: ["audit", "verify", "--target", w.target(auditor=w.auditor(), port=w.silent_listener())],
         2, "cannot connect to hostile as auditor", seconds=45),
    # -- TLS material -------------------------------------------------------------------------------
    Case("encrypted client key, no passphrase reference",
         lambda w: ["audit", "verify", "--target", w.target(auditor=w.auditor(key=w.encrypted_key()))],
         2, "is encrypted and the target gives no passphrase"),
    Case("encrypted client key with its passphrase reference (reaches the connect)",
         lambda w: ["audit", "verify", "--target", w.target(auditor=w.auditor(
             key=w.encrypted_key(),
             passphrase=f'key_passphrase = {{file = "{w.file("pass", PASSPHRASE)}"}}'))],
         2, "cannot connect to hostile as auditor"),
    Case("client certificate missing",
         lambda w: ["audit", "verify", "--target", w.target(auditor=w.auditor().replace(
             str(w.pki.client("app", "pem")), str(w.root / "gone.pem")))],
         2, "client certificate " + "{root}/gone.pem does not exist"),
    Case("tls.ca is a directory", lambda w: ["audit", "verify", "--target", w.target(ca=str(w.root),
                                                                                   auditor=w.auditor())],
         2, "is a directory, not a CA certificate file"),
    Case("tls.ca missing", lambda w: ["audit", "verify", "--target", w.target(ca=str(w.root / "none.pem"),
                                                                            auditor=w.auditor())],
         2, "none.pem does not exist"),
    Case("tls.ca garbage", lambda w: ["audit", "verify", "--target", w.target(ca=_self_signed_garbage_ca(w),
                                                                            auditor=w.auditor())],
         2, "holds no usable CA certificate"),
    # -- pytest options -----------------------------------------------------------------------------
    Case("pytest --target BAD.toml -n 2", lambda w: ["--target", w.file("bad.toml", "[target\n"), "-n", "2"],
         4, "is not valid TOML", tool="pytest"),
    Case("pytest: password file not UTF-8",
         lambda w: ["--target", w.target(auditor=w.auditor(password=b"\xff\xfe\n")), "-n", "2"],
         4, "is not UTF-8 text", tool="pytest"),
    Case("pytest: empty password file", lambda w: ["--target", w.target(auditor=w.auditor(password=b"\n"))],
         4, "is empty", tool="pytest"),
    Case("pytest --evidence-out ''", lambda w: ["--evidence-out", ""], 4, "--evidence-out is empty", tool="pytest"),
    # -- KMS ----------------------------------------------------------------------------------------
    Case("KMIP server unreachable (no library logging)",
         lambda w: ["envelope", "encrypt", "--target", _kmip_target(w), "--tenant", TENANT, "--pii", _good_pii(w)],
         2, "cannot reach the KMIP server"),
]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from provision.pki import PkiLayout, issue_all

    layout = PkiLayout(tmp_path_factory.mktemp("pki"))
    issue_all(layout, server_name="db.test", server_address="127.0.0.1", users={"app": "app_user"})
    return layout


@pytest.fixture
def world(tmp_path, pki) -> Iterator[World]:
    w = World(tmp_path, pki)
    yield w
    w.close()


def _command(case: Case, world: World) -> list[str]:
    if case.tool == "ztm":
        return [sys.executable, "-m", "ztm.cli", *case.argv(world)]
    return [sys.executable, "-m", "pytest", str(ROOT / "controls"), "-q", "-p", "no:cacheprovider",
            *case.argv(world)]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, world: World):
    env = {k: v for k, v in os.environ.items() if k != "ZTM_TARGET"}
    started = time.monotonic()
    done = subprocess.run(_command(case, world), cwd=world.root, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=case.seconds + 60)
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    assert "Traceback" not in output and "INTERNALERROR" not in output, output[-3000:]
    assert done.returncode == case.code, f"exit {done.returncode}, expected {case.code}: {output[-2000:]}"
    fragment = case.fragment.replace("{root}", str(world.root))
    assert fragment in output, f"{fragment!r} not in: {output[-2000:]}"
    assert elapsed <= case.seconds, f"took {elapsed:.1f} s (bound {case.seconds} s)"
    if case.code != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, f"expected one line on stderr, got: {lines}"


def test_scan_progress_is_shown_on_a_terminal(world):
    """On a terminal, tls-scan says which probe it is on (stderr), so a slow server shows it is slow."""
    port = world.serve(silent)
    parent, child = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "ztm.cli", "tls-scan", f"127.0.0.1:{port}", "--timeout",
                                 "0.3", "--deadline", "3"], cwd=ROOT, stdout=subprocess.PIPE, stderr=child)
        os.close(child)
        seen = b""
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                seen += os.read(parent, 4096)
        with contextlib.suppress(OSError):
            seen += os.read(parent, 4096)
        proc.wait(timeout=10)
    finally:
        os.close(parent)
    assert proc.returncode == 0
    assert b"probe 1/" in seen and b"TLSv1" in seen, seen[:500]


def test_no_progress_when_not_a_terminal(world):
    port = world.serve(silent)
    done = subprocess.run([sys.executable, "-m", "ztm.cli", "tls-scan", f"127.0.0.1:{port}", "--timeout", "0.3",
                           "--deadline", "2"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and "probe 1/" not in done.stderr

