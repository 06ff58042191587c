"""Envelope encryption without a database: AAD binding, the DEK cache, the PQ wrap (with a
fixed known-answer vector), fail-closed without ML-KEM, and the PKCS#11 KMS on a real
SoftHSM2 token."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from envelope import pq
from envelope.cache import CachedKey, DekCache
from envelope.client import EnvelopeClient
from envelope.context import wrap_context
from envelope.kms.base import Kms, WrappedKey
from envelope.record import new_dek, open_field, seal
from ztm.errors import UserError

VECTOR = Path(__file__).parent / "vectors" / "pq_hpke_kat.json"
CTX = dict(tenant="t-1", table="users", column="email", record="r-1", key_version=1)


def test_field_opens_only_in_its_own_context():
    dek = new_dek()
    sealed = seal(dek, "alice@example.invalid", **CTX)
    assert open_field(dek, sealed, **CTX) == "alice@example.invalid"
    for moved in ({"record": "r-2"}, {"column": "name"}, {"tenant": "t-2"}, {"key_version": 2}):
        with pytest.raises(UserError, match="does not authenticate"):
            open_field(dek, sealed, **{**CTX, **moved})


def test_context_values_cannot_inject_separators():
    with pytest.raises(ValueError):
        seal(new_dek(), "x", **{**CTX, "record": "r-1;tenant=t-2"})


def test_dek_cache_limits():
    cache = DekCache(max_age=60, max_messages=3, max_bytes=100)
    entry = CachedKey(b"k" * 32, WrappedKey(b"w", "id", 1), None)
    cache.put("t", 1, entry, 10)
    assert cache.take("t", 1, 10) is entry and cache.take("t", 1, 10) is entry
    assert cache.take("t", 1, 10) is None  # fourth message: over max_messages
    cache.put("t", 1, entry, 95)
    assert cache.take("t", 1, 10) is None  # over max_bytes
    assert DekCache(enabled=False).take("t", 1, 1) is None


def test_pq_known_answer_vector():
    vector = json.loads(VECTOR.read_text())
    assert vector["pq_alg"] == pq.PQ_ALG
    dek = pq.unwrap(base64.b64decode(vector["ciphertext_b64"]), base64.b64decode(vector["private_material_b64"]),
                    vector["info"].encode())
    assert dek.hex() == vector["dek_hex"]
    with pytest.raises(UserError, match="does not open"):
        pq.unwrap(base64.b64decode(vector["ciphertext_b64"]), base64.b64decode(vector["private_material_b64"]),
                  b"another context")


def test_pq_fails_closed_without_mlkem(monkeypatch):
    from cryptography.hazmat.primitives import hpke

    monkeypatch.delattr(hpke.KEM, "MLKEM768_X25519", raising=False)
    if hasattr(hpke.KEM, "MLKEM768_X25519"):  # a Rust enum attribute cannot be removed here
        monkeypatch.setattr(hpke, "Suite", lambda *a: (_ for _ in ()).throw(AttributeError("no ML-KEM")))
    with pytest.raises(UserError, match="lacks ML-KEM"):
        pq.generate_keypair()


class CountingKms(Kms):
    """An in-memory stand-in for a KMS, for counting calls only (the real one is tested below)."""

    def __init__(self) -> None:
        self.calls, self.kek = 0, new_dek()

    @property
    def current_version(self) -> int:
        return 1

    def wrap(self, dek, context, key_version=None):
        self.calls += 1
        sealed = seal(self.kek, dek.hex(), tenant="kms", table="kms", column="dek", record=context.hex()[:40],
                      key_version=1)
        return WrappedKey(sealed.iv + sealed.ct, "memory", 1)

    def unwrap(self, wrapped, context):
        raise NotImplementedError


def test_cache_cuts_kms_calls_per_tenant():
    kms = CountingKms()
    client = EnvelopeClient(kms, None, DekCache(max_messages=100))
    for _ in range(250):
        client.encrypt_user("t-1", {"name": "a", "email": "b", "phone": "c"})
    assert kms.calls == 3  # a fresh DEK every 100 records
    uncached = EnvelopeClient(CountingKms(), None, DekCache(enabled=False))
    for _ in range(10):
        uncached.encrypt_user("t-1", {"name": "a", "email": "b", "phone": "c"})
    assert uncached.kms.calls == 10


@pytest.fixture(scope="module")
def softhsm(tmp_path_factory):
    if shutil.which("softhsm2-util") is None:
        pytest.skip("softhsm2 is not installed (tasks.py installs it)")
    from envelope.kms.pkcs11 import Pkcs11Kms
    from provision import kms as lab_kms

    layout = lab_kms.KmsLayout(tmp_path_factory.mktemp("hsm"))
    lab_kms.ensure_token(layout, "user-pin-for-tests", "so-pin-for-tests")
    lab_kms.ensure_keys(layout, "user-pin-for-tests")
    kms = Pkcs11Kms(lab_kms.MODULE, lab_kms.TOKEN_LABEL, lab_kms.KEY_PREFIX, "user-pin-for-tests", 1,
                    {"SOFTHSM2_CONF": str(layout.conf)})
    yield kms, layout
    kms.close()


def test_pkcs11_wrap_binds_the_context_and_the_kek_stays_in_the_token(softhsm):
    kms, _ = softhsm
    dek = new_dek()
    context = wrap_context(tenant="t-1", table="users", key_version=1)
    wrapped = kms.wrap(dek, context)
    assert kms.unwrap(wrapped, context) == dek and dek not in wrapped.blob
    with pytest.raises(UserError, match="refused to unwrap"):
        kms.unwrap(wrapped, wrap_context(tenant="t-2", table="users", key_version=1))
    assert kms.kek_attributes(1) == {"extractable": False, "sensitive": True}


def test_pq_private_key_is_stored_only_wrapped(softhsm):
    kms, layout = softhsm
    stored = layout.pq_private_wrapped.read_bytes()
    material = pq.load_private(layout.pq_private_wrapped, kms)
    assert len(material) == 96 and base64.b64encode(material) not in stored and material not in stored
    assert layout.pq_private_wrapped.stat().st_mode & 0o777 == 0o600
    client = EnvelopeClient(kms, pq.PqPublicKey.load(layout.pq_public))
    doc = client.encrypt_user("t-1", {"name": "Ann", "email": "ann@example.invalid", "phone": "+1555"})
    row = {"user_id": doc["user_id"], "tenant_id": "t-1", "pii_key_version": 1,
           "pii_wrapped_key": base64.b64decode(doc["pii_wrapped_key"]), "pii_kms_key_id": doc["pii_kms_key_id"],
           "pii_pq_wrapped_key": base64.b64decode(doc["pii_pq_wrapped_key"]), "pq_alg": doc["pq_alg"]}
    for name in ("name", "email", "phone"):
        for part in ("ct", "iv", "aad"):
            row[f"{name}_{part}"] = base64.b64decode(doc[name][part])
    assert client.decrypt_user(row) == EnvelopeClient.recover_with_pq(row, material)
