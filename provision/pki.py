"""The lab PKI, built with `cryptography` (no openssl subprocess).

One CA issues the server certificate and one client certificate per role; a CRL revokes
one client. A separate evidence CA issues only the evidence signer (code-signing EKU) and the
lab TSA's time-stamping certificate, with its own CRL: a database client key can never mint a
certificate an auditor's evidence CA accepts. For negative tests it also makes an expired
client certificate and one from a foreign CA, all with a subject that an account would
otherwise accept, so that a refusal can only be due to what is wrong with them. Private keys are written 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provision.files import write_private, write_public
from ztm.errors import UserError
from ztm.x509_names import oneline

ORG = "ZTM Lab"
CA_NAME = "ZTM Lab Root CA"
EVIDENCE_CA_NAME = "ZTM Lab Evidence CA"
SIGNER_NAME = "ZTM evidence signer"
FOREIGN_CA_NAME = "Foreign Lookalike CA"
LEAF_DAYS = 90
CA_DAYS = 3650
CRL_DAYS = 30

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class PkiLayout:
    root: Path

    @property
    def ca_dir(self) -> Path:  # stays off the database host
        return self.root / "ca"

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.ca_dir / "ca.key"

    @property
    def crl(self) -> Path:
        return self.ca_dir / "crl.pem"

    def server(self, suffix: str) -> Path:
        return self.root / "server" / f"server.{suffix}"

    def client(self, role: str, suffix: str) -> Path:
        return self.root / "clients" / f"{role}.{suffix}"

    def negative(self, kind: str, suffix: str) -> Path:
        return self.root / "negative" / f"{kind}.{suffix}"

    def signer(self, suffix: str) -> Path:
        return self.root / "evidence" / f"signer.{suffix}"

    @property
    def evidence_ca_dir(self) -> Path:  # the auditor receives evidence-ca.pem (and the CRL), never the key
        return self.root / "evidence-ca"

    @property
    def evidence_ca_cert(self) -> Path:
        return self.evidence_ca_dir / "evidence-ca.pem"

    @property
    def evidence_ca_key(self) -> Path:
        return self.evidence_ca_dir / "evidence-ca.key"

    @property
    def evidence_crl(self) -> Path:
        return self.evidence_ca_dir / "evidence-crl.pem"


def subject_for(user: str) -> x509.Name:
    """The client subject an account is bound to (REQUIRE SUBJECT)."""
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, user)])


def ca_subject(cn: str = CA_NAME) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey))
    return key


def _make_ca(name: x509.Name, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA384())
    )


@dataclass
class Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def issue(self, subject: x509.Name, public_key, *, server: bool = False, names: tuple[str, ...] = (),
              addresses: tuple[str, ...] = (), not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None, usage: ExtendedKeyUsageOID | None = None) -> x509.Certificate:
        now = _now()
        eku = usage or (ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(self.cert.subject)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(minutes=5))
            .not_valid_after(not_after or now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(self.key, hashes.SHA384())


def _issuer(cert_path: Path, key_path: Path) -> Issuer:
    key = _load_key(key_path)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return Issuer(x509.load_pem_x509_certificate(cert_path.read_bytes()), key)


def _write_pair(cert_path: Path, key_path: Path, cert: x509.Certificate, key: PrivateKey) -> None:
    write_private(key_path, _pem_key(key))
    write_public(cert_path, _pem_cert(cert))


def ensure_ca(layout: PkiLayout) -> Issuer:
    """Create the CA once; an existing CA is kept (rotation reissues leaves, not the root)."""
    if not layout.ca_cert.exists():
        key = ec.generate_private_key(ec.SECP384R1())
        _write_pair(layout.ca_cert, layout.ca_key, _make_ca(ca_subject(), key), key)
    layout.ca_dir.chmod(0o700)
    return _issuer(layout.ca_cert, layout.ca_key)


@dataclass(frozen=True)
class Revocation:
    serial: int
    reason: x509.ReasonFlags
    date: dt.datetime


def issue_all(layout: PkiLayout, *, server_name: str, server_address: str, users: dict[str, str],
              revoked_role: str = "app", also_revoked: tuple[Revocation, ...] = ()) -> None:
    """Issue (or reissue: see ``rotate``) the server, client, negative and signer certificates and the CRL.

    ``users`` maps role -> database account; ``revoked_role`` gets a second, revoked
    certificate with the same subject as its valid one; ``also_revoked`` stay on the CRL.
    """
    ca = ensure_ca(layout)
    now = _now()

    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                               x509.NameAttribute(NameOID.COMMON_NAME, server_name)]),
                    key.public_key(), server=True, names=(server_name,), addresses=(server_address,))
    _write_pair(layout.server("pem"), layout.server("key"), cert, key)
    write_public(layout.root / "server" / "ca.pem", layout.ca_cert.read_bytes())

    for role, user in users.items():
        key = ec.generate_private_key(ec.SECP256R1())
        _write_pair(layout.client(role, "pem"), layout.client(role, "key"),
                    ca.issue(subject_for(user), key.public_key()), key)

    target_subject = subject_for(users[revoked_role])
    # Revoked: same subject as a valid certificate, so only the CRL can refuse it.
    key = ec.generate_private_key(ec.SECP256R1())
    revoked = ca.issue(target_subject, key.public_key())
    _write_pair(layout.negative("revoked", "pem"), layout.negative("revoked", "key"), revoked, key)
    # Expired: same subject, validity entirely in the past.
    key = ec.generate_private_key(ec.SECP256R1())
    expired = ca.issue(target_subject, key.public_key(), not_before=now - dt.timedelta(days=60),
                       not_after=now - dt.timedelta(days=1))
    _write_pair(layout.negative("expired", "pem"), layout.negative("expired", "key"), expired, key)
    # Foreign: a lookalike CA with the same issuer DN as ours, issuing the same subject.
    foreign_key = ec.generate_private_key(ec.SECP384R1())
    foreign = Issuer(_make_ca(ca_subject(), foreign_key), foreign_key)
    key = ec.generate_private_key(ec.SECP256R1())
    _write_pair(layout.negative("foreign_ca", "pem"), layout.negative("foreign_ca", "key"),
                foreign.issue(target_subject, key.public_key()), key)

    write_crl(layout, ca, [*also_revoked, Revocation(revoked.serial_number, x509.ReasonFlags.key_compromise, now)])

    ensure_signer(layout)


def ensure_signer(layout: PkiLayout) -> None:
    """The evidence CA and a signer from it: issued when missing or when the signer predates the evidence CA."""
    signer = layout.signer("pem")
    if (not signer.exists() or not layout.evidence_ca_cert.exists()
            or cert_subject_issuer(signer)[1] != oneline(ca_subject(EVIDENCE_CA_NAME))):
        issue_signer(layout)


def rotated_paths(layout: PkiLayout, roles: list[str]) -> list[Path]:
    """The in-service certificates a rotation replaces (and therefore revokes)."""
    return [layout.server("pem"), *(layout.client(role, "pem") for role in roles)]


def rotate(layout: PkiLayout, *, server_name: str, server_address: str, users: dict[str, str]) -> list[Revocation]:
    """Reissue every leaf under the same CAs and revoke the ones replaced (reason superseded).

    The evidence signer is rotated too (``rotate_signer``), on the evidence CA's CRL.

    Revocations already on the CRL stay there (one revoked by an operator must not come back
    to life with a rotation). Returns the new superseded entries. The CA must exist: rotation
    never makes a new trust root."""
    if not layout.ca_cert.is_file() or not layout.ca_key.is_file():
        raise UserError(f"no PKI to rotate in {layout.root} (no CA certificate and key)")
    now = _now()
    kept = [Revocation(r.serial_number, _reason(r), r.revocation_date_utc) for r in _load_crl(layout)]
    # The negative 'revoked' certificate is reissued (and revoked) anew each time; its
    # predecessor stays revoked. The expired one is not revoked: its test is about expiry.
    superseded = [Revocation(x509.load_pem_x509_certificate(path.read_bytes()).serial_number,
                             x509.ReasonFlags.superseded, now)
                  for path in rotated_paths(layout, list(users)) if path.is_file()]
    known = {r.serial for r in kept}
    issue_all(layout, server_name=server_name, server_address=server_address, users=users,
              also_revoked=(*kept, *(r for r in superseded if r.serial not in known)))
    return [*superseded, *rotate_signer(layout)]


def _load_crl(layout: PkiLayout, path: Path | None = None) -> x509.CertificateRevocationList | list:
    path = path or layout.crl
    return x509.load_pem_x509_crl(path.read_bytes()) if path.is_file() else []


def _reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags:
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return x509.ReasonFlags.unspecified


def write_crl(layout: PkiLayout, ca: Issuer, entries: list[Revocation]) -> None:
    write_public(layout.crl, _crl_pem(ca, entries))
    write_public(layout.root / "server" / "crl.pem", layout.crl.read_bytes())


def _crl_pem(ca: Issuer, entries: list[Revocation]) -> bytes:
    now = _now()
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=CRL_DAYS)))
    for entry in entries:
        revoked = x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.date)
        if entry.reason != x509.ReasonFlags.unspecified:  # RFC 5280: leave the reason out rather than 'unspecified'
            revoked = revoked.add_extension(x509.CRLReason(entry.reason), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(ca.key, hashes.SHA384()).public_bytes(serialization.Encoding.PEM)


def revocation_reasons(layout: PkiLayout) -> dict[int, x509.ReasonFlags]:
    """serial -> reason of every entry of the database CA's CRL and the evidence CA's CRL."""
    return {r.serial_number: _reason(r) for path in (layout.crl, layout.evidence_crl) for r in _load_crl(layout, path)}


def revoked_serials(layout: PkiLayout) -> list[int]:
    crl = x509.load_pem_x509_crl(layout.crl.read_bytes())
    return [r.serial_number for r in crl]


def cert_subject_issuer(path: Path) -> tuple[str, str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return oneline(cert.subject), oneline(cert.issuer)


def issue_collector(layout: PkiLayout, *, name: str, address: str) -> tuple[Path, Path]:
    """A server certificate for the off-host log collector (idempotent)."""
    cert_path, key_path = layout.root / "collector" / "collector.pem", layout.root / "collector" / "collector.key"
    if not cert_path.exists():
        ca = ensure_ca(layout)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = ca.issue(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                                   x509.NameAttribute(NameOID.COMMON_NAME, name)]),
                        key.public_key(), server=True, names=(name,), addresses=(address,))
        _write_pair(cert_path, key_path, cert, key)
    return cert_path, key_path


def issue_tsa(layout: PkiLayout) -> tuple[Path, Path]:
    """A time-stamping certificate (critical timeStamping EKU, RFC 3161) for the lab TSA, from the evidence CA:
    the auditor checks signer and timestamp against the one evidence CA certificate."""
    cert_path, key_path = layout.root / "tsa" / "tsa.pem", layout.root / "tsa" / "tsa.key"
    if cert_path.exists() and cert_subject_issuer(cert_path)[1] != oneline(ca_subject(EVIDENCE_CA_NAME)):
        cert_path.unlink()  # a lab made before the evidence CA: its TSA moves to the evidence hierarchy
    if not cert_path.exists():
        ca = ensure_evidence_ca(layout)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                                         x509.NameAttribute(NameOID.COMMON_NAME, "ZTM Lab TSA")]))
                .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
                .sign(ca.key, hashes.SHA384()))
        _write_pair(cert_path, key_path, cert, key)
    return cert_path, key_path


def ensure_evidence_ca(layout: PkiLayout) -> Issuer:
    """The evidence signing CA, created once, separate from the database CA (own key, own name, own CRL)."""
    if not layout.evidence_ca_cert.exists():
        key = ec.generate_private_key(ec.SECP384R1())
        _write_pair(layout.evidence_ca_cert, layout.evidence_ca_key, _make_ca(ca_subject(EVIDENCE_CA_NAME), key), key)
    layout.evidence_ca_dir.chmod(0o700)
    issuer = _issuer(layout.evidence_ca_cert, layout.evidence_ca_key)
    if not layout.evidence_crl.exists():
        write_public(layout.evidence_crl, _crl_pem(issuer, []))
    return issuer


def issue_signer(layout: PkiLayout, *, not_before: dt.datetime | None = None,
                 not_after: dt.datetime | None = None) -> x509.Certificate:
    """A new Ed25519 evidence signer from the evidence CA: digitalSignature, code-signing EKU, not a CA."""
    ca = ensure_evidence_ca(layout)
    key = ed25519.Ed25519PrivateKey.generate()
    now = _now()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                                     x509.NameAttribute(NameOID.COMMON_NAME, SIGNER_NAME)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(minutes=5))
            .not_valid_after(not_after or now + dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
            .sign(ca.key, hashes.SHA384()))
    _write_pair(layout.signer("pem"), layout.signer("key"), cert, key)
    return cert


def rotate_signer(layout: PkiLayout) -> list[Revocation]:
    """A new evidence signer; the one it replaces goes on the evidence CA's CRL as superseded (kept there)."""
    if not layout.evidence_ca_cert.is_file() or not layout.evidence_ca_key.is_file():
        raise UserError(f"no evidence CA to rotate the signer with in {layout.root} (run 'ztm lab up')")
    ca = ensure_evidence_ca(layout)
    kept = [Revocation(r.serial_number, _reason(r), r.revocation_date_utc)
            for r in _load_crl(layout, layout.evidence_crl)]
    superseded = []
    if layout.signer("pem").is_file():
        old = x509.load_pem_x509_certificate(layout.signer("pem").read_bytes())
        if old.issuer == ca.cert.subject and old.serial_number not in {r.serial for r in kept}:
            superseded.append(Revocation(old.serial_number, x509.ReasonFlags.superseded, _now()))
    write_public(layout.evidence_crl, _crl_pem(ca, [*kept, *superseded]))
    issue_signer(layout)
    return superseded
