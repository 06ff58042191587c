"""The chain verifier against hand-built chains: intact, changed byte, broken link, gap,
a trusted starting point, a head beyond the rows, constant memory; lanes (each verified on
its own, a broken one named, a dropped one caught, a single-chain dump refused); the CLI's
exit codes."""

from __future__ import annotations

import hashlib
import json
import tracemalloc

import pytest

from ztm.audit_chain import (
    GENESIS,
    LANES,
    check_head,
    check_heads,
    dump_rows,
    genesis_heads,
    heads_digest,
    link_hash,
    verify_lanes,
    verify_rows,
)
from ztm.cli import main as ztm_main


def chain(n: int) -> list[tuple[int, str, str, str]]:
    rows, prev = [], GENESIS
    for seq in range(1, n + 1):
        payload = json.dumps({"seq": seq, "table": "users", "op": "INSERT", "after": {"name": "é"}})
        curr = link_hash(prev, payload)
        rows.append((seq, payload, prev, curr))
        prev = curr
    return rows


def test_link_hash_is_sha256_of_prev_then_payload_bytes():
    assert link_hash(GENESIS, '{"seq": 1}') == hashlib.sha256((GENESIS + '{"seq": 1}').encode()).hexdigest()


def test_intact_chain():
    report = verify_rows(chain(5))
    assert report.intact and report.checked == 5 and report.last_seq == 5 and report.head_hash == chain(5)[-1][3]


def test_changed_byte_is_a_hash_mismatch_at_that_seq():
    rows = chain(5)
    seq, payload, prev, curr = rows[2]
    rows[2] = (seq, payload.replace("INSERT", "INSERX"), prev, curr)
    report = verify_rows(rows)
    assert (report.intact, report.broken_seq) == (False, 3) and report.reason.startswith("hash mismatch")


def test_rehashed_row_breaks_the_next_link():
    rows = chain(5)
    seq, payload, prev, _ = rows[2]
    forged = payload.replace("INSERT", "DELETE")
    rows[2] = (seq, forged, prev, link_hash(prev, forged))
    report = verify_rows(rows)
    assert report.broken_seq == 4 and report.reason.startswith("link mismatch")


def test_missing_middle_row_is_a_gap():
    rows = chain(5)
    del rows[2]
    report = verify_rows(rows)
    assert report.broken_seq == 3 and report.reason.startswith("gap: expected seq 3, found 4")


def test_start_from_a_trusted_point_checks_only_newer_rows():
    rows = chain(6)
    report = verify_rows(rows[3:], start_seq=3, start_hash=rows[2][3])
    assert report.intact and report.checked == 3 and report.first_seq == 4
    assert not verify_rows(rows[3:], start_seq=3, start_hash=GENESIS).intact


def lane_rows(n: int, lane: int) -> list[tuple[int, int, str, str, str]]:
    rows, prev = [], GENESIS
    for seq in range(1, n + 1):
        payload = f'{{"lane": {lane}, "seq": {seq}, "table": "users", "op": "INSERT"}}'
        curr = link_hash(prev, payload)
        rows.append((lane, seq, payload, prev, curr))
        prev = curr
    return rows


def write_dump(path, rows, trailer=True, lane=0):
    """A dump as 'ztm audit export' writes it: ``rows`` as lane ``lane``, then the trailer."""
    lines = [json.dumps({"lane": lane, "seq": s, "payload": p, "prev_hash": a, "curr_hash": b}) for s, p, a, b in rows]
    if trailer:
        heads = genesis_heads()
        heads[lane] = (rows[-1][0], rows[-1][3]) if rows else (0, GENESIS)
        lines.append(json.dumps({"heads": {str(la): {"seq": s, "head_hash": h} for la, (s, h) in heads.items()},
                                 "heads_digest": heads_digest(heads), "lanes": LANES, "rows": len(rows)}))
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_dump_rows_are_streamed_with_their_lane(tmp_path):
    dump = write_dump(tmp_path / "d.jsonl", chain(4), lane=3)
    assert [r[:2] for r in dump_rows(dump)] == [(3, 1), (3, 2), (3, 3), (3, 4)]


def test_lanes_are_verified_each_on_its_own_and_a_broken_one_is_named():
    rows = lane_rows(3, 2) + lane_rows(4, 7)
    report = check_heads(verify_lanes(rows), {**genesis_heads(), 2: rows[2][1::3], 7: rows[-1][1::3]})
    assert report.intact and report.checked == 7 and report.lane(7).last_seq == 4 and report.lane(5).last_seq == 0
    forged = [*rows[:1], (2, 2, rows[1][2].replace("INSERT", "DELETE"), *rows[1][3:]), *rows[2:]]
    broken = verify_lanes(forged)
    assert [r.lane for r in broken.broken] == [2] and broken.lane(7).intact
    assert "lane 2: audit chain broken at seq 2: hash mismatch" in broken.describe()


def test_a_lane_rewound_or_its_head_row_dropped_is_caught():
    rows = lane_rows(3, 2) + lane_rows(4, 7)
    heads = {**genesis_heads(), 2: rows[2][1::3], 7: rows[-1][1::3]}
    rewound = check_heads(verify_lanes(rows), {**heads, 7: rows[-2][1::3]})
    assert [r.lane for r in rewound.broken] == [7] and "head mismatch" in rewound.lane(7).reason
    dropped = dict(heads)
    del dropped[7]
    missing = check_heads(verify_lanes(rows), dropped)
    assert missing.lane(7).reason.startswith("the head row of lane 7 is missing")
    assert verify_lanes(rows[3:] + rows[:3]).problems == []  # lanes in any order of lane runs
    assert "out of (lane, seq) order" in verify_lanes(rows[:1] + rows[3:] + rows[1:3]).problems[0]


@pytest.mark.parametrize(("mutate", "code", "said"), [
    (lambda rows: rows, 0, "audit trail intact: 4 events checked in 64 lanes"),
    (lambda rows: rows[:1] + rows[2:], 1, "lane 0: audit chain broken at seq 2: gap"),
])
def test_cli_verify_dump_exit_codes(tmp_path, capsys, mutate, code, said):
    dump = write_dump(tmp_path / "d.jsonl", mutate(chain(4)))
    assert ztm_main(["audit", "verify", "--dump", str(dump)]) == code
    assert said in capsys.readouterr().out


def test_a_dump_cut_short_or_edited_or_missing_a_lane_is_not_intact(tmp_path, capsys):
    rows = chain(4)
    whole = write_dump(tmp_path / "whole.jsonl", rows)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(whole.read_text().splitlines(keepends=True)[:2]))
    assert ztm_main(["audit", "verify", "--dump", str(cut)]) == 1
    assert "no head trailer" in capsys.readouterr().out
    appended = tmp_path / "appended.jsonl"
    appended.write_text(whole.read_text() + whole.read_text().splitlines(keepends=True)[0])
    assert ztm_main(["audit", "verify", "--dump", str(appended)]) == 1
    assert "rows follow the head trailer" in capsys.readouterr().out
    short = write_dump(tmp_path / "short.jsonl", rows[:3])
    lines = short.read_text().splitlines(keepends=True)
    trailer = json.loads(lines[-1])
    trailer["heads"]["0"] = {"seq": 4, "head_hash": rows[3][3]}
    lines[-1] = json.dumps(trailer) + "\n"
    short.write_text("".join(lines))
    assert ztm_main(["audit", "verify", "--dump", str(short)]) == 1
    assert "does not match the dump's rows (3; lanes differing: [0])" in capsys.readouterr().out
    trailer = json.loads(whole.read_text().splitlines()[-1])
    del trailer["heads"]["9"]
    dropped = tmp_path / "dropped.jsonl"
    dropped.write_text("".join(whole.read_text().splitlines(keepends=True)[:-1]) + json.dumps(trailer) + "\n")
    assert ztm_main(["audit", "verify", "--dump", str(dropped)]) == 1
    assert "a lane dropped" in capsys.readouterr().out


def test_a_single_chain_dump_is_refused_with_one_line(tmp_path, capsys):
    old = tmp_path / "old.jsonl"
    row = chain(1)[0]
    old.write_text(json.dumps({"seq": 1, "payload": row[1], "prev_hash": row[2], "curr_hash": row[3]}) + "\n")
    assert ztm_main(["audit", "verify", "--dump", str(old)]) == 2
    assert "single-chain audit export" in capsys.readouterr().err


def test_from_seq_needs_that_row_in_the_dump(tmp_path, capsys):
    rows = chain(4)
    dump = write_dump(tmp_path / "d.jsonl", rows)
    assert ztm_main(["audit", "verify", "--dump", str(dump), "--from-seq", "2", "--from-hash", rows[1][3]]) == 0
    assert "audit trail intact: 2 events checked" in capsys.readouterr().out
    empty = write_dump(tmp_path / "empty.jsonl", [])
    assert ztm_main(["audit", "verify", "--dump", str(empty), "--from-seq", "2", "--from-hash", rows[1][3]]) == 1
    assert "lane 0 seq 2 is not in the dump" in capsys.readouterr().out
    assert ztm_main(["audit", "verify", "--dump", str(dump), "--from-seq", "2", "--from-hash", rows[0][3]]) == 1
    assert ztm_main(["audit", "verify", "--dump", str(dump), "--from-lane", "64"]) == 2


@pytest.mark.parametrize("line", ['{"lane": 0, "seq": 1e400, "payload": "", "prev_hash": "", "curr_hash": ""}',
                                  '{"lane": 0, "seq": NaN, "payload": "", "prev_hash": "", "curr_hash": ""}',
                                  "[1, 2]", "[" * 100_000,
                                  '{"lane": 0, "seq": "1", "payload": "", "prev_hash": "", "curr_hash": ""}',
                                  '{"lane": -1, "seq": 1, "payload": "", "prev_hash": "", "curr_hash": ""}'])
def test_hostile_dump_lines_are_one_line_exit_2(tmp_path, capsys, line):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(line + "\n")
    assert ztm_main(["audit", "verify", "--dump", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == f"ztm: {bad}: line 1 is not an audit row (JSON with lane, seq, "\
        "payload, prev_hash, curr_hash)"


def test_a_non_utf8_dump_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe\n")
    assert ztm_main(["audit", "verify", "--dump", str(bad)]) == 2
    assert "not UTF-8 text" in capsys.readouterr().err


def test_cli_unusable_inputs_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert ztm_main(["audit", "verify", "--dump", str(bad)]) == 2
    assert ztm_main(["audit", "verify", "--dump", str(bad), "--from-hash", "xyz"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"ztm: {bad}: line 1 is not an audit row (JSON with lane, seq, payload, prev_hash, curr_hash)"
    assert len(err) == 2


def test_head_beyond_the_last_row_is_a_head_mismatch():
    rows = chain(4)
    assert check_head(verify_rows(rows), (4, rows[-1][3])).intact
    report = check_head(verify_rows(rows[:3]), (4, rows[-1][3]))
    assert (report.intact, report.broken_seq) == (False, 4)
    assert report.reason.startswith("head mismatch") and "rows truncated or head moved" in report.reason
    assert check_head(verify_rows(rows), None).reason == "the chain head row is missing"


def _write_streamed_dump(path, n: int):
    prev = GENESIS
    with open(path, "w", encoding="utf-8") as handle:
        for seq in range(1, n + 1):
            payload = json.dumps({"seq": seq, "table": "accounts", "op": "UPDATE", "after": {"balance": seq}})
            curr = link_hash(prev, payload)
            handle.write(json.dumps({"lane": 0, "seq": seq, "payload": payload, "prev_hash": prev,
                                     "curr_hash": curr}) + "\n")
            prev = curr
    return path


def _peak_bytes_verifying(path) -> tuple[int, int]:
    tracemalloc.start()
    try:
        report = verify_lanes(dump_rows(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.intact
    return report.checked, peak


def test_offline_verification_memory_does_not_grow_with_the_chain(tmp_path):
    """Constant memory: twenty times the rows, (almost) the same peak allocation."""
    small = _peak_bytes_verifying(_write_streamed_dump(tmp_path / "small.jsonl", 2_000))
    large = _peak_bytes_verifying(_write_streamed_dump(tmp_path / "large.jsonl", 40_000))
    assert (small[0], large[0]) == (2_000, 40_000)
    assert large[1] < small[1] + 64 * 1024, f"peak {large[1]} B for 40,000 rows vs {small[1]} B for 2,000"
