"""A TLS scanner that speaks the MySQL protocol.

MySQL does not start TLS on connect: the server sends its greeting in plaintext, the
client answers with an SSLRequest packet, and only then does the TLS handshake begin.
Generic scanners (nmap, testssl.sh) need a STARTTLS mode for that; this one does it
directly with pyOpenSSL, one fresh connection per probe, and closes right after the
handshake (no login is ever attempted).
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from OpenSSL import SSL

from ztm.errors import UserError
from ztm.text import printable

CLIENT_LONG_PASSWORD = 0x1
CLIENT_PROTOCOL_41 = 0x200
CLIENT_SSL = 0x800
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_PLUGIN_AUTH = 0x80000
SSL_REQUEST_FLAGS = (CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SSL | CLIENT_SECURE_CONNECTION
                     | CLIENT_PLUGIN_AUTH)
MAX_PACKET = 16 * 1024 * 1024
UTF8MB4_GENERAL_CI = 45

PROTOCOLS: dict[str, int] = {
    "TLSv1": SSL.TLS1_VERSION,
    "TLSv1.1": SSL.TLS1_1_VERSION,
    "TLSv1.2": SSL.TLS1_2_VERSION,
    "TLSv1.3": SSL.TLS1_3_VERSION,
}
TLS13_SUITES = (
    "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256",
    "TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256",
)
# The TLS 1.2 suites servers commonly offer, strong and weak (OpenSSL names). Only suites
# current OpenSSL can still offer: one it cannot is an inconclusive probe, failing ZTM-TLS-1.
TLS12_SUITES = (
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305", "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES256-SHA384",
    "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "AES256-GCM-SHA384", "AES128-GCM-SHA256",
    "AES256-SHA", "AES128-SHA",
)
# Key-exchange groups (OpenSSL names), each offered alone. Classical: the named groups of
# RFC 8446 §4.2.7. Hybrid post-quantum: ML-KEM combined with a classical group
# (draft-ietf-tls-ecdhe-mlkem); offered only where this client's OpenSSL has them (3.5+),
# otherwise the probe is inconclusive and says so.
CLASSICAL_GROUPS = (
    "x25519", "x448", "secp256r1", "secp384r1", "secp521r1",
    "ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192",
)
HYBRID_GROUPS = ("X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024")
# TLS 1.2 suites whose key exchange uses a group: with only these offered, a TLS 1.2 server
# cannot fall back to RSA key exchange, where no group is negotiated.
_GROUP_TLS12_SUITES = "kECDHE:kDHE"


def is_hybrid(group: str) -> bool:
    """Whether a group name is a post-quantum hybrid (ML-KEM with a classical group)."""
    return "mlkem" in group.lower()


def canonical_group(name: str) -> str:
    """OpenSSL spells some groups two ways (prime256v1 and secp256r1; X25519 and x25519)."""
    aliases = {"prime256v1": "secp256r1", "p-256": "secp256r1", "p-384": "secp384r1", "p-521": "secp521r1"}
    lowered = name.lower()
    return aliases.get(lowered, lowered)


# -- the MySQL side -------------------------------------------------------------------
@dataclass(frozen=True)
class Greeting:
    protocol: int
    server_version: str
    connection_id: int
    capabilities: int

    @property
    def tls_supported(self) -> bool:
        return bool(self.capabilities & CLIENT_SSL)


def parse_greeting(payload: bytes) -> Greeting:
    """Parse a protocol-10 handshake packet (payload without the 4-byte header)."""
    if not payload:
        raise ValueError("empty greeting")
    if payload[0] == 0xFF:  # an error packet instead of a greeting ("Host ... is blocked", ...)
        code = struct.unpack_from("<H", payload, 1)[0]
        message = payload[3:].lstrip(b"#")[5:] if payload[3:4] == b"#" else payload[3:]
        raise ConnectionRefusedError(f"server error {code}: {printable(message.decode(errors='replace'))}")
    if payload[0] != 10:
        raise ValueError(f"not a MySQL protocol-10 greeting (first byte {payload[0]})")
    end = payload.index(b"\0", 1)
    version = printable(payload[1:end].decode(errors="replace"))  # shown to the user: no terminal control
    pos = end + 1
    connection_id = struct.unpack_from("<I", payload, pos)[0]
    pos += 4 + 8 + 1  # connection id, auth-plugin-data part 1, filler
    caps_low = struct.unpack_from("<H", payload, pos)[0]
    pos += 2
    caps_high = 0
    if len(payload) >= pos + 5:
        pos += 1 + 2  # character set, status flags
        caps_high = struct.unpack_from("<H", payload, pos)[0]
    return Greeting(10, version, connection_id, caps_low | (caps_high << 16))


def ssl_request_packet() -> bytes:
    """The 32-byte SSLRequest payload with its header (sequence id 1)."""
    payload = struct.pack("<IIB23x", SSL_REQUEST_FLAGS, MAX_PACKET, UTF8MB4_GENERAL_CI)
    return struct.pack("<I", len(payload))[:3] + b"\x01" + payload


SCAN_DEADLINE = 300.0  # seconds for a whole scan unless the caller says otherwise
MAX_GREETING = 1 << 16  # a MySQL greeting is a few hundred bytes; a huge length is not one


def _read_packet(sock: socket.socket, deadline: float | None = None, limit: int | None = None) -> bytes:
    header = _read_exact(sock, 4, deadline)
    length = int.from_bytes(header[:3], "little")
    if limit is not None and length > limit:
        raise ValueError(f"its first packet announces {length} bytes, no greeting is that long")
    return _read_exact(sock, length, deadline)


def _read_exact(sock: socket.socket, n: int, deadline: float | None = None) -> bytes:
    """``n`` bytes; TimeoutError once ``deadline`` (time.monotonic) passes, however the
    server trickles them (a timeout per recv alone would let one byte a second go on forever)."""
    data = bytearray()
    while len(data) < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
        chunk = sock.recv(min(n - len(data), 65536))
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
    return bytes(data)


def _open(host: str, port: int, timeout: float) -> tuple[socket.socket, Greeting]:
    """Connect and read the greeting, both within ``timeout`` seconds in all."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except UnicodeError as exc:  # the idna codec: empty or over-long labels, bad characters
        raise UserError(f"{host!r} is not a valid host name ({exc})") from None
    except OSError as exc:
        raise UserError(f"cannot reach {host}:{port}: {exc.strerror or exc}") from None
    try:
        greeting = parse_greeting(_read_packet(sock, deadline, MAX_GREETING))
    except ConnectionRefusedError as exc:
        sock.close()
        raise UserError(f"{host}:{port} refused the connection: {exc}") from None
    except TimeoutError:
        sock.close()
        raise UserError(f"{host}:{port} sent no MySQL greeting within {timeout:g} s") from None
    except (OSError, ValueError, struct.error) as exc:
        sock.close()
        raise UserError(f"{host}:{port} does not speak the MySQL protocol: {exc}") from None
    return sock, greeting


# -- one TLS handshake ----------------------------------------------------------------
ACCEPTED, REFUSED, INCONCLUSIVE = "accepted", "refused", "inconclusive"


@dataclass
class Probe:
    """One handshake attempt with the client restricted to one version or suite.

    ``refused`` is claimed only on proof: a TLS alert from the server, or the server closing
    the connection in answer to the ClientHello. Anything else (no answer, a suite this client
    cannot offer, a close in mid-handshake) is ``inconclusive``: it proves neither way."""

    outcome: str
    reason: str = ""
    version: str | None = None
    cipher: str | None = None
    group: str | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome == ACCEPTED

    @property
    def inconclusive(self) -> bool:
        return self.outcome == INCONCLUSIVE


@dataclass
class Handshake:
    probe: Probe
    chain: list[x509.Certificate] = field(default_factory=list)
    verify_error: str | None = None


def client_description() -> str:
    """The TLS library whose offers the probes are limited to (recorded with the scan)."""
    import OpenSSL

    return f"pyOpenSSL {OpenSSL.__version__}, {SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()}"


def _set_groups(ctx: SSL.Context, groups: str) -> None:
    """Restrict the groups the client offers (``SSL_CTX_set1_groups_list``).

    pyOpenSSL has no method for it, but the binding it shares with cryptography exposes the
    same OpenSSL function under its older name, ``SSL_CTX_set1_curves_list`` (OpenSSL
    defines one as the other); it takes every group name, hybrids included."""
    from OpenSSL._util import lib

    if lib.SSL_CTX_set1_curves_list(ctx._context, groups.encode()) != 1:
        raise SSL.Error([("", "", f"this OpenSSL does not know the group {groups}")])


def _context(version: int | None, tls13_suite: str | None, tls12_suite: str | None,
             ca: Path | None, cert: Path | None, key: Path | None, group: str | None = None) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if version is not None:
        ctx.set_min_proto_version(version)
        ctx.set_max_proto_version(version)
    # Security level 0 lets the client *offer* legacy versions and suites; what the server
    # accepts is the question, so the client must not refuse on its own.
    tls12 = tls12_suite or (_GROUP_TLS12_SUITES if group else "ALL")
    ctx.set_cipher_list(f"{tls12}:@SECLEVEL=0".encode())
    if group is not None:
        _set_groups(ctx, group)
    if tls13_suite is not None:
        ctx.set_tls13_ciphersuites(tls13_suite.encode())
    if ca is not None:
        ctx.load_verify_locations(str(ca))
    ctx.set_verify(SSL.VERIFY_NONE, lambda *args: True)
    if cert is not None and key is not None:
        ctx.use_certificate_file(str(cert))
        ctx.use_privatekey_file(str(key))
    return ctx


class _Wire:
    """Drives a memory-BIO TLS connection over a plain socket.

    The scanner, not OpenSSL, moves the bytes: so it knows whether the ClientHello left,
    whether the server answered at all, and it times out with a plain socket timeout."""

    def __init__(self, sock: socket.socket, conn: SSL.Connection) -> None:
        self.sock, self.conn = sock, conn
        self.sent = self.received = 0
        self.eof = False

    def flush(self) -> None:
        while True:
            try:
                data = self.conn.bio_read(65536)
            except SSL.WantReadError:
                return
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                self._closed()
                return
            self.sent += len(data)

    def _closed(self) -> None:
        if not self.eof:
            self.eof = True
            self.conn.bio_shutdown()

    def run(self, step: Callable[[], Any], timeout: float) -> Any:
        """Call ``step`` until it stops wanting bytes; TimeoutError when the server stays
        silent for ``timeout`` seconds in all, SSL.Error when the TLS layer fails."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                result = step()
            except SSL.WantReadError:
                self.flush()
                if self.eof:
                    raise SSL.SysCallError(-1, "Unexpected EOF") from None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError from None
                self.sock.settimeout(remaining)
                try:
                    data = self.sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if data:
                    self.received += len(data)
                    self.conn.bio_write(data)
                else:
                    self._closed()
                continue
            self.flush()
            return result


_ALERT = re.compile(r"\balert\b[:\s]*(?P<name>[a-z0-9 _]+)$", re.IGNORECASE)


def _refusal(wire: _Wire, exc: SSL.Error) -> Probe:
    """What a failed handshake proves."""
    reason = _ssl_reason(exc)
    if wire.sent == 0:
        return Probe(INCONCLUSIVE, f"this client cannot offer it ({client_description()}): {reason}")
    alert = _ALERT.search(reason)
    if alert and wire.received:
        return Probe(REFUSED, f"alert: {alert['name'].strip()}")
    if wire.eof and wire.received == 0:
        return Probe(REFUSED, "the server closed the connection in answer to the ClientHello (no alert)")
    if wire.eof:
        return Probe(INCONCLUSIVE, f"the connection closed in mid-handshake without an alert "
                                   f"({wire.received} bytes received): {reason}")
    return Probe(INCONCLUSIVE, f"the handshake failed on this client's side: {reason}")


def _start_tls(host: str, port: int, ctx: SSL.Context, server_name: str | None,
               connect_timeout: float) -> tuple[socket.socket, _Wire] | Probe:
    """Greeting, SSLRequest, and a client TLS connection ready to handshake (or why not)."""
    sock, greeting = _open(host, port, connect_timeout)
    if not greeting.tls_supported:
        sock.close()
        return Probe(REFUSED, "the server does not offer TLS (no CLIENT_SSL capability)")
    try:
        sock.sendall(ssl_request_packet())
    except OSError as exc:
        sock.close()
        return Probe(INCONCLUSIVE, f"the connection closed before the handshake: {exc.strerror or exc}")
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    if server_name:
        conn.set_tlsext_host_name(server_name.encode())
    return sock, _Wire(sock, conn)


def handshake(host: str, port: int, *, version: int | None = None, tls13_suite: str | None = None,
              tls12_suite: str | None = None, ca: Path | None = None, server_name: str | None = None,
              cert: Path | None = None, key: Path | None = None, timeout: float = 10.0,
              connect_timeout: float | None = None, group: str | None = None) -> Handshake:
    """One fresh connection, one handshake; no MySQL login is ever sent.

    ``timeout`` bounds the wait for the server's TLS answers, ``connect_timeout`` (default:
    the same) the TCP connect and the MySQL greeting; ``group`` the only key-exchange group
    the client offers."""
    try:
        ctx = _context(version, tls13_suite, tls12_suite, ca, cert, key, group)
    except SSL.Error as exc:
        return Handshake(Probe(INCONCLUSIVE, f"this client cannot offer it ({client_description()}): "
                                             f"{_ssl_reason(exc)}"))
    verify_errors: list[str] = []
    if ca is not None:
        def remember(conn: SSL.Connection, c: Any, errno: int, depth: int, ok: int) -> bool:
            if not ok:
                verify_errors.append(f"{_verify_error(errno)} (certificate depth {depth})")
            return bool(ok)

        ctx.set_verify(SSL.VERIFY_PEER, remember)
    started = _start_tls(host, port, ctx, server_name, timeout if connect_timeout is None else connect_timeout)
    if isinstance(started, Probe):
        return Handshake(started)
    sock, wire = started
    try:
        if server_name and ca is not None:
            _check_host(wire.conn, server_name)
        try:
            wire.run(wire.conn.do_handshake, timeout)
        except TimeoutError:
            return Handshake(Probe(INCONCLUSIVE, f"no answer within {timeout:g} s"))
        except SSL.Error as exc:
            if verify_errors:
                reason = "; ".join(verify_errors)
                return Handshake(Probe(INCONCLUSIVE, reason), verify_error=reason)
            probe = _refusal(wire, exc)
            return Handshake(probe, verify_error=probe.reason if ca else None)
        conn = wire.conn
        probe = Probe(ACCEPTED, "", conn.get_protocol_version_name(), conn.get_cipher_name(), _group(conn))
        offered = tls13_suite or tls12_suite
        if offered and probe.cipher != offered:
            probe = Probe(INCONCLUSIVE, f"negotiated {probe.cipher} although only {offered} was offered",
                          probe.version, probe.cipher, probe.group)
        elif group and (probe.group is None or canonical_group(probe.group) != canonical_group(group)):
            probe = Probe(INCONCLUSIVE, f"negotiated group {probe.group} although only {group} was offered",
                          probe.version, probe.cipher, probe.group)
        chain = list(conn.get_peer_cert_chain(as_cryptography=True) or [])
        with contextlib.suppress(SSL.Error, OSError):
            conn.shutdown()
            wire.flush()
        return Handshake(probe, chain)
    finally:
        sock.close()


def client_certificate_verdict(host: str, port: int, *, cert: Path, key: Path, ca: Path | None = None,
                               server_name: str | None = None, wait: float = 8.0,
                               connect_timeout: float = 30.0) -> str | None:
    """Present ``cert`` and wait for the server's verdict without sending anything else.

    In TLS 1.3 the server judges the client certificate after the client's handshake has
    finished, and says so with an alert. A MySQL client that writes its login at once may
    lose that alert to the connection reset; here nothing is written, so the alert is read.
    Returns the alert text, or None when the server kept the connection open for ``wait``
    seconds (accepted; the servers' own login timeout is longer)."""
    ctx = _context(SSL.TLS1_3_VERSION, None, None, None, cert, key)
    started = _start_tls(host, port, ctx, server_name, connect_timeout)
    if isinstance(started, Probe):
        return started.reason
    sock, wire = started
    try:
        try:
            wire.run(wire.conn.do_handshake, connect_timeout)
        except TimeoutError:
            return f"the server did not complete the handshake within {connect_timeout:g} s"
        wire.run(lambda: wire.conn.recv(1), wait)
    except TimeoutError:
        return None  # silence: the server is waiting for the login, the certificate passed
    except SSL.ZeroReturnError:
        return "the server closed TLS without an alert"
    except SSL.Error as exc:
        reason = _ssl_reason(exc)
        if wire.eof and not _ALERT.search(reason):
            return "connection closed without an alert"
        return reason
    finally:
        sock.close()
    return None


def _check_host(conn: SSL.Connection, name: str) -> None:
    """Ask OpenSSL to verify the server name against the certificate's SAN."""
    from OpenSSL._util import lib

    param = lib.SSL_get0_param(conn._ssl)
    encoded = name.encode()
    if all(part.isdigit() for part in name.split(".")) and name.count(".") == 3:
        lib.X509_VERIFY_PARAM_set1_ip_asc(param, encoded)
    else:
        lib.X509_VERIFY_PARAM_set1_host(param, encoded, len(encoded))


def _verify_error(errno: int) -> str:
    from OpenSSL._util import ffi, lib

    return ffi.string(lib.X509_verify_cert_error_string(errno)).decode()


def _group(conn: SSL.Connection) -> str | None:
    try:
        name = conn.get_group_name()
    except (AttributeError, SSL.Error):
        return None
    return name.decode() if isinstance(name, bytes) else name


def _ssl_reason(exc: Exception) -> str:
    parts = []
    for entry in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(entry, tuple) and entry:
            parts.append(str(entry[-1]))
    text = "; ".join(parts) or str(exc) or type(exc).__name__
    return text.replace("tlsv1 alert ", "alert: ").replace("sslv3 alert ", "alert: ")


# -- the scan -------------------------------------------------------------------------
@dataclass
class CertificateInfo:
    subject: str
    issuer: str
    serial: str
    not_before: str
    not_after: str
    days_left: int
    san_dns: list[str]
    san_ip: list[str]
    key: str
    signature: str

    @classmethod
    def of(cls, cert: x509.Certificate) -> CertificateInfo:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            dns, ips = san.get_values_for_type(x509.DNSName), [str(i) for i in san.get_values_for_type(x509.IPAddress)]
        except x509.ExtensionNotFound:
            dns, ips = [], []
        left = (cert.not_valid_after_utc - datetime.now(UTC)).days
        return cls(cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), format(cert.serial_number, "x"),
                   cert.not_valid_before_utc.isoformat(), cert.not_valid_after_utc.isoformat(), left, dns, ips,
                   _describe_key(cert), cert.signature_algorithm_oid._name)


def _describe_key(cert: x509.Certificate) -> str:
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(key).__name__


@dataclass
class ScanResult:
    address: str
    server_version: str
    tls_supported: bool
    client: str = field(default_factory=client_description)
    protocols: dict[str, Probe] = field(default_factory=dict)
    tls13_suites: dict[str, Probe] = field(default_factory=dict)
    tls12_suites: dict[str, Probe] = field(default_factory=dict)
    groups: dict[str, Probe] = field(default_factory=dict)
    negotiated: Probe | None = None
    chain: list[CertificateInfo] = field(default_factory=list)
    verified: bool | None = None
    verify_error: str | None = None

    def tables(self) -> dict[str, dict[str, Probe]]:
        return {"protocol": self.protocols, "TLS 1.3 suite": self.tls13_suites, "TLS 1.2 suite": self.tls12_suites,
                "group": self.groups}

    def accepted_protocols(self) -> list[str]:
        return [name for name, probe in self.protocols.items() if probe.accepted]

    def accepted_suites(self) -> list[str]:
        return [name for table in (self.tls13_suites, self.tls12_suites) for name, p in table.items() if p.accepted]

    def accepted_groups(self) -> list[str]:
        return [name for name, probe in self.groups.items() if probe.accepted]

    def inconclusive(self, *kinds: str) -> dict[str, Probe]:
        """Probes that proved neither acceptance nor refusal, as 'kind name' -> probe."""
        return {f"{kind} {name}": probe for kind, table in self.tables().items() if not kinds or kind in kinds
                for name, probe in table.items() if probe.inconclusive}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scan(host: str, port: int, *, ca: Path | None = None, server_name: str | None = None,
         cert: Path | None = None, key: Path | None = None, timeout: float = 10.0,
         connect_timeout: float | None = None, tls13_suites: tuple[str, ...] = TLS13_SUITES,
         tls12_suites: tuple[str, ...] = TLS12_SUITES, groups: tuple[str, ...] = CLASSICAL_GROUPS + HYBRID_GROUPS,
         deadline: float | None = None, progress: Callable[[int, int, str], None] | None = None) -> ScanResult:
    """Probe every protocol version, suite and key-exchange group alone; one verified
    handshake for the chain.

    ``deadline`` bounds the whole scan in seconds: a probe it leaves no time for is
    inconclusive ("not probed"), never refused. ``progress(done, total, name)`` is called
    before each probe. Raises UserError when the server cannot be reached or does not speak
    MySQL at all; a later probe that cannot connect is recorded as inconclusive instead."""
    connect_timeout = timeout if connect_timeout is None else connect_timeout
    end = None if deadline is None else time.monotonic() + deadline
    sock, greeting = _open(host, port, connect_timeout if end is None else min(connect_timeout, deadline))
    sock.close()
    result = ScanResult(f"{host}:{port}", greeting.server_version, greeting.tls_supported)
    if not greeting.tls_supported:
        return result
    plan: list[tuple[dict[str, Probe] | None, str, dict[str, Any]]] = [
        *((result.protocols, name, {"version": version}) for name, version in PROTOCOLS.items()),
        *((result.tls13_suites, suite, {"version": SSL.TLS1_3_VERSION, "tls13_suite": suite})
          for suite in tls13_suites),
        *((result.tls12_suites, suite, {"version": SSL.TLS1_2_VERSION, "tls12_suite": suite})
          for suite in tls12_suites),
        *((result.groups, group, {"group": group}) for group in groups),
        (None, "default handshake", {}),
        *([(None, "chain and name", {"ca": ca, "server_name": server_name})] if ca is not None else []),
    ]
    for done, (table, name, kwargs) in enumerate(plan):
        if progress is not None:
            progress(done, len(plan), name)
        left = None if end is None else end - time.monotonic()
        if left is not None and left <= 0:
            shake = Handshake(Probe(INCONCLUSIVE, f"not probed: the scan's deadline of {deadline:g} s passed"))
        else:
            try:
                shake = handshake(host, port, cert=cert, key=key, timeout=min(timeout, left or timeout),
                                  connect_timeout=min(connect_timeout, left or connect_timeout), **kwargs)
            except UserError as exc:
                shake = Handshake(Probe(INCONCLUSIVE, str(exc)))
        if table is not None:
            table[name] = shake.probe
        elif "ca" in kwargs:
            result.verified = shake.probe.accepted
            result.verify_error = None if shake.probe.accepted else shake.probe.reason
        else:
            result.negotiated = shake.probe
            result.chain = [CertificateInfo.of(c) for c in shake.chain]
    return result
