"""KMIP KMS (PyKMIP client): the DEK is encrypted on the KMIP server under a symmetric
key that never leaves it. PyKMIP's client does not pass GCM tags or additional data, so
the server encrypts with AES-256-CBC over SHA-256(context) || DEK; unwrapping checks that
prefix, so a wrapped key moved to another context is refused, and a tampered blob yields
no usable DEK (fields are AES-GCM under it and do not authenticate)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from envelope.kms.base import Kms, WrappedKey, commit_context, open_committed
from ztm.errors import UserError

IV_BYTES = 16
# PyKMIP logs a failed connection at ERROR before raising; with no handler of its own Python
# prints that to stderr, ahead of the one-line error the user gets. The error says it all.
logging.getLogger("kmip").addHandler(logging.NullHandler())


class KmipKms(Kms):
    def __init__(self, host: str, port: int, cert: str, key: str, ca: str, key_uid: str, version: int = 1) -> None:
        from kmip.pie.client import ProxyKmipClient

        self._client = ProxyKmipClient(hostname=host, port=port, cert=cert, key=key, ca=ca, config_file=None)
        try:
            self._client.open()
        except Exception as exc:  # PyKMIP raises plain exceptions for TLS and socket failures
            raise UserError(f"cannot reach the KMIP server {host}:{port}: {exc}") from None
        self.key_uid, self._version, self.calls = key_uid, version, 0
        self._lock = threading.Lock()  # one TLS connection: one request at a time

    @classmethod
    def from_section(cls, section: dict[str, Any], resolve) -> KmipKms:
        return cls(section["host"], int(section.get("port", 5696)), str(resolve(section["cert"])),
                   str(resolve(section["client_key"])), str(resolve(section["ca"])), str(section["key_uid"]),
                   int(section.get("key_version", 1)))

    @property
    def current_version(self) -> int:
        return self._version

    @staticmethod
    def _params():
        from kmip import enums

        return {"cryptographic_algorithm": enums.CryptographicAlgorithm.AES,
                "block_cipher_mode": enums.BlockCipherMode.CBC, "padding_method": enums.PaddingMethod.PKCS5}

    def wrap(self, dek: bytes, context: bytes, key_version: int | None = None) -> WrappedKey:
        try:
            self._count()
            with self._lock:
                sealed, iv = self._client.encrypt(commit_context(dek, context), uid=self.key_uid,
                                                  cryptographic_parameters=self._params())
        except Exception as exc:
            raise UserError(f"the KMIP server refused to wrap the data key: {exc}") from None
        return WrappedKey(b"\x01" + iv + sealed, f"kmip:{self.key_uid}", key_version or self._version)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        blob = wrapped.blob
        if blob[:1] != b"\x01" or len(blob) < 1 + IV_BYTES + 48:
            raise UserError("wrapped key: unknown format")
        try:
            self._count()
            with self._lock:
                plain = self._client.decrypt(blob[1 + IV_BYTES:], uid=self.key_uid,
                                             cryptographic_parameters=self._params(),
                                             iv_counter_nonce=blob[1:1 + IV_BYTES])
        except Exception:
            raise UserError("the KMIP server refused to unwrap the data key") from None
        return open_committed(bytes(plain), context, "KMIP")

    def close(self) -> None:
        with self._lock:
            self._client.close()
