"""The AWS KMS provider against moto's KMS emulator on loopback: an emulator, not AWS (no
real AWS KMS can run here). It checks the calls and the EncryptionContext binding."""

from __future__ import annotations

import pytest

from envelope.client import EnvelopeClient
from envelope.context import wrap_context
from envelope.record import new_dek
from ztm.errors import UserError

pytest.importorskip("moto", reason="moto (the AWS emulator) is not installed: pip install -e .[aws]")


@pytest.fixture(scope="module")
def emulated_kms(monkeypatch_module):
    import boto3
    from moto.server import ThreadedMotoServer

    from envelope.kms.aws import AwsKms

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch_module.setenv(name, "emulator-only")
    key_id = boto3.client("kms", region_name="us-east-1", endpoint_url=endpoint).create_key()["KeyMetadata"]["KeyId"]
    yield AwsKms(key_id, "us-east-1", endpoint)
    server.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_aws_kms_wrap_is_bound_to_the_context_on_the_moto_emulator(emulated_kms):
    dek = new_dek()
    context = wrap_context(tenant="t-1", table="users", key_version=1)
    wrapped = emulated_kms.wrap(dek, context)
    assert emulated_kms.unwrap(wrapped, context) == dek
    with pytest.raises(UserError, match="refused to unwrap"):
        emulated_kms.unwrap(wrapped, wrap_context(tenant="t-2", table="users", key_version=1))


def test_envelope_round_trip_through_the_moto_emulator(emulated_kms):
    client = EnvelopeClient(emulated_kms)
    doc = client.encrypt_user("t-1", {"name": "Ann", "email": "ann@example.invalid", "phone": "+1555"})
    import base64

    row = {"user_id": doc["user_id"], "tenant_id": "t-1", "pii_key_version": 1, "pii_kms_key_id": doc["pii_kms_key_id"],
           "pii_wrapped_key": base64.b64decode(doc["pii_wrapped_key"])}
    for name in ("name", "email", "phone"):
        for part in ("ct", "iv", "aad"):
            row[f"{name}_{part}"] = base64.b64decode(doc[name][part])
    assert client.decrypt_user(row)["email"] == "ann@example.invalid"
    assert doc["pii_kms_key_id"].startswith("aws-kms:")


def test_aws_holds_the_pq_private_key_wrapped_on_the_moto_emulator(emulated_kms, tmp_path):
    from envelope import pq

    material, _ = pq.generate_keypair()
    pq.save_private_wrapped(material, emulated_kms, tmp_path / "pq.json")
    assert pq.load_private(tmp_path / "pq.json", emulated_kms) == material
