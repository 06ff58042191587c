"""The S3 anchor sink against moto's S3 emulator on loopback (an emulator, not AWS):
Object Lock in COMPLIANCE mode with a retain-until date, and refusal of a bucket without it."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ztm import anchoring
from ztm.errors import UserError

pytest.importorskip("moto", reason="moto (the AWS emulator) is not installed: pip install -e .[aws]")


@pytest.fixture(scope="module")
def s3_emulator():
    import boto3
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "emulator-only")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "emulator-only")
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
        client.create_bucket(Bucket="worm", ObjectLockEnabledForBucket=True)
        client.create_bucket(Bucket="plain")
        yield endpoint, client
        server.stop()


def test_anchors_are_stored_in_compliance_mode_on_the_moto_emulator(s3_emulator):
    from ztm.anchoring.sinks import S3Sink

    endpoint, client = s3_emulator
    sink = S3Sink("worm", endpoint_url=endpoint, retain_days=30)
    key, previous = Ed25519PrivateKey.generate(), None
    for seq in (5, 9):
        state = anchoring.make_state({0: (seq, "a" * 64)}, "d" * 64, counts={0: seq})
        previous = anchoring.make_anchor(state, previous, key, "t")
        sink.ship(previous)
    records = sink.read()
    assert [r["checkpoint"]["lanes"]["0"]["seq"] for r in records] == [5, 9]
    assert anchoring.verify_anchor_chain(records, key.public_key()).ok
    head = client.head_object(Bucket="worm", Key="anchors/000000000002.json")  # (moto's GetObjectRetention fails)
    assert head["ObjectLockMode"] == "COMPLIANCE" and head["ObjectLockRetainUntilDate"]


def test_a_bucket_without_object_lock_is_refused_on_the_moto_emulator(s3_emulator):
    from ztm.anchoring.sinks import S3Sink

    endpoint, _ = s3_emulator
    with pytest.raises(UserError, match=r"not write-once|Object Lock"):
        S3Sink("plain", endpoint_url=endpoint).prepare()


def test_an_anchor_object_is_never_overwritten_on_the_moto_emulator(s3_emulator):
    """If-None-Match: a retried upload of the same anchor is accepted as delivered; a
    different anchor under the same key is refused and the stored one stays."""
    from ztm.anchoring.sinks import S3Sink

    endpoint, client = s3_emulator
    sink = S3Sink("worm", prefix="once/", endpoint_url=endpoint)
    key = Ed25519PrivateKey.generate()
    state = anchoring.make_state({0: (1, "a" * 64)}, "d" * 64, counts={0: 1})
    original = anchoring.make_anchor(state, None, key, "t")
    sink.ship(original)
    sink.ship(original)  # the retry of an upload whose answer was lost
    forged = anchoring.make_anchor(anchoring.make_state({0: (1, "b" * 64)}, "d" * 64), None, key, "t")
    with pytest.raises(UserError, match="already holds a different anchor: not overwritten"):
        sink.ship(forged)
    assert sink.read() == [original]
    versions = client.list_object_versions(Bucket="worm", Prefix="once/").get("Versions", [])
    assert len(versions) == 1  # not even a second version was written
