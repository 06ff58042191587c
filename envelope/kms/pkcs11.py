"""PKCS#11 KMS (python-pkcs11): an AES-256 KEK that never leaves the token wraps each DEK,
with AES-GCM (the encryption context as AAD; the default) or AES-KWP (RFC 5649, the context
committed inside the wrapped payload), chosen by [kms].wrap_mechanism. The lab uses a
SoftHSM2 token."""

from __future__ import annotations

import os
import threading
from typing import Any

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.mechanisms import GCMParams

from envelope.kms.base import Kms, WrappedKey, commit_context, open_committed
from ztm.errors import UserError
from ztm.target import SecretRef

# Blob formats, told apart by their first byte, so a KMS configured for either mechanism
# unwraps both (a switch of mechanism needs no re-wrap).
GCM_BLOB = b"\x01"  # C_Encrypt with AES-GCM: iv || ciphertext || tag, the context as AAD
KWP_BLOB = b"\x02"  # C_WrapKey with AES-KWP (RFC 5649) over SHA-256(context) || DEK (KWP has no AAD)
MECHANISMS = ("aes-gcm", "aes-kwp")
IV_BYTES = 12
_loaded_env: dict[str, dict[str, str]] = {}  # module -> the environment it was loaded with


def _bind_module_env(module: str, env: dict[str, str]) -> None:
    """A module reads its environment (e.g. SOFTHSM2_CONF) once, when first loaded into a
    process: a second, different configuration would silently reach the first one's tokens."""
    if module not in _loaded_env:
        _loaded_env[module] = {**{k: os.environ[k] for k in env if k in os.environ}, **env}
    first = _loaded_env[module]
    if any(first.get(k) != v for k, v in env.items()):
        raise UserError(f"PKCS#11 module {module} is already loaded in this process with {first}; one process "
                        f"cannot also use {env}")
    for name, value in env.items():
        os.environ[name] = value


class Pkcs11Kms(Kms):
    def __init__(self, module: str, token_label: str, key_label_prefix: str, pin: str, version: int,
                 env: dict[str, str] | None = None, mechanism: str = "aes-gcm") -> None:
        if mechanism not in MECHANISMS:
            raise UserError(f"PKCS#11 wrap mechanism {mechanism!r} is not one of {', '.join(MECHANISMS)}")
        self.mechanism = mechanism
        _bind_module_env(module, env or {})
        try:
            self._lib = pkcs11.lib(module)
            token = self._lib.get_token(token_label=token_label)
            try:
                self._session = token.open(user_pin=pin, rw=True)  # rw: key creation (rotation, set-up)
            except pkcs11.exceptions.UserAlreadyLoggedIn:  # login is per process and token in PKCS#11
                self._session = token.open(rw=True)
        except pkcs11.exceptions.PinIncorrect:
            raise UserError(f"PKCS#11 token {token_label!r} refused the PIN (wrong PIN)") from None
        except pkcs11.exceptions.NoSuchToken:
            raise UserError(f"no PKCS#11 token labelled {token_label!r} in {module}") from None
        except (pkcs11.exceptions.PKCS11Error, RuntimeError, OSError) as exc:
            raise UserError(f"cannot open PKCS#11 token {token_label!r} with {module}: {type(exc).__name__}") from None
        self.token_label, self.prefix, self._version = token_label, key_label_prefix, version
        self._lock = threading.Lock()  # one session, used from several threads
        self.calls = 0

    @classmethod
    def from_section(cls, section: dict[str, Any], resolve) -> Pkcs11Kms:
        pin_ref = section.get("pin") or {}
        if not (pin_ref.get("file") or pin_ref.get("env")):
            raise UserError("the target's [kms] section names no token PIN (pin = {file = ...} or {env = ...})")
        ref = SecretRef(file=resolve(pin_ref["file"]) if "file" in pin_ref else None, env=pin_ref.get("env"))
        pin = ref.reveal()
        if not pin:
            raise UserError(f"the token PIN ({ref.describe()}) is empty")
        env = {k: str(resolve(v)) if k.endswith("_CONF") else v for k, v in section.get("env", {}).items()}
        return cls(section["module"], section["token_label"], section.get("key_label_prefix", "ztm-kek-v"), pin,
                   int(section.get("key_version", 1)), env, section.get("wrap_mechanism", "aes-gcm"))

    @property
    def current_version(self) -> int:
        return self._version

    def key_id(self, version: int) -> str:
        return f"pkcs11:token={self.token_label};object={self.prefix}{version}"

    def _kek(self, version: int):
        try:
            return self._session.get_key(label=f"{self.prefix}{version}", key_type=KeyType.AES)
        except pkcs11.exceptions.NoSuchKey:
            raise UserError(f"no key-encryption key {self.prefix}{version} on token {self.token_label}") from None
        except pkcs11.exceptions.MultipleObjectsReturned:
            raise UserError(f"two keys on token {self.token_label} carry the label {self.prefix}{version}: "
                            "refusing to guess which one wraps the data") from None

    def wrap(self, dek: bytes, context: bytes, key_version: int | None = None) -> WrappedKey:
        version = key_version or self._version
        with self._lock:
            try:
                kek = self._kek(version)
                blob = self._wrap_kwp(kek, dek, context) if self.mechanism == "aes-kwp" else self._wrap_gcm(
                    kek, dek, context)
            except pkcs11.exceptions.PKCS11Error as exc:
                raise UserError(f"the KMS refused to wrap the data key: {type(exc).__name__}") from None
            self.calls += 1
        return WrappedKey(blob, self.key_id(version), version)

    @staticmethod
    def _wrap_gcm(kek, dek: bytes, context: bytes) -> bytes:
        iv = os.urandom(IV_BYTES)
        sealed = kek.encrypt(dek, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(iv, context, 128))
        return GCM_BLOB + iv + sealed

    def _wrap_kwp(self, kek, dek: bytes, context: bytes) -> bytes:
        # C_WrapKey wraps key objects: the payload becomes a short-lived session object first.
        payload = self._session.create_object({
            Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
            Attribute.VALUE: commit_context(dek, context), Attribute.TOKEN: False, Attribute.EXTRACTABLE: True,
            Attribute.SENSITIVE: False})
        try:
            return KWP_BLOB + bytes(kek.wrap_key(payload, mechanism=Mechanism.AES_KEY_WRAP_PAD))
        finally:
            payload.destroy()

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        blob = wrapped.blob
        kind = blob[:1]
        if not ((kind == GCM_BLOB and len(blob) >= 1 + IV_BYTES + 16) or (kind == KWP_BLOB and len(blob) >= 1 + 40)):
            raise UserError("wrapped key: unknown format")
        if wrapped.key_id != self.key_id(wrapped.key_version):
            raise UserError(f"the data key is wrapped by {wrapped.key_id!r}, not by this KMS's "
                            f"{self.key_id(wrapped.key_version)!r}")
        with self._lock:
            kek = self._kek(wrapped.key_version)
            try:
                self.calls += 1
                if kind == GCM_BLOB:
                    return bytes(kek.decrypt(blob[1 + IV_BYTES:], mechanism=Mechanism.AES_GCM,
                                             mechanism_param=GCMParams(blob[1:1 + IV_BYTES], context, 128)))
                payload = kek.unwrap_key(ObjectClass.SECRET_KEY, KeyType.GENERIC_SECRET, blob[1:],
                                         mechanism=Mechanism.AES_KEY_WRAP_PAD, store=False,
                                         template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False})
                try:
                    plain = bytes(payload[Attribute.VALUE])
                finally:
                    payload.destroy()
            except pkcs11.exceptions.PKCS11Error:
                raise UserError("the KMS refused to unwrap the data key (wrong key, context or blob)") from None
        return open_committed(plain, context, "PKCS#11 AES-KWP")

    def create_kek(self, version: int) -> None:
        """A new, non-extractable KEK version on the token (lab set-up, rotation); idempotent."""
        if self.has_kek(version):
            return
        with self._lock:
            self._session.generate_key(KeyType.AES, 256, label=f"{self.prefix}{version}", store=True, template={
                Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.TOKEN: True,
                Attribute.ENCRYPT: True, Attribute.DECRYPT: True, Attribute.WRAP: True, Attribute.UNWRAP: True})

    def kek_attributes(self, version: int) -> dict[str, bool]:
        key = self._kek(version)
        return {"extractable": bool(key[Attribute.EXTRACTABLE]), "sensitive": bool(key[Attribute.SENSITIVE])}

    def has_kek(self, version: int) -> bool:
        try:
            self._kek(version)
        except UserError:
            return False
        return True

    def close(self) -> None:
        self._session.close()


