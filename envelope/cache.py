"""A DEK cache per tenant with limits, after the AWS Encryption SDK's caching materials
manager: a cached data key is reused for at most ``max_age`` seconds, ``max_messages``
records and ``max_bytes`` of plaintext, then a fresh one is made (and wrapped by the KMS).

Branch keys (envelope.branch) are cached here too, bounded by ``max_age`` only: a branch key
encrypts nothing itself (each record has its own derived DEK), so the per-use bounds, which
limit how much one DEK protects, do not apply to it (``take(..., limit_uses=False)``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from envelope.kms.base import WrappedKey
from ztm.errors import UserError

# The AWS Encryption SDK's bounds: a data key for at most 2^32 messages; defaults are ours.
MAX_MESSAGES_LIMIT = 1 << 32


@dataclass
class CachedKey:
    dek: bytes
    wrapped: WrappedKey
    pq_wrapped: bytes | None
    created: float = 0.0  # set by put(), from the cache's clock
    messages: int = 0
    bytes: int = 0


@dataclass
class DekCache:
    max_age: float = 300.0
    max_messages: int = 1000
    max_bytes: int = 1 << 20
    enabled: bool = True
    clock: Callable[[], float] = time.monotonic
    _entries: dict[tuple[str, int], CachedKey] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_config(cls, section: dict[str, Any], *, enabled: bool | None = None) -> DekCache:
        """From the target's [crypto.dek_cache]; ``enabled`` (a command-line flag) overrides it."""
        defaults = cls()
        try:
            cache = cls(max_age=float(section.get("max_age_seconds", defaults.max_age)),
                        max_messages=int(section.get("max_messages", defaults.max_messages)),
                        max_bytes=int(section.get("max_bytes", defaults.max_bytes)),
                        enabled=bool(section.get("enabled", True)) if enabled is None else enabled)
        except (TypeError, ValueError) as exc:
            raise UserError(f"[crypto.dek_cache]: {exc}") from None
        if not (cache.max_age > 0 and 1 <= cache.max_messages <= MAX_MESSAGES_LIMIT and cache.max_bytes >= 1):
            raise UserError("[crypto.dek_cache]: max_age_seconds must be > 0, max_messages in 1..2^32, "
                            "max_bytes >= 1")
        return cache

    def limits(self) -> dict[str, float | int | bool]:
        return {"enabled": self.enabled, "max_age_s": self.max_age, "max_messages": self.max_messages,
                "max_bytes": self.max_bytes}

    def take(self, tenant: str, key_version: int, plaintext_bytes: int, *,
             limit_uses: bool = True) -> CachedKey | None:
        """A cached key still within its limits after this use, or None."""
        if not self.enabled:
            return None
        with self._lock:
            entry = self._entries.get((tenant, key_version))
            if entry is None:
                return None
            expired = self.clock() - entry.created > self.max_age or (limit_uses and (
                entry.messages + 1 > self.max_messages or entry.bytes + plaintext_bytes > self.max_bytes))
            if expired:
                del self._entries[(tenant, key_version)]
                return None
            entry.messages += 1
            entry.bytes += plaintext_bytes
            return entry

    def put(self, tenant: str, key_version: int, entry: CachedKey, plaintext_bytes: int) -> None:
        if self.enabled:
            entry.messages, entry.bytes, entry.created = 1, plaintext_bytes, self.clock()
            with self._lock:
                self._entries[(tenant, key_version)] = entry
