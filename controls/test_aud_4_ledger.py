"""ZTM-AUD-4: the data equals its audit trail (ledger reconciliation).

The chain (ZTM-AUD-2) proves the trail was not rewritten; this proves the data is what the
trail says. As the auditor, in one consistent snapshot, the authentic trail is replayed per
key and compared with every audited table: each current row equals the last after-image of
its key column by column (and has no column the trail does not record), a key whose last
event is a DELETE is absent, no row exists without events, every event's before-image equals
what the previous event of its key left, and the trail names no table the schema lacks.

It catches any change of audited data that bypassed the trail and was not put back: a
trigger dropped around an UPDATE, an ALTER TABLE that rewrites a column, rows inserted or
deleted with the triggers off. It cannot see a change made and reverted between two reads
with no event in between (the anchors' definition digests and the guard triggers cover the
means to do that). Findings name table, key and column, never a value.
"""

from __future__ import annotations

import pytest

from ztm.ledger import reconcile

pytestmark = [pytest.mark.control("ZTM-AUD-4"), pytest.mark.needs("data_plane", "login.auditor")]


def test_data_equals_the_replay_of_its_trail(connect, target, evidence):
    report = reconcile(connect("auditor"), target.database)
    evidence.json("reconciliation", report.to_dict())
    assert report.events > 0, "the audit trail holds no event: there is nothing to reconcile the data against"
    assert report.equal, report.describe()
