"""The MySQL-protocol TLS scanner: packets byte for byte, and real handshakes with a small
MySQL-speaking TLS server on loopback (Python's ssl module on the server side)."""

from __future__ import annotations

import socket
import ssl
import struct
import threading

import pytest

from provision.pki import PkiLayout, issue_all
from ztm.errors import UserError
from ztm.tls_scan import CLIENT_SSL, parse_greeting, scan, ssl_request_packet

SERVER_VERSION = b"8.4.0-fake"


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


class FakeMySQL:
    """Greets, reads the SSLRequest, then handshakes with ``context`` (None: no TLS offered)."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(greeting(0x000FF7FF | (CLIENT_SSL if self.context else 0)))
                if self.context is None:
                    continue
                try:
                    header = conn.recv(4)
                    conn.recv(int.from_bytes(header[:3], "little"))
                    tls = self.context.wrap_socket(conn, server_side=True)
                    tls.recv(1)
                except (OSError, ssl.SSLError):
                    pass

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    layout = PkiLayout(tmp_path_factory.mktemp("pki"))
    issue_all(layout, server_name="db.test", server_address="127.0.0.1", users={"app": "app_user"})
    return layout


def tls13_only(pki: PkiLayout) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(pki.server("pem"), pki.server("key"))
    return ctx


def test_scan_of_a_tls13_only_server(pki):
    server = FakeMySQL(tls13_only(pki))
    try:
        result = scan("127.0.0.1", server.port, ca=pki.ca_cert, server_name="db.test")
    finally:
        server.close()
    assert result.server_version == "8.4.0-fake" and result.tls_supported
    assert result.accepted_protocols() == ["TLSv1.3"]
    assert "protocol version" in result.protocols["TLSv1.2"].reason
    assert result.tls13_suites["TLS_AES_256_GCM_SHA384"].accepted
    assert not any(p.accepted for p in result.tls12_suites.values())
    assert result.chain[0].san_dns == ["db.test"] and result.chain[0].san_ip == ["127.0.0.1"]
    assert result.verified is True and result.negotiated.group


def test_scan_reports_a_name_mismatch(pki):
    server = FakeMySQL(tls13_only(pki))
    try:
        result = scan("127.0.0.1", server.port, ca=pki.ca_cert, server_name="other.test")
    finally:
        server.close()
    assert result.verified is False and "hostname mismatch" in result.verify_error


def test_server_without_tls_is_reported_not_raised():
    server = FakeMySQL(None)
    try:
        result = scan("127.0.0.1", server.port)
    finally:
        server.close()
    assert result.tls_supported is False and result.accepted_protocols() == []


def test_nothing_listening_is_one_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=f"cannot reach 127.0.0.1:{port}"):
        scan("127.0.0.1", port, timeout=1)
