"""Values that must never reach a bundle (the writer redacts them before signing).

Three sources: the passwords and PINs the target file names (by file or environment
variable), the material of the private key files it lists (and of the signing key), and
values a test registers with ``ztm.keep_out.keep_out_of_bundle`` (PII sentinels, unwrapped keys).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from evidence.run_info import is_secret_name
from ztm.errors import UserError
from ztm.target import read_target_file, resolve_path, secret_ref


def target_secrets(path: Path | None) -> list[str]:
    """Passwords/PINs the target names and the key material of its private key files."""
    if path is None:
        return []
    try:
        raw = read_target_file(path)
    except UserError:
        return []  # the target fixture reports a bad target file in its own words
    base = path.resolve().parent
    found: list[str] = []
    for name, value in _walk(raw):
        if isinstance(value, dict) and is_secret_name(name) and ({"file", "env"} & set(value)):
            found += _reveal(base, value)
        elif isinstance(value, str) and (name == "key" or name.endswith("_key") or name == "key_files"):
            found += key_material(resolve_path(base, value))
    return found


def key_material(path: Path) -> list[str]:
    """How a private key file's secret could leak: its PEM body on one line, its DER in hex, and its
    private value(s) in hex and base64; [] for anything that is not a PEM private key.

    Not line by line: an EC key's PEM carries its public point, and a line of nothing but public
    point also appears in the certificate (public evidence).
    """
    try:
        data = path.read_bytes()
    except OSError:
        return []
    if b"PRIVATE KEY-----" not in data:
        return []  # a public key, a certificate, a wrapped blob: not secret
    lines = data.decode(errors="replace").splitlines()
    body = "".join(line.strip() for line in lines if line.strip() and not line.startswith("-----") and ":" not in line)
    values = [body]
    with contextlib.suppress(ValueError):
        values.append(base64.b64decode(body).hex())
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        return values  # encrypted or of an unknown kind: its PEM and DER forms still count
    for raw in _private_values(key):
        values += [raw.hex(), base64.b64encode(raw).decode()]
    return values


def _private_values(key: Any) -> list[bytes]:
    if hasattr(key, "private_bytes_raw"):  # Ed25519, Ed448, X25519, X448
        return [key.private_bytes_raw()]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return [key.private_numbers().private_value.to_bytes((key.curve.key_size + 7) // 8, "big")]
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.private_numbers()
        # Every private component: d, the primes, and the CRT values (any of p, q, dp or
        # dq alone gives the key away; qinv with the public key narrows it).
        private = (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp)
        return [n.to_bytes((n.bit_length() + 7) // 8, "big") for n in private]
    return []


def _walk(node: Any, name: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value, key)
    elif isinstance(node, list):
        for value in node:
            if isinstance(value, str):
                yield name, value  # list items keep their list's name (key_files = [...])
            else:
                yield from _walk(value, name)


def _reveal(base: Path, ref: dict[str, str]) -> list[str]:
    secret = secret_ref(base, ref)
    try:
        value = secret.reveal() if secret else ""
    except (UserError, UnicodeDecodeError):
        return []
    return [value] if value else []
