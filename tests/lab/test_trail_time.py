"""The trail's event times come from the server's clock in UTC: a client that moves its
session clock (SET timestamp, no privilege needed) or its time zone changes nothing recorded."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from envelope.setup import client_for
from tests.lab.fake_records import writer_accounts
from ztm.audit_chain import lane_of
from ztm.db import connect

pytestmark = pytest.mark.lab


def test_a_client_clock_or_zone_does_not_move_the_recorded_time(lab_target):
    tenant = lab_target.raw["tenants"]["granted"][0]
    envelope = client_for(lab_target)
    try:
        with connect(lab_target, lab_target.roles["app"], database=lab_target.database) as conn, \
                conn.cursor() as cur:
            cur.execute("SET timestamp = 1000000000, time_zone = '+09:30'")  # 2001-09-09, far east
            cur.execute("SELECT NOW(6)")
            (forged_now,) = cur.fetchone()
            started = dt.datetime.now(dt.UTC)
            writer_accounts(cur, envelope, tenant)
            finished = dt.datetime.now(dt.UTC)
    finally:
        envelope.kms.close()
    assert forged_now.year == 2001, "the session clock did not move: the probe proves nothing"
    with connect(lab_target, lab_target.roles["auditor"]) as auditor, auditor.cursor() as cur:
        cur.execute(f"SELECT payload FROM `{lab_target.database}`.audit_events WHERE lane = %s ORDER BY seq DESC "
                    "LIMIT 3", (lane_of(tenant),))  # the newest of the tenant's lane: its events
        events = [json.loads(p) for (p,) in cur.fetchall()]
    for event in events:
        at = event["at"]
        assert at.endswith("Z"), f"event time {at!r} carries no UTC marker"
        when = dt.datetime.fromisoformat(at)
        assert started - dt.timedelta(seconds=5) <= when <= finished + dt.timedelta(seconds=5), (
            f"event seq {event['seq']} recorded {at}, not the server's time between {started} and {finished}")
        created = event["after"]["created_at"]
        assert created.endswith("Z"), f"created_at {created!r} is not recorded in UTC with a zone marker"
