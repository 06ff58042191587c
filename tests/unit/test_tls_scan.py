"""The MySQL-protocol TLS scanner: packets byte for byte, and real handshakes with small
MySQL-speaking servers on 127.0.0.1 (pyOpenSSL on the server side).

What a probe may conclude is the point: "refused" only on a TLS alert or a close in answer
to the ClientHello; silence, a mid-handshake close, or a suite this client cannot offer are
"inconclusive", and ZTM-TLS-1's judgement fails naming them."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Callable, Iterator

import pytest
from OpenSSL import SSL

from provision.pki import PkiLayout, issue_all
from ztm.checks.tls import group_problems, group_verdicts, protocol_problems, suite_problems
from ztm.errors import UserError
from ztm.policy import load_policy
from ztm.tls_scan import (
    CLASSICAL_GROUPS,
    CLIENT_SSL,
    HYBRID_GROUPS,
    _set_groups,
    client_certificate_verdict,
    handshake,
    parse_greeting,
    scan,
    ssl_request_packet,
)

TLS_POLICY = load_policy().tls  # zero-trust
APPROVED_TLS13_SUITES = tuple(TLS_POLICY["tls13_suites"])

SERVER_VERSION = b"8.4.0-fake"
# Generous: only the silent-server tests rely on a wait running out, and there the server never answers.
SLOW = 60.0


def greeting(capabilities: int) -> bytes:
    payload = (b"\x0a" + SERVER_VERSION + b"\0" + struct.pack("<I", 42) + b"12345678\0"
               + struct.pack("<H", capabilities & 0xFFFF) + b"\x2d" + struct.pack("<H", 2)
               + struct.pack("<H", capabilities >> 16) + b"\x15" + b"\0" * 10 + b"123456789012\0"
               + b"caching_sha2_password\0")
    return struct.pack("<I", len(payload))[:3] + b"\0" + payload


def test_greeting_is_parsed():
    g = parse_greeting(greeting(0x000FF7FF | CLIENT_SSL)[4:])
    assert (g.server_version, g.connection_id, g.tls_supported) == ("8.4.0-fake", 42, True)
    assert not parse_greeting(greeting(0x000FF7FF & ~CLIENT_SSL)[4:]).tls_supported


def test_error_packet_instead_of_greeting_is_reported():
    payload = b"\xff" + struct.pack("<H", 1129) + b"Host '10.77.0.66' is blocked"
    with pytest.raises(ConnectionRefusedError, match=r"1129.*is blocked"):
        parse_greeting(payload)


def test_ssl_request_packet_bytes():
    packet = ssl_request_packet()
    assert packet[:4] == b"\x20\x00\x00\x01"  # 32-byte payload, sequence id 1
    flags, max_packet, charset = struct.unpack_from("<IIB", packet, 4)
    assert flags & CLIENT_SSL and flags & 0x200 and max_packet == 16 * 1024 * 1024 and charset == 45
    assert packet[13:] == b"\0" * 23


# -- real servers on loopback ---------------------------------------------------------
Answer = Callable[[socket.socket, threading.Event], None]


def _read_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("client went away")
        data += chunk
    return data


class FakeMySQL:
    """Greets like MySQL, reads the SSLRequest, then lets ``answer`` deal with the ClientHello.

    One thread per connection, so a silent connection never holds up the next probe."""

    def __init__(self, answer: Answer | None, greeting_bytes: bytes | None = None) -> None:
        self.answer = answer
        self.greeting = greeting_bytes or greeting(0x000FF7FF | (CLIENT_SSL if answer else 0))
        self.stopped = threading.Event()
        self.conns: list[socket.socket] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            conn.sendall(self.greeting)
            if self.answer is None:
                return
            _read_exact(conn, 36)  # the SSLRequest
            self.answer(conn, self.stopped)
        except (OSError, SSL.Error):
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        for sock in (self.listener, *self.conns):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a blocked accept()/recv()
            sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., FakeMySQL]]:
    servers: list[FakeMySQL] = []

    def start(answer: Answer | None, **kw) -> FakeMySQL:
        servers.append(FakeMySQL(answer, **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PkiLayout:
    layout = PkiLayout(tmp_path_factory.mktemp("pki"))
    issue_all(layout, server_name="db.test", server_address="127.0.0.1", users={"app": "app_user"})
    return layout


def tls_server(pki: PkiLayout, *, minimum: int = SSL.TLS1_3_VERSION, tls13: tuple[str, ...] = APPROVED_TLS13_SUITES,
               tls12: str = "ECDHE-ECDSA-AES256-GCM-SHA384", verify_clients: bool = False,
               groups: str | None = None) -> Answer:
    """A real TLS server (pyOpenSSL): versions from ``minimum`` to TLS 1.3, exactly these suites
    (and, given ``groups``, exactly these key-exchange groups, colon-separated)."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    if groups is not None:
        _set_groups(ctx, groups)
    ctx.set_min_proto_version(minimum)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_cipher_list(f"{tls12}:@SECLEVEL=0".encode())
    ctx.set_tls13_ciphersuites(":".join(tls13).encode())
    ctx.use_certificate_file(str(pki.server("pem")))
    ctx.use_privatekey_file(str(pki.server("key")))
    if verify_clients:
        ctx.load_verify_locations(str(pki.ca_cert))
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, lambda conn, cert, errno, depth, ok: ok)

    def answer(conn: socket.socket, stopped: threading.Event) -> None:
        tls = SSL.Connection(ctx, conn)
        tls.set_accept_state()
        tls.do_handshake()
        tls.recv(1)  # hold the connection, as a MySQL server waiting for the login does

    return answer


def close_on_client_hello(conn: socket.socket, stopped: threading.Event) -> None:
    conn.recv(65536)  # the ClientHello: answered by closing, no alert


def silent(conn: socket.socket, stopped: threading.Event) -> None:
    conn.recv(65536)
    stopped.wait()


def close_mid_handshake(conn: socket.socket, stopped: threading.Event) -> None:
    conn.recv(65536)
    conn.sendall(b"\x16\x03\x03\x00\x40\x02\x00\x00\x3c\x03\x03")  # the start of a ServerHello, then gone


def test_tls13_only_server_with_approved_suites_passes_the_tls1_judgement(pki, serve):
    server = serve(tls_server(pki))
    result = scan("127.0.0.1", server.port, ca=pki.ca_cert, server_name="db.test", connect_timeout=SLOW)
    assert result.server_version == "8.4.0-fake" and result.tls_supported
    assert result.accepted_protocols() == ["TLSv1.3"]
    assert result.protocols["TLSv1.2"].outcome == "refused"
    assert result.protocols["TLSv1.2"].reason == "alert: protocol version"
    assert result.tls13_suites["TLS_AES_128_GCM_SHA256"].reason == "alert: handshake failure"
    assert sorted(result.accepted_suites()) == sorted(APPROVED_TLS13_SUITES)
    assert result.inconclusive() == {}
    assert protocol_problems(result, TLS_POLICY) == [] and suite_problems(result, TLS_POLICY) == []
    assert result.chain[0].san_dns == ["db.test"] and result.chain[0].san_ip == ["127.0.0.1"]
    assert result.verified is True and result.negotiated.group
    assert "OpenSSL" in result.client


def test_tls12_and_an_unapproved_suite_are_named(pki, serve):
    server = serve(tls_server(pki, minimum=SSL.TLS1_2_VERSION,
                              tls13=(*APPROVED_TLS13_SUITES, "TLS_AES_128_GCM_SHA256")))
    result = scan("127.0.0.1", server.port, connect_timeout=SLOW)
    assert result.accepted_protocols() == ["TLSv1.2", "TLSv1.3"]
    assert result.tls12_suites["ECDHE-ECDSA-AES256-GCM-SHA384"].accepted
    assert result.tls12_suites["AES128-SHA"].reason == "alert: handshake failure"
    assert any("TLSv1.2 accepted" in p for p in protocol_problems(result, TLS_POLICY))
    (unapproved,) = [p for p in suite_problems(result, TLS_POLICY) if p.startswith("unapproved")]
    assert "TLS_AES_128_GCM_SHA256" in unapproved and "ECDHE-ECDSA-AES256-GCM-SHA384" in unapproved


def test_close_in_answer_to_the_client_hello_is_a_refusal(serve):
    server = serve(close_on_client_hello)
    probe = handshake("127.0.0.1", server.port, version=SSL.TLS1_2_VERSION, timeout=SLOW)
    assert probe.probe.outcome == "refused"
    assert "closed the connection in answer to the ClientHello" in probe.probe.reason


def test_silence_is_inconclusive_and_fails_tls1_by_name(serve):
    server = serve(silent)
    # The server never answers, so the short wait runs out whatever the machine's load.
    result = scan("127.0.0.1", server.port, timeout=0.5, connect_timeout=SLOW, tls13_suites=(), tls12_suites=())
    assert {p.outcome for p in result.protocols.values()} == {"inconclusive"}
    assert result.protocols["TLSv1"].reason == "no answer within 0.5 s"
    (problem,) = protocol_problems(result, TLS_POLICY)
    assert "inconclusive" in problem and "protocol TLSv1 (no answer within 0.5 s)" in problem
    assert "protocol TLSv1.2" in problem


def test_close_mid_handshake_is_inconclusive(serve):
    server = serve(close_mid_handshake)
    probe = handshake("127.0.0.1", server.port, version=SSL.TLS1_2_VERSION, timeout=SLOW).probe
    assert probe.outcome == "inconclusive" and "mid-handshake" in probe.reason


def test_a_suite_this_client_cannot_offer_is_inconclusive_and_fails_tls1_by_name(pki, serve):
    server = serve(tls_server(pki))
    result = scan("127.0.0.1", server.port, connect_timeout=SLOW, tls12_suites=("AES128-SHA", "NOT-A-REAL-SUITE"))
    assert result.tls12_suites["AES128-SHA"].outcome == "refused"
    bogus = result.tls12_suites["NOT-A-REAL-SUITE"]
    assert bogus.outcome == "inconclusive" and "this client cannot offer it" in bogus.reason
    assert protocol_problems(result, TLS_POLICY) == []
    (problem,) = suite_problems(result, TLS_POLICY)
    assert "TLS 1.2 suite NOT-A-REAL-SUITE" in problem and "inconclusive" in problem


# -- key-exchange groups --------------------------------------------------------------
def _policy_tls(**overrides) -> dict:
    return load_policy({"tls": overrides} if overrides else {}).tls


def test_each_group_is_probed_alone_and_unapproved_ones_are_named(pki, serve):
    server = serve(tls_server(pki, groups="secp384r1:x25519:ffdhe2048"))
    result = scan("127.0.0.1", server.port, connect_timeout=SLOW, tls13_suites=(), tls12_suites=())
    assert sorted(result.accepted_groups()) == ["ffdhe2048", "secp384r1", "x25519"]
    assert result.groups["secp256r1"].outcome == "refused"
    assert result.groups["secp256r1"].reason == "alert: handshake failure"
    assert result.groups["X25519MLKEM768"].outcome == "refused"
    assert set(result.groups) == {*CLASSICAL_GROUPS, *HYBRID_GROUPS}
    tls = _policy_tls(groups=["secp384r1", "x25519"])
    (problem,) = group_problems(result, tls)
    assert problem.startswith("unapproved key-exchange groups accepted: ffdhe2048;")
    assert group_verdicts(result, tls)["ffdhe2048"]["verdict"] == "unapproved"
    assert group_verdicts(result, tls)["secp384r1"]["verdict"] == "approved"
    assert group_problems(result, _policy_tls(groups=["secp384r1", "x25519", "ffdhe2048"])) == []


def test_require_pq_kex_fails_on_a_classical_server_naming_the_missing_hybrids(pki, serve):
    server = serve(tls_server(pki, groups="secp384r1"))
    result = scan("127.0.0.1", server.port, connect_timeout=SLOW, tls13_suites=(), tls12_suites=())
    assert group_problems(result, _policy_tls()) == []  # zero-trust: groups recorded, not judged
    (problem,) = group_problems(result, _policy_tls(require_pq_kex=True))
    assert "post-quantum key exchange is required" in problem
    for hybrid in HYBRID_GROUPS:
        assert f"{hybrid} (refused: alert: handshake failure)" in problem


def test_pq_hybrid_is_detected_positively_on_a_server_that_offers_one(pki, serve):
    """The endpoint is a real OpenSSL TLS server (the one pyOpenSSL's wheel carries, which has
    ML-KEM) behind a minimal MySQL greeting written for the test: no MySQL or MariaDB build
    here offers a hybrid group, so this is the positive case's only real server."""
    server = serve(tls_server(pki, groups="X25519MLKEM768:secp384r1"))
    result = scan("127.0.0.1", server.port, connect_timeout=SLOW, tls13_suites=(), tls12_suites=())
    probe = result.groups["X25519MLKEM768"]
    assert probe.accepted and probe.group == "X25519MLKEM768", probe
    assert result.groups["SecP256r1MLKEM768"].outcome == "refused"
    assert result.negotiated.group == "X25519MLKEM768"  # this client offers the hybrid first by default
    assert group_problems(result, _policy_tls(require_pq_kex=True)) == []
    assert group_problems(result, _policy_tls(require_pq_kex=True, groups=["X25519MLKEM768", "secp384r1"])) == []
    assert group_verdicts(result, _policy_tls())["X25519MLKEM768"]["hybrid"] is True


def test_a_group_this_client_cannot_offer_is_inconclusive_and_named(pki, serve):
    server = serve(tls_server(pki))
    result = scan("127.0.0.1", server.port, connect_timeout=SLOW, tls13_suites=(), tls12_suites=(),
                  groups=("secp384r1", "NotAGroup"))
    bogus = result.groups["NotAGroup"]
    assert bogus.outcome == "inconclusive" and "this client cannot offer it" in bogus.reason
    problems = group_problems(result, _policy_tls(groups=["secp384r1", "x25519"]))
    assert any("group NotAGroup" in p and "inconclusive" in p for p in problems), problems


def test_silence_on_a_group_probe_is_inconclusive_not_refused(serve):
    server = serve(silent)
    probe = handshake("127.0.0.1", server.port, group="x25519", timeout=0.5, connect_timeout=SLOW).probe
    assert probe.outcome == "inconclusive" and probe.reason == "no answer within 0.5 s"


def test_require_pq_kex_needs_an_approved_hybrid_group():
    with pytest.raises(UserError, match="require_pq_kex needs a hybrid group"):
        load_policy({"profile": "cnsa", "tls": {"require_pq_kex": True}})


def test_scan_reports_a_name_mismatch(pki, serve):
    server = serve(tls_server(pki))
    result = scan("127.0.0.1", server.port, ca=pki.ca_cert, server_name="other.test", connect_timeout=SLOW,
                  tls13_suites=(), tls12_suites=())
    assert result.verified is False and "hostname mismatch" in result.verify_error


def test_server_without_tls_is_reported_not_raised(serve):
    server = serve(None)
    result = scan("127.0.0.1", server.port, connect_timeout=SLOW)
    assert result.tls_supported is False and result.accepted_protocols() == []
    assert protocol_problems(result, TLS_POLICY) == [f"127.0.0.1:{server.port} does not offer TLS at all"]


def test_client_certificate_verdict_reads_the_servers_alert(pki, serve):
    server = serve(tls_server(pki, verify_clients=True))
    foreign = client_certificate_verdict("127.0.0.1", server.port, cert=pki.negative("foreign_ca", "pem"),
                                         key=pki.negative("foreign_ca", "key"), wait=SLOW)
    assert foreign is not None and "unknown ca" in foreign
    # A certificate the server accepts: it then waits for the login, so the verdict is silence.
    assert client_certificate_verdict("127.0.0.1", server.port, cert=pki.client("app", "pem"),
                                      key=pki.client("app", "key"), wait=1) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_nothing_listening_is_one_clear_error():
    port = _free_port()
    with pytest.raises(UserError, match=f"cannot reach 127.0.0.1:{port}"):
        scan("127.0.0.1", port, timeout=SLOW)


def test_a_server_that_is_not_mysql_is_one_clear_error(serve):
    server = serve(None, greeting_bytes=b"HTTP/1.1 400 Bad Request\r\n\r\n")
    with pytest.raises(UserError, match="does not speak the MySQL protocol"):
        scan("127.0.0.1", server.port, timeout=SLOW)


def test_a_server_that_never_greets_is_one_clear_error():
    with socket.create_server(("127.0.0.1", 0)) as mute:  # the kernel accepts; nobody ever writes
        port = mute.getsockname()[1]
        with pytest.raises(UserError, match=f"127.0.0.1:{port} sent no MySQL greeting within 0.5 s"):
            scan("127.0.0.1", port, connect_timeout=0.5)


# -- `ztm tls-scan HOST:PORT` ---------------------------------------------------------
def ztm(capsys, *argv: str) -> tuple[int, str, str]:
    from ztm.cli import main

    code = main(["tls-scan", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_the_matrix(pki, serve, capsys):
    server = serve(tls_server(pki))
    code, out, err = ztm(capsys, f"127.0.0.1:{server.port}", "--ca", str(pki.ca_cert), "--server-name", "db.test")
    assert code == 0 and err == ""
    assert "TLSv1.2                            refused      alert: protocol version" in out
    assert "TLS_AES_256_GCM_SHA384             ACCEPTED" in out and "chain and name verified" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["nonsense"], "expected HOST:PORT"),
    (["127.0.0.1:0"], "port 1-65535"),
    (["127.0.0.1:70000"], "port 1-65535"),
    (["::1:3306"], "needs brackets"),
    (["[not-v6]:3306"], "not an IPv6 address"),
    (["127.0.0.1:3306", "--ca", "/nonexistent/ca.pem"], "cannot read CA file /nonexistent/ca.pem"),
    (["127.0.0.1:3306", "--server-name", "db.test"], "only with --ca"),
    (["127.0.0.1:3306", "--timeout", "0"], "--timeout"),
])
def test_cli_bad_input_is_one_line(capsys, argv, message):
    code, out, err = ztm(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("ztm: ") and message in err


def test_cli_ca_that_is_not_a_certificate(tmp_path, capsys):
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    code, _, err = ztm(capsys, "127.0.0.1:3306", "--ca", str(bogus))
    assert code == 2 and err == f"ztm: CA file {bogus} holds no PEM certificate\n"


def test_cli_unreachable_and_not_mysql_are_one_line(serve, capsys):
    port = _free_port()
    code, _, err = ztm(capsys, f"127.0.0.1:{port}")
    assert code == 2 and err.startswith(f"ztm: cannot reach 127.0.0.1:{port}: ") and err.count("\n") == 1
    server = serve(None, greeting_bytes=b"SSH-2.0-OpenSSH_9.2\r\n")
    code, _, err = ztm(capsys, f"127.0.0.1:{server.port}")
    assert code == 2 and "does not speak the MySQL protocol" in err and err.count("\n") == 1


def test_cli_console_script_has_no_traceback():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "ztm.cli", "tls-scan", f"127.0.0.1:{_free_port()}"],
                          capture_output=True, text=True, timeout=SLOW)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1


# -- MySQL's administrative interface ---------------------------------------------------
def _admin(**live) -> dict:
    return {"admin_address": "10.0.0.1", "admin_port": "33062", "admin_tls_version": "TLSv1.3",
            "admin_tls_ciphersuites": ":".join(APPROVED_TLS13_SUITES), **live}


def test_admin_interface_judged_like_the_main_one():
    from ztm.checks.tls import admin_interface_problems

    assert admin_interface_problems(_admin(), TLS_POLICY) == []
    weak = admin_interface_problems(_admin(admin_tls_version="TLSv1.2,TLSv1.3", admin_tls_ciphersuites=""),
                                    TLS_POLICY)
    assert len(weak) == 2 and "allows TLSv1.2" in weak[0] and "empty admin_tls_ciphersuites" in weak[1]
    (extra,) = admin_interface_problems(_admin(admin_tls_ciphersuites="TLS_AES_128_GCM_SHA256"), TLS_POLICY)
    assert "unapproved TLS 1.3 suites TLS_AES_128_GCM_SHA256" in extra
    (unset,) = admin_interface_problems(_admin(admin_tls_version=""), TLS_POLICY)
    assert "no admin_tls_version" in unset
