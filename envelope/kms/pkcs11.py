"""PKCS#11 KMS (python-pkcs11): an AES-256 KEK that never leaves the token wraps each DEK,
with AES-GCM (the encryption context as AAD; the default) or AES-KWP (RFC 5649, the context
committed inside the wrapped payload), chosen by [kms].wrap_mechanism. The lab uses a
SoftHSM2 token."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import threading
from collections.abc import Iterator
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
# python-pkcs11 initialises a module with C_Initialize(NULL): by the PKCS#11 standard the
# module may then assume one thread at a time (SoftHSM2 switches its own locking off), and a
# second lib object for the same module finalises it for everyone when it is collected.
# Hence one lib per module and process, loaded and logged in once under _REGISTRY_LOCK, and
# every call into a module made under that module's lock. Wrap and unwrap use read-only
# sessions from a pool; read-write sessions are opened only to create keys.
_REGISTRY_LOCK = threading.Lock()
_modules: dict[str, _Module] = {}


class _Module:
    """One loaded, initialised PKCS#11 module (per process), with its tokens."""

    def __init__(self, path: str, env: dict[str, str]) -> None:
        self.path, self.env, self.pid = path, env, os.getpid()
        self.lock = threading.RLock()  # every call into the module
        self.lib = pkcs11.lib(path)
        self.tokens: dict[str, _Token] = {}

    def reopen(self) -> None:
        """C_Finalize and C_Initialize (the module then sees tokens made since it was loaded, such
        as a rebuilt lab's), and every open token logs in again, in place: the clients holding
        them keep working. Called under ``lock``."""
        self.lib.reinitialize()
        for token in self.tokens.values():
            token.open(token.pin)


class _Token:
    """A token of a module: logged in once (login is per process and token in PKCS#11, and
    closing the session that logged in would log every session out, so it stays open)."""

    def __init__(self, module: _Module, label: str, pin: str) -> None:
        self.module, self.label = module, label
        self.open(pin)

    def open(self, pin: str) -> None:
        self.token = self.module.lib.get_token(token_label=self.label)
        try:
            self._login = self.token.open(user_pin=pin)
        except pkcs11.exceptions.UserAlreadyLoggedIn:  # logged in by code outside this module
            self._login = self.token.open()
        self.pin = pin  # kept to log in again after the module is re-initialised
        self._idle: list[Any] = []  # read-only sessions not in use

    def same_pin(self, pin: str) -> bool:
        return hmac.compare_digest(hashlib.sha256(self.pin.encode()).digest(), hashlib.sha256(pin.encode()).digest())

    def switch_pin(self, pin: str) -> None:
        """Another PIN for an open token: either the token was made again since (a rebuilt lab:
        the module must be re-initialised to see it) or the PIN is wrong. The login is tried
        afresh; a PIN that does not open the token leaves the process logged in as before."""
        old = self.pin
        self.pin = pin
        try:
            self.module.reopen()
        except pkcs11.exceptions.PKCS11Error:
            self.pin = old
            self.module.reopen()
            raise UserError(f"PKCS#11 token {self.label!r} is already open in this process with another PIN, "
                            "and this one does not open it") from None

    @contextlib.contextmanager
    def session(self, rw: bool = False) -> Iterator[Any]:
        """A session under the module lock: read-only from the pool, or a fresh read-write one."""
        with self.module.lock:
            if rw:
                session = self.token.open(rw=True)
                try:
                    yield session
                finally:
                    session.close()
                return
            session = self._idle.pop() if self._idle else self.token.open()
            try:
                yield session
            finally:
                self._idle.append(session)


def _bind_module_env(module: str, env: dict[str, str]) -> None:
    """A module reads its environment (e.g. SOFTHSM2_CONF) once, when first loaded into a
    process: a second, different configuration would silently reach the first one's tokens.
    Called under _REGISTRY_LOCK."""
    loaded = _modules.get(module)
    if loaded is None:
        for name, value in env.items():
            os.environ[name] = value
        return
    if any(loaded.env.get(k) != v for k, v in env.items()):
        raise UserError(f"PKCS#11 module {module} is already loaded in this process with {loaded.env}; one process "
                        f"cannot also use {env}")


def _open_token(module: str, env: dict[str, str], label: str, pin: str) -> _Token:
    """The process's one handle on ``label`` in ``module``, loading and logging in on first use."""
    with _REGISTRY_LOCK:
        _bind_module_env(module, env)
        loaded = _modules.get(module)
        if loaded is not None and loaded.pid != os.getpid():
            raise UserError(f"PKCS#11 module {module} was loaded before this process forked; "
                            "a forked child must load it itself (use a new process, not fork)")
        if loaded is None:
            loaded = _Module(module, {**{k: os.environ[k] for k in env if k in os.environ}, **env})
            _modules[module] = loaded
        token = loaded.tokens.get(label)
        if token is None:
            with loaded.lock:
                token = _Token(loaded, label, pin)
            loaded.tokens[label] = token
        elif not token.same_pin(pin):
            with loaded.lock:
                token.switch_pin(pin)
        return token


class Pkcs11Kms(Kms):
    def __init__(self, module: str, token_label: str, key_label_prefix: str, pin: str, version: int,
                 env: dict[str, str] | None = None, mechanism: str = "aes-gcm") -> None:
        if mechanism not in MECHANISMS:
            raise UserError(f"PKCS#11 wrap mechanism {mechanism!r} is not one of {', '.join(MECHANISMS)}")
        self.mechanism = mechanism
        try:
            self._token = _open_token(module, env or {}, token_label, pin)
        except pkcs11.exceptions.PinIncorrect:
            raise UserError(f"PKCS#11 token {token_label!r} refused the PIN (wrong PIN)") from None
        except pkcs11.exceptions.NoSuchToken:
            raise UserError(f"no PKCS#11 token labelled {token_label!r} in {module}") from None
        except (pkcs11.exceptions.PKCS11Error, RuntimeError, OSError) as exc:
            raise UserError(f"cannot open PKCS#11 token {token_label!r} with {module}: {type(exc).__name__}") from None
        self.token_label, self.prefix, self._version = token_label, key_label_prefix, version
        self.calls = 0

    @classmethod
    def from_section(cls, section: dict[str, Any], resolve) -> Pkcs11Kms:
        pin_ref = section.get("pin") or {}
        if not (pin_ref.get("file") or pin_ref.get("env")):
            raise UserError("the target's [kms] section names no token PIN (pin = {file = ...} or {env = ...})")
        ref = SecretRef(file=resolve(pin_ref["file"]) if "file" in pin_ref else None, env=pin_ref.get("env"))
        pin = ref.reveal()  # an empty PIN file is refused there
        env = {k: str(resolve(v)) if k.endswith("_CONF") else v for k, v in section.get("env", {}).items()}
        return cls(section["module"], section["token_label"], section.get("key_label_prefix", "ztm-kek-v"), pin,
                   int(section.get("key_version", 1)), env, section.get("wrap_mechanism", "aes-gcm"))

    @property
    def current_version(self) -> int:
        return self._version

    def key_id(self, version: int) -> str:
        return f"pkcs11:token={self.token_label};object={self.prefix}{version}"

    def _kek(self, session, version: int):
        try:
            return session.get_key(label=f"{self.prefix}{version}", key_type=KeyType.AES)
        except pkcs11.exceptions.NoSuchKey:
            raise UserError(f"no key-encryption key {self.prefix}{version} on token {self.token_label}") from None
        except pkcs11.exceptions.MultipleObjectsReturned:
            raise UserError(f"two keys on token {self.token_label} carry the label {self.prefix}{version}: "
                            "refusing to guess which one wraps the data") from None

    def wrap(self, dek: bytes, context: bytes, key_version: int | None = None) -> WrappedKey:
        version = key_version or self._version
        with self._token.session() as session:
            try:
                kek = self._kek(session, version)
                blob = self._wrap_kwp(session, kek, dek, context) if self.mechanism == "aes-kwp" else self._wrap_gcm(
                    kek, dek, context)
            except pkcs11.exceptions.PKCS11Error as exc:
                raise UserError(f"the KMS refused to wrap the data key: {type(exc).__name__}") from None
        self._count()
        return WrappedKey(blob, self.key_id(version), version)

    @staticmethod
    def _wrap_gcm(kek, dek: bytes, context: bytes) -> bytes:
        iv = os.urandom(IV_BYTES)
        sealed = kek.encrypt(dek, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(iv, context, 128))
        return GCM_BLOB + iv + sealed

    @staticmethod
    def _wrap_kwp(session, kek, dek: bytes, context: bytes) -> bytes:
        # C_WrapKey wraps key objects: the payload becomes a short-lived session object first
        # (session objects may be created in a read-only session).
        payload = session.create_object({
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
        self._count()
        with self._token.session() as session:
            kek = self._kek(session, wrapped.key_version)
            try:
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
        """A new, non-extractable KEK version on the token (lab set-up, rotation); idempotent.
        The only operation that opens a read-write session."""
        with self._token.session(rw=True) as session:
            if self._has_kek(session, version):
                return
            session.generate_key(KeyType.AES, 256, label=f"{self.prefix}{version}", store=True, template={
                Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.TOKEN: True,
                Attribute.ENCRYPT: True, Attribute.DECRYPT: True, Attribute.WRAP: True, Attribute.UNWRAP: True})

    def kek_attributes(self, version: int) -> dict[str, bool]:
        with self._token.session() as session:
            key = self._kek(session, version)
            return {"extractable": bool(key[Attribute.EXTRACTABLE]), "sensitive": bool(key[Attribute.SENSITIVE])}

    def _has_kek(self, session, version: int) -> bool:
        try:
            self._kek(session, version)
        except UserError:
            return False
        return True

    def has_kek(self, version: int) -> bool:
        with self._token.session() as session:
            return self._has_kek(session, version)

    def close(self) -> None:
        """Nothing to release per client: the token's sessions and login belong to the process
        (closing the logged-in session would log out every other client of the token)."""
