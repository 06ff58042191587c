"""The ledger replay rules of ZTM-AUD-4 on hand-built events (the lab tests run it on real servers)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from ztm.ledger import LedgerReport, ReplayIndex, State, differing_columns, replay_event, same

TABLES = {"accounts": ["account_id"]}


def _event(op: str, key: str, before: dict | None, after: dict | None) -> dict:
    return {"table": "accounts", "op": op, "key": key, "before": before, "after": after}


def _replay(tmp_path, events: list[dict]) -> tuple[ReplayIndex, LedgerReport]:
    index, report = ReplayIndex(tmp_path), LedgerReport()
    for seq, event in enumerate(events, 1):
        replay_event(index, report, TABLES, seq, event, set())
    return index, report


def test_values_compare_as_the_triggers_render_them():
    assert same("0A1B", b"\x0a\x1b") and not same("0A1C", b"\x0a\x1b")
    assert same(Decimal("10.0000"), Decimal("10")) and not same(Decimal("10.0001"), Decimal("10"))
    when = dt.datetime(2026, 12, 6, 6, 35, 38, 526103)
    assert same("2026-12-06T06:35:38.526103", when) and same("2026-12-06T06:35:38.526103Z", when)
    assert not same("10", Decimal(10)), "a string is not the number it spells"
    assert same(None, None) and not same(None, "")


def test_differing_columns_names_changed_unrecorded_and_gone_columns():
    image = {"account_id": "a", "balance": Decimal(5), "old": "x"}
    row = {"account_id": "a", "balance": Decimal(6), "shadow": "y"}
    assert differing_columns(image, row) == (["balance"], ["shadow"], ["old"])


def test_a_consistent_history_replays_without_findings(tmp_path):
    a1, a2 = {"account_id": "k", "balance": Decimal(1)}, {"account_id": "k", "balance": Decimal(2)}
    index, report = _replay(tmp_path, [_event("INSERT", "k", None, a1), _event("UPDATE", "k", a1, a2),
                                       _event("DELETE", "k", a2, None), _event("INSERT", "k", None, a1)])
    assert not report.counts
    state = index.get("accounts", "k")
    assert (state.op, state.seq, state.after) == ("INSERT", 4, a1)


def test_a_change_between_two_events_is_named(tmp_path):
    a1 = {"account_id": "k", "balance": Decimal(1)}
    tampered, a3 = dict(a1, balance=Decimal(900)), dict(a1, balance=Decimal(899))
    _, report = _replay(tmp_path, [_event("INSERT", "k", None, a1), _event("UPDATE", "k", tampered, a3)])
    (finding,) = report.examples
    assert finding.kind == "changed-between-events"
    assert "balance" in finding.detail and "seq 1 and seq 2" in finding.detail
    assert "900" not in finding.describe(), "a finding never carries a value"


def test_updates_of_unrecorded_rows_and_inserts_over_live_keys_are_named(tmp_path):
    a1 = {"account_id": "k", "balance": Decimal(1)}
    _, report = _replay(tmp_path, [_event("UPDATE", "k", a1, a1), _event("INSERT", "j", None, a1),
                                   _event("INSERT", "j", None, a1)])
    assert {f.kind for f in report.examples} == {"change-of-unrecorded-row", "insert-over-live-key"}


def test_an_event_for_a_table_the_schema_lacks_is_named_once(tmp_path):
    index, report = ReplayIndex(tmp_path), LedgerReport()
    missing: set[str] = set()
    for seq in (1, 2):
        replay_event(index, report, TABLES, seq, {"table": "ledger_old", "op": "INSERT", "key": "k", "after": {}},
                      missing)
    assert report.counts == {"trail-table-not-in-schema in ledger_old": 1}
    assert not report.equal and "ledger_old" in report.describe()


def test_the_index_spills_to_disk_and_keeps_exact_images(tmp_path):
    index = ReplayIndex(tmp_path, cache_keys=3)
    for n in range(10):
        index.put("accounts", f"k{n}", State("INSERT", n + 1, {"balance": Decimal(f"{n}.0001")}))
    assert len(index.cache) < 3, "the in-memory map is bounded"
    assert index.get("accounts", "k4") == State("INSERT", 5, {"balance": Decimal("4.0001")})
    assert [k for k, _ in index.in_key_order("accounts")] == sorted(f"k{n}" for n in range(10))


def test_a_key_whose_events_are_in_two_lanes_is_named_not_replayed_across_them(tmp_path):
    """A key deleted in one tenant's lane and inserted again in another's: no order between
    lanes is recorded, so the replay names it instead of guessing one."""
    index, report = ReplayIndex(tmp_path), LedgerReport()
    image = {"account_id": "k", "balance": Decimal(1)}
    replay_event(index, report, TABLES, 1, _event("INSERT", "k", None, image), set(), 3)
    replay_event(index, report, TABLES, 2, _event("DELETE", "k", image, None), set(), 3)
    replay_event(index, report, TABLES, 1, _event("INSERT", "k", None, image), set(), 7)
    assert dict(report.counts) == {"key-in-two-lanes in accounts": 1}
    assert "events in lane 3 (last seq 2) and lane 7 (seq 1)" in report.examples[0].detail
    index.flush()
    assert index.get("accounts", "k") == State("INSERT", 1, None, 7)
