"""Build the envelope client of a target: its KMS and, when required, the PQ public key."""

from __future__ import annotations

from envelope import pq
from envelope.cache import DekCache
from envelope.client import EnvelopeClient
from envelope.kms import kms_for
from ztm.errors import UserError
from ztm.target import Target


def client_for(target: Target, *, cache: bool = True, with_pq: bool | None = None) -> EnvelopeClient:
    section = target.section("kms")
    if not section:
        raise UserError("the target has no [kms] section: client-side encryption needs a KMS")
    kms = kms_for(section, target.resolve)
    crypto = target.section("crypto")
    use_pq = crypto.get("require_pq", False) if with_pq is None else with_pq
    public = None
    if use_pq:
        if not crypto.get("pq_public_key"):
            raise UserError("post-quantum wraps are required but the target names no [crypto].pq_public_key")
        public = pq.PqPublicKey.load(target.resolve(crypto["pq_public_key"]))
    return EnvelopeClient(kms, public, DekCache(enabled=cache))


def pq_private_for(target: Target, client: EnvelopeClient) -> bytes:
    path = target.section("crypto").get("pq_private_wrapped")
    if not path:
        raise UserError("the target names no wrapped PQ private key ([crypto].pq_private_wrapped)")
    return pq.load_private(target.resolve(path), client.kms)
