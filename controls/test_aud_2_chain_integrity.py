"""ZTM-AUD-2: the audit hash chain recomputes from the first event to the head.

Read as the auditor over mTLS and streamed (the C driver where it can pin the server name,
seq ranges verified in parallel on a long chain, joins checked): every curr_hash is recomputed as
SHA-256(prev_hash || payload) over the stored bytes, every link and every seq checked, and
the head row must point at the last event. The head seq and hash are the evidence an
anchor or a later run can start from.
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
        cur.execute(f"SELECT seq, payload FROM {target.database}.audit_events ORDER BY seq DESC LIMIT 1")
        row = cur.fetchone()
    if row is None:
        pytest.skip("the audit trail holds no event yet")
    seq, payload = row
    doc = json.loads(payload)
    evidence.json("latest-event", {"seq": seq, "keys": sorted(doc)})
    assert payload.startswith(f'{{"seq": {seq}, '), f"payload of seq {seq} does not start with its seq"
    missing = {"table", "op", "actor", "at", "before", "after"} - set(doc)
    assert not missing, f"payload of seq {seq} lacks {sorted(missing)}"
