"""The KMS interface: wrap and unwrap data keys under a key-encryption key it never releases."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True)
class WrappedKey:
    blob: bytes
    key_id: str
    key_version: int


class Kms(ABC):
    calls: int = 0  # wrap and unwrap operations sent to the KMS (benchmarks count them)

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
