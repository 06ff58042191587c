"""Build the envelope client of a target: its KMS, DEK cache and, when required, the PQ
public key; and, for break-glass, the KMS key that holds the PQ private key."""

from __future__ import annotations

from typing import Any

from envelope import pq
from envelope.cache import DekCache
from envelope.client import EnvelopeClient
from envelope.kms import Kms, kms_for
from ztm.errors import UserError
from ztm.target import Target


def _kms_section(target: Target) -> dict[str, Any]:
    section = target.section("kms")
    if not section:
        raise UserError("the target has no [kms] section: client-side encryption needs a KMS")
    return section


def client_for(target: Target, *, cache: bool | None = None, with_pq: bool | None = None) -> EnvelopeClient:
    """``cache``/``with_pq`` None: as the target says ([crypto.dek_cache], [crypto].require_pq)."""
    section = _kms_section(target)
    crypto = target.section("crypto")
    dek_cache = DekCache.from_config(crypto.get("dek_cache", {}), enabled=cache)
    use_pq = crypto.get("require_pq", False) if with_pq is None else with_pq
    public = None
    if use_pq:
        if not crypto.get("pq_public_key"):
            raise UserError("post-quantum wraps are required but the target names no [crypto].pq_public_key")
        public = pq.PqPublicKey.load(target.resolve(crypto["pq_public_key"]))
    return EnvelopeClient(kms_for(section, target.resolve), public, dek_cache)


def pq_kek_section(target: Target) -> dict[str, Any]:
    """[kms] with the overrides of [crypto].pq_kek: the provider and credentials are shared,
    the key is the PQ private key's own (its version counts separately, from 1)."""
    return {**_kms_section(target), "key_version": 1, **target.section("crypto").get("pq_kek", {})}


def pq_kms_for(target: Target) -> Kms:
    return kms_for(pq_kek_section(target), target.resolve)


def pq_private_for(target: Target) -> bytes:
    """The organisation PQ private key, unwrapped through its own KEK (the DEK KEK is not used)."""
    path = target.section("crypto").get("pq_private_wrapped")
    if not path:
        raise UserError("the target names no wrapped PQ private key ([crypto].pq_private_wrapped)")
    kms = pq_kms_for(target)
    try:
        return pq.load_private(target.resolve(path), kms)
    finally:
        kms.close()
