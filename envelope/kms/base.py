"""The KMS interface: wrap and unwrap data keys under a key-encryption key it never releases."""

from __future__ import annotations

import hashlib
import hmac
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass

from ztm.errors import UserError


@dataclass(frozen=True)
class WrappedKey:
    blob: bytes
    key_id: str
    key_version: int


_CALLS_LOCK = threading.Lock()


class Kms(ABC):
    """A KMS client may be shared by threads: providers keep their connections thread-safe."""

    calls: int = 0  # wrap and unwrap operations sent to the KMS (benchmarks count them)

    def _count(self) -> None:
        with _CALLS_LOCK:
            self.calls += 1

    @abstractmethod
    def wrap(self, dek: bytes, context: bytes, key_version: int | None = None) -> WrappedKey:
        """Encrypt ``dek`` under the KEK (current version unless given), bound to ``context``."""

    @abstractmethod
    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        """Recover the DEK; fails if the blob, the key or the context do not match."""

    @property
    @abstractmethod
    def current_version(self) -> int: ...

    def close(self) -> None:
        """Release sessions."""


# For KMSs that take no additional data (KMIP through PyKMIP, Key Vault wrapKey): the
# context is committed inside the payload the KMS encrypts, and checked when it comes back.
def commit_context(dek: bytes, context: bytes) -> bytes:
    return hashlib.sha256(context).digest() + dek


def open_committed(payload: bytes, context: bytes, kms_name: str) -> bytes:
    if len(payload) <= 32 or not hmac.compare_digest(payload[:32], hashlib.sha256(context).digest()):
        raise UserError(f"the {kms_name}-wrapped data key belongs to another context (moved or altered)")
    return payload[32:]
