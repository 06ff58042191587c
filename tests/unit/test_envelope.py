"""Envelope encryption without a database: AAD binding (incl. key version), the versioned
header, the DEK cache and its limits from the target, the PQ wrap (known-answer vectors,
context in HPKE info, pq_alg), fail-closed without ML-KEM, and the PKCS#11 KMS on a real
SoftHSM2 token: the PQ private key under its own KEK, break-glass with the DEK KEK destroyed."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envelope import branch, pq
from envelope.cache import CachedKey, DekCache
from envelope.client import EnvelopeClient, open_fields
from envelope.context import FORMAT_V2, field_aad, parse_header, wrap_context
from envelope.kms.base import Kms, WrappedKey
from envelope.record import new_dek, open_field, seal
from ztm.errors import UserError

VECTORS = Path(__file__).parent / "vectors"
CTX = dict(tenant="t-1", table="users", column="email", record="r-1", key_version=1)
PII = {"name": "Ann", "email": "ann@example.invalid", "phone": "+1555"}


def stored_row(doc: dict, tenant: str) -> dict:
    """The v_users row a document becomes (bytes columns decoded, as the driver returns them)."""
    row = {"user_id": doc["user_id"], "tenant_id": tenant, "pii_key_version": doc["pii_key_version"],
           "pii_wrapped_key": base64.b64decode(doc["pii_wrapped_key"]), "pii_kms_key_id": doc["pii_kms_key_id"],
           "pii_pq_wrapped_key": base64.b64decode(doc["pii_pq_wrapped_key"]) if "pq_alg" in doc else None,
           "pq_alg": doc.get("pq_alg")}
    for name in ("name", "email", "phone"):
        for part in ("ct", "iv", "aad"):
            row[f"{name}_{part}"] = base64.b64decode(doc[name][part])
    return row


def test_field_opens_only_in_its_own_context():
    dek = new_dek()
    sealed = seal(dek, "alice@example.invalid", **CTX)
    assert open_field(dek, sealed, **CTX) == "alice@example.invalid"
    for moved in ({"record": "r-2"}, {"column": "name"}, {"tenant": "t-2"}, {"table": "accounts"},
                  {"key_version": 2}):
        with pytest.raises(UserError, match="does not authenticate"):
            open_field(dek, sealed, **{**CTX, **moved})


def test_context_values_cannot_inject_separators():
    with pytest.raises(ValueError):
        seal(new_dek(), "x", **{**CTX, "record": "r-1;tenant=t-2"})


def test_record_known_answer_vector():
    """A stored record from a fixed vector: context serialization, header, AES-256-GCM and the
    HPKE wrap all unchanged; sealed at key version 1, opened after a rotation to version 2."""
    vector = json.loads((VECTORS / "envelope_record_kat.json").read_text())
    hpke_kat = json.loads((VECTORS / "pq_hpke_kat.json").read_text())
    row = {k: bytes.fromhex(v) if k.endswith(("_ct", "_iv", "_aad", "_pq_wrapped_key")) else v
           for k, v in vector["row"].items()}
    tenant, user = row["tenant_id"], row["user_id"]
    for name, aad in vector["field_aad"].items():
        assert field_aad(tenant=tenant, table="users", column=name, record=user, key_version=1) == aad.encode()
    assert wrap_context(tenant=tenant, table="users", key_version=1) == vector["wrap_context_v1"].encode()
    assert open_fields(bytes.fromhex(vector["dek_hex"]), row) == vector["pii"]
    private = base64.b64decode(hpke_kat["private_material_b64"])
    assert EnvelopeClient.recover_with_pq(row, private) == vector["pii"]


def test_versioned_header_old_records_open_after_rotation_unknown_ones_refused():
    dek, tenant, user = new_dek(), "t-1", "r-1"
    doc = {"user_id": user, "tenant_id": tenant, "pii_key_version": 3}
    for name in ("name", "email", "phone"):
        sealed = seal(dek, f"{name}-v1", tenant=tenant, table="users", column=name, record=user, key_version=1)
        doc |= {f"{name}_ct": sealed.ct, f"{name}_iv": sealed.iv, f"{name}_aad": sealed.aad}
    assert open_fields(dek, doc)["email"] == "email-v1"  # sealed at v1, row re-wrapped to v3
    assert parse_header(doc["name_aad"]).key_version == 1
    with pytest.raises(UserError, match=r"users\.name of record r-1 has no valid envelope header"):
        open_fields(dek, {**doc, "pii_key_version": 0})  # a header newer than the row: not trusted
    foreign = doc["name_aad"].replace(b"ztm-envelope-v1", b"ztm-envelope-v9")
    assert parse_header(foreign) is None
    with pytest.raises(UserError, match="no valid envelope header"):
        open_fields(dek, {**doc, "name_aad": foreign})
    with pytest.raises(UserError, match="no valid envelope header"):
        open_fields(dek, {**doc, "phone_aad": b"none"})


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_dek_cache_limits_messages_bytes_and_age():
    clock = FakeClock()
    cache = DekCache(max_age=60, max_messages=3, max_bytes=100, clock=clock)
    entry = CachedKey(b"k" * 32, WrappedKey(b"w", "id", 1), None)
    cache.put("t", 1, entry, 10)
    assert cache.take("t", 1, 10) is entry and cache.take("t", 1, 10) is entry
    assert cache.take("t", 1, 10) is None  # fourth message: over max_messages
    cache.put("t", 1, entry, 95)
    assert cache.take("t", 1, 10) is None  # over max_bytes
    cache.put("t", 1, entry, 1)
    assert cache.take("t2", 1, 1) is None and cache.take("t", 2, 1) is None  # per tenant and key version
    clock.now += 60
    assert cache.take("t", 1, 1) is entry  # exactly at max_age: still within it
    clock.now += 0.001
    assert cache.take("t", 1, 1) is None  # older than max_age
    assert DekCache(enabled=False).take("t", 1, 1) is None


def test_dek_cache_limits_come_from_the_target_section():
    cache = DekCache.from_config({"max_age_seconds": 5, "max_messages": 7, "max_bytes": 4096})
    assert (cache.max_age, cache.max_messages, cache.max_bytes, cache.enabled) == (5.0, 7, 4096, True)
    assert not DekCache.from_config({"enabled": False}).enabled
    assert not DekCache.from_config({"enabled": True}, enabled=False).enabled  # --no-dek-cache wins
    assert DekCache.from_config({}).limits() == DekCache().limits()
    for bad in ({"max_age_seconds": 0}, {"max_messages": 0}, {"max_messages": 2**32 + 1}, {"max_bytes": 0},
                {"max_bytes": "lots"}):
        with pytest.raises(UserError, match=r"\[crypto.dek_cache\]"):
            DekCache.from_config(bad)


def test_pq_known_answer_vector():
    vector = json.loads((VECTORS / "pq_hpke_kat.json").read_text())
    assert vector["pq_alg"] == pq.PQ_ALG
    dek = pq.unwrap(base64.b64decode(vector["ciphertext_b64"]), base64.b64decode(vector["private_material_b64"]),
                    vector["info"].encode())
    assert dek.hex() == vector["dek_hex"]
    with pytest.raises(UserError, match="does not open"):
        pq.unwrap(base64.b64decode(vector["ciphertext_b64"]), base64.b64decode(vector["private_material_b64"]),
                  b"another context")


def test_hpke_info_binds_the_wrap_to_tenant_table_and_version():
    private, public = pq.generate_keypair()
    dek = new_dek()
    context = wrap_context(tenant="t-1", table="users", key_version=1)
    blob = pq.wrap(dek, public, context)
    assert pq.unwrap(blob, private, context) == dek
    for moved in (dict(tenant="t-2", table="users", key_version=1), dict(tenant="t-1", table="accounts",
                                                                          key_version=1),
                  dict(tenant="t-1", table="users", key_version=2)):
        with pytest.raises(UserError, match="does not open"):
            pq.unwrap(blob, private, wrap_context(**moved))
    corrupt = bytearray(blob)
    corrupt[len(corrupt) // 2] ^= 1
    with pytest.raises(UserError, match="does not open"):
        pq.unwrap(bytes(corrupt), private, context)


def test_pq_alg_is_recorded_and_checked():
    private, public = pq.generate_keypair()
    client = EnvelopeClient(CountingKms(), public)
    doc = client.encrypt_user("t-1", PII)
    assert doc["pq_alg"] == pq.PQ_ALG == "HPKE-MLKEM768-X25519-HKDF-SHA256-AES-256-GCM"
    row = stored_row(doc, "t-1")
    assert EnvelopeClient.recover_with_pq(row, private) == PII
    with pytest.raises(UserError, match="names PQ suite 'HPKE-X25519-HKDF-SHA256-AES-128-GCM'"):
        EnvelopeClient.recover_with_pq({**row, "pq_alg": "HPKE-X25519-HKDF-SHA256-AES-128-GCM"}, private)
    with pytest.raises(UserError, match="carries no post-quantum wrap"):
        EnvelopeClient.recover_with_pq({**row, "pii_pq_wrapped_key": None, "pq_alg": None}, private)


def test_pq_fails_closed_without_mlkem():
    # Made before the backend loses ML-KEM: a record that carries a PQ wrap.
    private, public = pq.generate_keypair()
    row = stored_row(EnvelopeClient(CountingKms(), public).encrypt_user("t-1", PII), "t-1")
    with pytest.MonkeyPatch.context() as patch:
        from cryptography.hazmat.primitives import hpke

        patch.delattr(hpke.KEM, "MLKEM768_X25519", raising=False)
        if hasattr(hpke.KEM, "MLKEM768_X25519"):
            patch.setattr(hpke, "Suite", lambda *a: (_ for _ in ()).throw(AttributeError("no ML-KEM")))
        message = "the crypto backend lacks ML-KEM-768 hybrid HPKE"
        with pytest.raises(UserError, match=message):
            pq.generate_keypair()
        kms = CountingKms()
        with pytest.raises(UserError, match=message):  # no silent fallback to a record without a PQ wrap
            EnvelopeClient(kms, public).encrypt_user("t-1", PII)
        with pytest.raises(UserError, match=message):
            EnvelopeClient.recover_with_pq(row, private)


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


def test_branch_key_one_kms_call_per_tenant_and_a_fresh_dek_salt_per_record():
    """Format v2: the tenant's branch key is wrapped once per cache lifetime, whatever the
    per-DEK message limit; every record carries its own random salt."""
    clock = [0.0]
    kms = CountingKms()
    client = EnvelopeClient(kms, None, DekCache(max_messages=100, max_age=60, clock=lambda: clock[0]))
    docs = [client.encrypt_user("t-1", PII) for _ in range(250)]
    assert kms.calls == 1
    salts = {branch.unpack(base64.b64decode(d["pii_wrapped_key"]))[0] for d in docs}
    assert len(salts) == 250
    assert all(parse_header(base64.b64decode(d["email"]["aad"])).format == FORMAT_V2 for d in docs)
    client.encrypt_user("t-2", PII)
    assert kms.calls == 2  # another tenant has its own branch key
    clock[0] = 61.0
    client.encrypt_user("t-1", PII)
    assert kms.calls == 3  # the cache lifetime bounds the branch key


def test_record_deks_are_distinct_and_bound_to_their_record():
    key, salt = bytes(range(32)), bytes(32)
    deks = {branch.derive_dek(key, s, tenant="t", table="users", record=r)
            for s in (salt, bytes([1]) * 32) for r in ("r-1", "r-2")}
    assert len(deks) == 4  # another salt or another record: another DEK
    assert branch.derive_dek(key, salt, tenant="t", table="users", record="r-1") != \
        branch.derive_dek(key, salt, tenant="u", table="users", record="r-1")
    with pytest.raises(UserError, match="truncated"):
        branch.unpack(branch.MAGIC + salt)
    assert branch.unpack(b"\x01" * 60) is None  # a v1 wrapped DEK


def test_cache_cuts_kms_calls_per_tenant():
    """Format v1 (legacy_v1): a cached DEK serves up to max_messages records."""
    kms = CountingKms()
    client = EnvelopeClient(kms, None, DekCache(max_messages=100), legacy_v1=True)
    for _ in range(250):
        client.encrypt_user("t-1", PII)
    assert kms.calls == 3  # a fresh DEK every 100 records
    client.encrypt_user("t-2", PII)
    assert kms.calls == 4  # another tenant never shares a DEK
    uncached = EnvelopeClient(CountingKms(), None, DekCache(enabled=False), legacy_v1=True)
    for _ in range(10):
        uncached.encrypt_user("t-1", PII)
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
    env = {"SOFTHSM2_CONF": str(layout.conf)}
    kms = Pkcs11Kms(lab_kms.MODULE, lab_kms.TOKEN_LABEL, lab_kms.KEY_PREFIX, "user-pin-for-tests", 1, env)
    pq_kms = Pkcs11Kms(lab_kms.MODULE, lab_kms.TOKEN_LABEL, lab_kms.PQ_KEY_PREFIX, "user-pin-for-tests", 1, env)
    yield kms, pq_kms, layout
    pq_kms.close()
    kms.close()


@pytest.mark.parametrize("mechanism", ["aes-gcm", "aes-kwp"])
def test_pkcs11_wrap_binds_the_context_and_the_kek_stays_in_the_token(softhsm, mechanism):
    from envelope.kms.pkcs11 import Pkcs11Kms
    from provision import kms as lab_kms

    default_kms, _, layout = softhsm
    kms = Pkcs11Kms(lab_kms.MODULE, lab_kms.TOKEN_LABEL, lab_kms.KEY_PREFIX, "user-pin-for-tests", 1,
                    {"SOFTHSM2_CONF": str(layout.conf)}, mechanism)
    try:
        dek = new_dek()
        context = wrap_context(tenant="t-1", table="users", key_version=1)
        wrapped = kms.wrap(dek, context)
        assert wrapped.blob[:1] == {"aes-gcm": b"\x01", "aes-kwp": b"\x02"}[mechanism]
        assert kms.unwrap(wrapped, context) == dek and dek not in wrapped.blob
        assert default_kms.unwrap(wrapped, context) == dek  # the blob says how it was wrapped
        for other in (wrap_context(tenant="t-2", table="users", key_version=1),
                      wrap_context(tenant="t-1", table="users", key_version=2)):
            moved = {"aes-gcm": "refused to unwrap", "aes-kwp": "belongs to another context"}[mechanism]
            with pytest.raises(UserError, match=moved):
                kms.unwrap(wrapped, other)
        tampered = bytearray(wrapped.blob)
        tampered[-3] ^= 1
        with pytest.raises(UserError, match="refused to unwrap"):
            kms.unwrap(WrappedKey(bytes(tampered), wrapped.key_id, 1), context)
        with pytest.raises(UserError, match="wrapped by 'pkcs11:token=ztm-kms;object=elsewhere'"):
            kms.unwrap(WrappedKey(wrapped.blob, "pkcs11:token=ztm-kms;object=elsewhere", 1), context)
        assert kms.kek_attributes(1) == {"extractable": False, "sensitive": True}
    finally:
        kms.close()


def test_pkcs11_unknown_wrap_mechanism_is_refused(softhsm):
    from envelope.kms.pkcs11 import Pkcs11Kms
    from provision import kms as lab_kms

    with pytest.raises(UserError, match="'aes-ecb' is not one of aes-gcm, aes-kwp"):
        Pkcs11Kms(lab_kms.MODULE, lab_kms.TOKEN_LABEL, lab_kms.KEY_PREFIX, "user-pin-for-tests", 1,
                  {"SOFTHSM2_CONF": str(softhsm[2].conf)}, "aes-ecb")


def test_pq_private_key_is_stored_only_wrapped_under_its_own_kek(softhsm):
    kms, pq_kms, layout = softhsm
    stored = layout.pq_private_wrapped.read_bytes()
    assert pq.read_private_wrapped(layout.pq_private_wrapped).key_id == pq_kms.key_id(1) != kms.key_id(1)
    with pytest.raises(UserError, match="not by this KMS"):  # the DEK KEK does not open it
        pq.load_private(layout.pq_private_wrapped, kms)
    material = pq.load_private(layout.pq_private_wrapped, pq_kms)
    assert len(material) == 96 and base64.b64encode(material) not in stored and material not in stored
    assert layout.pq_private_wrapped.stat().st_mode & 0o777 == 0o600
    assert pq_kms.kek_attributes(1) == {"extractable": False, "sensitive": True}
    client = EnvelopeClient(kms, pq.PqPublicKey.load(layout.pq_public))
    row = stored_row(client.encrypt_user("t-1", PII), "t-1")
    assert client.decrypt_user(row) == EnvelopeClient.recover_with_pq(row, material) == PII


def test_older_lab_pq_key_under_the_dek_kek_is_moved_to_its_own_kek(softhsm):
    from provision import kms as lab_kms

    kms, pq_kms, layout = softhsm
    material = pq.load_private(layout.pq_private_wrapped, pq_kms)
    pq.save_private_wrapped(material, kms, layout.pq_private_wrapped)  # as labs made before the PQ KEK
    lab_kms.ensure_keys(layout, "user-pin-for-tests")
    assert pq.read_private_wrapped(layout.pq_private_wrapped).key_id == pq_kms.key_id(1)
    assert pq.load_private(layout.pq_private_wrapped, pq_kms) == material


def test_break_glass_recovers_with_the_dek_kek_destroyed(softhsm):
    """A DEK KEK under its own label (the shared one stays for the other tests) encrypts a
    record; the HSM then destroys it: the KMS path is gone, the PQ path still recovers."""
    from envelope.kms.pkcs11 import Pkcs11Kms
    from provision import kms as lab_kms

    _, pq_kms, layout = softhsm
    doomed = Pkcs11Kms(lab_kms.MODULE, lab_kms.TOKEN_LABEL, "ztm-doomed-kek-v", "user-pin-for-tests", 1,
                       {"SOFTHSM2_CONF": str(layout.conf)})
    try:
        doomed.create_kek(1)
        client = EnvelopeClient(doomed, pq.PqPublicKey.load(layout.pq_public))
        row = stored_row(client.encrypt_user("t-1", PII), "t-1")
        assert client.decrypt_user(row) == PII
        # Through the process's one handle on the module: a second pkcs11.lib would finalise
        # the module for every client when collected.
        with doomed._token.session(rw=True) as session:
            session.get_key(label="ztm-doomed-kek-v1").destroy()
        assert not doomed.has_kek(1)
        with pytest.raises(UserError, match="no key-encryption key ztm-doomed-kek-v1"):
            client.decrypt_user(row)
        assert EnvelopeClient.recover_with_pq(row, pq.load_private(layout.pq_private_wrapped, pq_kms)) == PII
    finally:
        doomed.close()


def test_v1_and_v2_records_decrypt_and_recover_through_pq_on_a_real_token(softhsm):
    """Records of the old code path (v1) and the new (v2) decrypt through the KMS and recover
    through the PQ wrap alone; two v2 records of one branch key have different DEKs; a v2
    record's salt moved into another record does not open it."""
    kms, pq_kms, layout = softhsm
    public, private = pq.PqPublicKey.load(layout.pq_public), pq.load_private(layout.pq_private_wrapped, pq_kms)
    new, old = EnvelopeClient(kms, public), EnvelopeClient(kms, public, legacy_v1=True)
    rows = [stored_row(new.encrypt_user("t-1", PII), "t-1") for _ in range(3)]
    legacy = [stored_row(old.encrypt_user("t-1", PII), "t-1") for _ in range(2)]
    assert not any(branch.unpack(r["pii_wrapped_key"]) for r in legacy)
    for row in rows + legacy:
        assert new.decrypt_user(row) == PII
        assert EnvelopeClient.recover_with_pq(row, private) == PII
    deks = [new.unwrap_dek(r) for r in rows]
    assert len(set(deks)) == 3
    assert len({new.unwrap_dek(r) for r in legacy}) == 1  # v1: one cached DEK shared
    moved = dict(rows[1], pii_wrapped_key=rows[0]["pii_wrapped_key"])
    assert new.unwrap_dek(moved) != deks[1]
    with pytest.raises(UserError, match="does not authenticate"):
        new.decrypt_user(moved)


def test_kms_configuration_mistakes_are_one_clear_line(tmp_path, softhsm):
    from envelope.kms import kms_for
    from provision import kms as lab_kms

    _, _, layout = softhsm
    base = {"provider": "pkcs11", "module": lab_kms.MODULE, "token_label": lab_kms.TOKEN_LABEL,
            "env": {"SOFTHSM2_CONF": str(layout.conf)}}
    pin, empty = tmp_path / "pin", tmp_path / "empty"
    pin.write_text("not-the-pin\n")
    empty.write_text("")
    cases = {
        "names no token PIN": base,
        r"secret \(file:.*\) is empty": {**base, "pin": {"file": str(empty)}},
        "ZTM_TEST_NO_SUCH_PIN": {**base, "pin": {"env": "ZTM_TEST_NO_SUCH_PIN"}},
        "lacks the field 'module'": {k: v for k, v in base.items() if k != "module"} | {"pin": {"file": str(pin)}},
        "lacks the field 'key_id'": {"provider": "aws"},
        "no known provider": {"provider": "vault"},
        "has a bad value": {**base, "pin": {"file": str(pin)}, "key_version": "one"},
        "already open in this process with another PIN": {**base, "pin": {"file": str(pin)}},
        "already loaded in this process": {**base, "pin": {"file": str(pin)},
                                           "env": {"SOFTHSM2_CONF": str(tmp_path / "other.conf")}},
    }
    for message, section in cases.items():
        with pytest.raises(UserError, match=message):
            kms_for(section, Path)


def test_target_sets_the_dek_cache_limits_and_the_flag_turns_it_off(softhsm, tmp_path):
    """[crypto.dek_cache] in a target file reaches the client: max_messages = 2 means a fresh
    DEK, wrapped by the real token, every second record; enabled = false (or the command
    line's --no-dek-cache) means one per record."""
    import tomli_w

    from envelope.setup import client_for
    from provision import kms as lab_kms
    from tests.unit.test_target import MINIMAL
    from ztm.target import load_target

    _, _, layout = softhsm
    pin = tmp_path / "pin"
    pin.write_text("user-pin-for-tests\n")

    def target(cache: dict) -> Path:
        path = tmp_path / f"target-{len(list(tmp_path.iterdir()))}.toml"
        path.write_text(MINIMAL + tomli_w.dumps({
            "kms": {"provider": "pkcs11", "module": lab_kms.MODULE, "token_label": lab_kms.TOKEN_LABEL,
                    "pin": {"file": str(pin)}, "env": {"SOFTHSM2_CONF": str(layout.conf)}},
            "crypto": {"require_pq": False, "dek_cache": cache}}))
        return path

    def wraps(path: Path, records: int = 5, **kw) -> tuple[int, dict]:
        client = client_for(load_target(path), **kw)
        try:
            for _ in range(records):
                client.encrypt_user("t-1", PII)
            return client.kms.calls, client.cache.limits()
        finally:
            client.kms.close()

    limited = target({"max_messages": 2, "max_age_seconds": 30, "max_bytes": 4096})
    # A branch key (v2) is bounded by its age only: each record has its own DEK, so the
    # per-DEK message and byte limits do not cost KMS calls; turning the cache off does.
    assert wraps(limited) == (1, {"enabled": True, "max_age_s": 30.0, "max_messages": 2, "max_bytes": 4096})
    assert wraps(limited, cache=False)[0] == 5
    assert wraps(target({"enabled": False}))[0] == 5
    assert wraps(target({"max_bytes": 2 * len("".join(PII.values()).encode())}))[0] == 1


def test_pkcs11_one_module_load_per_process_and_read_only_sessions_for_wrapping(softhsm):
    """Clients share the process's one module load and login; wrap and unwrap run in
    read-only sessions; closing one client does not log the others out."""
    from envelope.kms import pkcs11 as provider
    from envelope.kms.pkcs11 import Pkcs11Kms
    from provision import kms as lab_kms

    default_kms, _, layout = softhsm
    env = {"SOFTHSM2_CONF": str(layout.conf)}
    first = Pkcs11Kms(lab_kms.MODULE, lab_kms.TOKEN_LABEL, lab_kms.KEY_PREFIX, "user-pin-for-tests", 1, env)
    second = Pkcs11Kms(lab_kms.MODULE, lab_kms.TOKEN_LABEL, lab_kms.KEY_PREFIX, "user-pin-for-tests", 1, env)
    assert first._token is second._token is default_kms._token
    assert list(provider._modules) == [lab_kms.MODULE]
    context = wrap_context(tenant="t-1", table="users", key_version=1)
    wrapped = first.wrap(b"k" * 32, context)
    first.close()
    assert second.unwrap(wrapped, context) == b"k" * 32, "closing one client logged the others out"
    idle = second._token._idle
    assert idle and not any(session.rw for session in idle), "a wrap or unwrap session is read-write"


REBUILT_TOKEN = """
import shutil, sys
from pathlib import Path
from envelope.kms.pkcs11 import Pkcs11Kms
from provision import kms as lab_kms
from ztm.errors import UserError

layout = lab_kms.KmsLayout(Path(sys.argv[1]))
env = {"SOFTHSM2_CONF": str(layout.conf)}
lab_kms.ensure_token(layout, "first-pin", "so-pin")
first = Pkcs11Kms(lab_kms.MODULE, lab_kms.TOKEN_LABEL, lab_kms.KEY_PREFIX, "first-pin", 1, env)
first.create_kek(1)
shutil.rmtree(layout.tokens)  # the lab is rebuilt: a new token, the same label, another PIN
lab_kms.ensure_token(layout, "second-pin", "so-pin")
second = Pkcs11Kms(lab_kms.MODULE, lab_kms.TOKEN_LABEL, lab_kms.KEY_PREFIX, "second-pin", 1, env)
second.create_kek(1)
wrapped = second.wrap(b"k" * 32, b"ctx")
try:
    Pkcs11Kms(lab_kms.MODULE, lab_kms.TOKEN_LABEL, lab_kms.KEY_PREFIX, "wrong-pin", 1, env)
except UserError as exc:
    print("wrong:", exc)
assert second.unwrap(wrapped, b"ctx") == b"k" * 32, "the right PIN's client stopped working"
print("ok")
"""


def test_a_token_made_again_opens_with_its_new_pin_and_a_wrong_pin_changes_nothing(tmp_path):
    """One process, the lab rebuilt under it (as the lab tests do): the token is found again
    with its new PIN; a wrong PIN is refused and the open client keeps working."""
    if shutil.which("softhsm2-util") is None:
        pytest.skip("softhsm2 is not installed (tasks.py installs it)")
    done = subprocess.run([sys.executable, "-c", REBUILT_TOKEN, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0 and done.stdout.endswith("ok\n"), done.stdout + done.stderr
    assert "wrong: PKCS#11 token 'ztm-kms' is already open in this process with another PIN" in done.stdout
