"""Who signed: the signer certificate's path to the auditor's evidence CA, validated at the signing time.

Path validation is cryptography's maintained RFC 5280 validator (``x509.verification``): issuers
must be CAs (basicConstraints CA, keyUsage keyCertSign), validity is judged at ``at`` for every
certificate, and the leaf policy is ours: digitalSignature key usage, the code-signing EKU,
not a CA, an Ed25519 key. cryptography has no CRL support in that API, so revocation is a
separate step: the CRL must be signed by the leaf's issuer (with cRLSign) and must not list the
leaf. Any listing rejects, whatever its date or reason (as ``openssl verify -crl_check``).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from ztm.errors import UserError
from ztm.text import printable

# signer.pem: one or more CERTIFICATE blocks and nothing else (no key block a verifier could pick up).
CERTS_ONLY = re.compile(rb"(-----BEGIN CERTIFICATE-----\n([A-Za-z0-9+/=]{1,76}\n)+-----END CERTIFICATE-----\n)+")
MAX_CHAIN = 5


def signer_chain(pem: bytes) -> list[x509.Certificate]:
    """The certificates of signer.pem, leaf first; ValueError when it holds anything else."""
    if not CERTS_ONLY.fullmatch(pem):
        raise ValueError("signer.pem must hold certificates only (PEM CERTIFICATE blocks, LF line ends, nothing "
                         "else such as a PUBLIC KEY block)")
    try:
        chain = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ValueError("signer.pem: a CERTIFICATE block is not a readable certificate") from None
    if len(chain) > MAX_CHAIN:
        raise ValueError(f"signer.pem: more than {MAX_CHAIN} certificates")
    return chain


def load_anchors(path: Path) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise UserError(f"cannot read CA file {path}: {exc.strerror}", 2) from None
    except ValueError:
        raise UserError(f"{path} is not a PEM certificate (or bundle of certificates)", 2) from None
    return certs


def load_crl(path: Path) -> x509.CertificateRevocationList:
    try:
        return x509.load_pem_x509_crl(path.read_bytes())
    except OSError as exc:
        raise UserError(f"cannot read CRL file {path}: {exc.strerror}", 2) from None
    except ValueError:
        raise UserError(f"{path} is not a PEM CRL", 2) from None


def _code_signing(_policy: Any, _cert: x509.Certificate, eku: x509.ExtendedKeyUsage | None) -> None:
    if eku is None or ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise ValueError("the signer certificate lacks the code-signing extended key usage")


def _digital_signature(_policy: Any, _cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    if usage is None or not usage.digital_signature:
        raise ValueError("the signer certificate's key usage lacks digitalSignature")


def _not_ca(_policy: Any, _cert: x509.Certificate, constraints: x509.BasicConstraints | None) -> None:
    if constraints is not None and constraints.ca:
        raise ValueError("the signer certificate is a CA certificate")


def _leaf_policy() -> ExtensionPolicy:
    return (ExtensionPolicy.webpki_defaults_ee()
            .require_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _code_signing)
            .require_present(x509.KeyUsage, Criticality.AGNOSTIC, _digital_signature)
            .may_be_present(x509.BasicConstraints, Criticality.AGNOSTIC, _not_ca)
            .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None))


def validate_signer(chain: list[x509.Certificate], anchors: list[x509.Certificate], at: datetime,
                    crl: x509.CertificateRevocationList | None) -> tuple[Ed25519PublicKey, x509.Certificate]:
    """The leaf's Ed25519 key and the CA it chains to; ValueError naming why it is not a valid signer at ``at``."""
    leaf = chain[0]
    who = printable(leaf.subject.rfc4514_string())
    key = leaf.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"signer.pem: {who} does not certify an Ed25519 key")
    verifier = (PolicyBuilder().store(Store(anchors)).time(at).max_chain_depth(MAX_CHAIN)
                .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_leaf_policy())
                .build_client_verifier())
    try:
        path = verifier.verify(leaf, chain[1:]).chain
    except VerificationError as exc:
        raise ValueError(f"signer.pem: {who} is not a valid signer certified by the CA at "
                         f"{at:%Y-%m-%dT%H:%M:%SZ}: {printable(str(exc))}") from None
    if crl is not None:
        _check_revocation(leaf, path[1], crl)
    return key, path[-1]


def _check_revocation(leaf: x509.Certificate, issuer: x509.Certificate,
                      crl: x509.CertificateRevocationList) -> None:
    try:
        usage = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
        may_sign_crl = usage.crl_sign
    except x509.ExtensionNotFound:
        may_sign_crl = True
    try:
        signed = crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (InvalidSignature, TypeError, ValueError):
        signed = False
    if not signed or not may_sign_crl:
        raise ValueError("the CRL is not signed by the signer certificate's issuer: cannot check revocation")
    entry = crl.get_revoked_certificate_by_serial_number(leaf.serial_number)
    if entry is not None:
        raise ValueError(f"signer.pem: the signer certificate (serial {leaf.serial_number:x}) is revoked in the CRL "
                         f"(since {entry.revocation_date_utc:%Y-%m-%dT%H:%M:%SZ})")
