"""A DEK cache per tenant with limits, after the AWS Encryption SDK's caching materials
manager: a cached data key is reused for at most ``max_age`` seconds, ``max_messages``
records and ``max_bytes`` of plaintext, then a fresh one is made (and wrapped by the KMS)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from envelope.kms.base import WrappedKey


@dataclass
class CachedKey:
    dek: bytes
    wrapped: WrappedKey
    pq_wrapped: bytes | None
    created: float = field(default_factory=time.monotonic)
    messages: int = 0
    bytes: int = 0


@dataclass
class DekCache:
    max_age: float = 300.0
    max_messages: int = 1000
    max_bytes: int = 1 << 20
    enabled: bool = True
    _entries: dict[tuple[str, int], CachedKey] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, tenant: str, key_version: int, plaintext_bytes: int) -> CachedKey | None:
        """A cached key still within its limits after this use, or None."""
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get((tenant, key_version))
            if entry is None:
                return None
            expired = (time.monotonic() - entry.created > self.max_age or entry.messages + 1 > self.max_messages
                       or entry.bytes + plaintext_bytes > self.max_bytes)
            if expired:
                del self._entries[(tenant, key_version)]
                return None
            entry.messages += 1
            entry.bytes += plaintext_bytes
            return entry

    def put(self, tenant: str, key_version: int, entry: CachedKey, plaintext_bytes: int) -> None:
        if self.enabled:
            entry.messages, entry.bytes = 1, plaintext_bytes
            with self._lock:
                self._entries[(tenant, key_version)] = entry
