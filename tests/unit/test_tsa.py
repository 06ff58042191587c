"""RFC 3161 timestamps from the lab's TSA (openssl ts behind HTTP) on loopback."""

from __future__ import annotations

import base64
import socket
import subprocess
import sys

import pytest

from provision.pki import PkiLayout, ensure_ca, issue_tsa
from ztm.anchoring import rfc3161
from ztm.errors import UserError


@pytest.fixture(scope="module")
def tsa_url(tmp_path_factory):
    layout = PkiLayout(tmp_path_factory.mktemp("pki"))
    ensure_ca(layout)
    cert, key = issue_tsa(layout)
    proc = subprocess.Popen([sys.executable, "-m", "provision.tsa", "--listen", "127.0.0.1:0", "--cert", str(cert),
                             "--key", str(key), "--dir", str(layout.root / "tsa-state")],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # blocks until the server is bound (or has died)
    assert line.startswith("listening on "), f"the TSA did not start: {line!r}"
    port = int(line.rsplit(":", 1)[1])
    yield f"http://127.0.0.1:{port}/", layout.evidence_ca_cert  # the lab TSA belongs to the evidence hierarchy
    proc.terminate()
    proc.wait(timeout=10)


def test_token_verifies_for_its_data_only(tsa_url):
    url, ca = tsa_url
    token = rfc3161.timestamp(b"checkpoint bytes", url)
    rfc3161.verify(b"checkpoint bytes", token, ca)
    with pytest.raises(UserError, match="verify failed"):
        rfc3161.verify(b"another checkpoint", token, ca)


def test_unreachable_tsa_is_one_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match="did not answer"):
        rfc3161.timestamp(b"x", f"http://127.0.0.1:{port}/", timeout=2)


def test_an_anchor_without_a_timestamp_is_bounded_by_the_next_one(tsa_url):
    """A TSA outage leaves an anchor untimed (flagged, with the reason); the next anchor's
    token covers its hash, so it is a note then, a problem only while no later one has a token."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ztm import anchoring

    url, ca = tsa_url
    key, records, previous = Ed25519PrivateKey.generate(), [], None
    for seq in (1, 2, 3):
        previous = anchoring.make_anchor({"seq": seq, "head_hash": "a" * 64, "row_count": seq, "ddl_digest": "d" * 64},
                                         previous, key, "t")
        records.append(previous)
    records[1]["tst_missing"] = "the time-stamping authority did not answer"
    for record in (records[0], records[2]):
        record["tst"] = base64.b64encode(rfc3161.timestamp(anchoring.canonical(record["checkpoint"]), url)).decode()
    problems, notes = anchoring.check_timestamps(records, ca)
    assert problems == [] and notes == ["anchor 2 carries no RFC 3161 timestamp (the TSA was unavailable: the "
                                        "time-stamping authority did not answer); its time is bounded by anchor 3's "
                                        "timestamp"]
    problems, _ = anchoring.check_timestamps(records[:2], ca)
    assert problems and "nor does any later anchor" in problems[0]
    records[2]["tst"] = records[0]["tst"]  # a token over another checkpoint
    problems, _ = anchoring.check_timestamps(records, ca)
    assert problems and problems[0].startswith("anchor 3: the timestamp does not verify")


def test_a_token_whose_gentime_is_far_from_the_anchors_time_is_refused(tsa_url):
    """The TSA's genTime (now) against an anchor dated an hour ago: the token verifies over the
    checkpoint, but the anchor's time is not what the TSA saw."""
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ztm import anchoring

    url, ca = tsa_url
    key, state = Ed25519PrivateKey.generate(), {"seq": 1, "head_hash": "a" * 64, "row_count": 1, "ddl_digest": "d" * 64}
    stale = anchoring.make_anchor(state, None, key, "t", now=datetime.now(UTC) - timedelta(hours=1))
    token = rfc3161.timestamp(anchoring.canonical(stale["checkpoint"]), url)
    assert abs((rfc3161.gen_time(token) - datetime.now(UTC)).total_seconds()) < 120
    with pytest.raises(UserError, match=r"genTime .* s after the anchor's time"):
        anchoring.check_token(stale, token, ca)
    stale["tst"] = base64.b64encode(token).decode()
    problems, _ = anchoring.check_timestamps([stale], ca)
    assert len(problems) == 1 and "anchor 1: the timestamp does not verify" in problems[0] and "genTime" in problems[0]
    fresh = anchoring.make_anchor(state, None, key, "t")
    anchoring.check_token(fresh, rfc3161.timestamp(anchoring.canonical(fresh["checkpoint"]), url), ca)


def test_a_token_that_does_not_verify_on_arrival_is_asked_for_again_and_never_stored(tsa_url, tmp_path):
    """The shipper checks each token as it arrives; against a CA the TSA does not chain to,
    every attempt fails, and the anchor gets no token (it is flagged, not stored with a bad one)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from provision import anchor_cli
    from provision.pki import PkiLayout, ensure_ca
    from ztm import anchoring

    url, ca = tsa_url
    other = PkiLayout(tmp_path / "other")
    ensure_ca(other)
    record = anchoring.make_anchor({"seq": 1, "head_hash": "a" * 64, "row_count": 1, "ddl_digest": "d" * 64}, None,
                                   Ed25519PrivateKey.generate(), "t")
    assert anchor_cli._verified_token(record, url, ca)  # the right CA: accepted at once
    serial = ca.parent.parent / "tsa-state" / "serial"  # the TSA counts the tokens it issued
    before = int(serial.read_text(), 16)
    with pytest.raises(UserError, match=f"answered {anchor_cli.TSA_ATTEMPTS} times with a token that does not verify"):
        anchor_cli._verified_token(record, url, other.evidence_ca_cert)
    assert int(serial.read_text(), 16) - before == anchor_cli.TSA_ATTEMPTS
