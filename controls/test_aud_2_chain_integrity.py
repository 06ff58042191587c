"""ZTM-AUD-2: every lane of the audit trail recomputes from its first event to its head.

Read as the auditor over mTLS and streamed (the C driver where it can pin the server name,
lanes and seq ranges verified in parallel on a long trail, joins checked): in each of the
trail's lanes every curr_hash is recomputed as SHA-256(prev_hash || payload) over the stored
bytes, every link and every seq checked, and the lane's head row must point at its last
event; every lane must have its head row. The lanes' heads (and their digest) are the
evidence an anchor or a later run can start from.
"""

from __future__ import annotations

import json

import pytest

from ztm.audit_chain import verify_target

pytestmark = [pytest.mark.control("ZTM-AUD-2"), pytest.mark.needs("data_plane", "login.auditor")]


def test_full_chain_recomputes_to_the_head(target, evidence):
    report, driver = verify_target(target, "auditor")
    evidence.json("chain", {**report.to_dict(), "driver": driver})
    assert report.checked > 0, "the audit trail holds no event: nothing was ever audited"
    assert report.intact, report.describe()


def test_payload_follows_the_documented_format(target, connect, evidence):
    conn = connect("auditor")
    with conn.cursor() as cur:
        cur.execute(f"SELECT h.lane, h.seq, e.payload FROM {target.database}.audit_chain_head h "
                    f"JOIN {target.database}.audit_events e ON e.lane = h.lane AND e.seq = h.seq "
                    "WHERE h.seq > 0 ORDER BY h.seq DESC LIMIT 1")
        row = cur.fetchone()
    if row is None:
        pytest.skip("the audit trail holds no event yet")
    lane, seq, payload = row
    doc = json.loads(payload)
    evidence.json("latest-event", {"lane": lane, "seq": seq, "keys": sorted(doc)})
    assert payload.startswith(f'{{"lane": {lane}, "seq": {seq}, '), \
        f"payload of lane {lane} seq {seq} does not start with its lane and seq"
    missing = {"table", "op", "actor", "at", "before", "after"} - set(doc)
    assert not missing, f"payload of lane {lane} seq {seq} lacks {sorted(missing)}"
