"""The fast verifier (bytes rows, segment-parallel joins) gives the serial verdict, intact or
broken (gap, link mismatch, hash mismatch, at and away from a segment boundary)."""

from __future__ import annotations

import pytest

from ztm.audit_chain import GENESIS, join_segments, link_hash, split, verify_rows, verify_segment


def chain(n: int) -> list[tuple[int, str, str, str]]:
    rows, prev = [], GENESIS
    for seq in range(1, n + 1):
        payload = f'{{"seq": {seq}, "table": "users", "after": {{"name": "Zoë {seq}"}}}}'
        curr = link_hash(prev, payload)
        rows.append((seq, payload, prev, curr))
        prev = curr
    return rows


def as_bytes(rows):
    return [(s, p.encode(), a.encode(), c.encode()) for s, p, a, c in rows]


def segmented(rows, parts: int, start_seq: int = 0, start_hash: str = GENESIS):
    last = rows[-1][0] if rows else start_seq
    results = [verify_segment([r for r in rows if a < r[0] <= b], a) for a, b in split(start_seq, last, parts)]
    return join_segments(results, start_seq=start_seq, start_hash=start_hash)


def breakages() -> dict[str, list]:
    good = chain(40)
    cases: dict[str, list] = {"intact": good}
    for at in (1, 10, 11, 20, 21, 40):  # 10/11, 20/21: the ends and starts of segments when cut in 4
        cases[f"gap at {at}"] = [r for r in good if r[0] != at]
        rows = list(good)
        s, p, a, c = rows[at - 1]
        rows[at - 1] = (s, p.replace("Zoë", "Eve"), a, c)
        cases[f"payload altered at {at}"] = rows
        rows = list(good)
        rows[at - 1] = (s, p, "f" * 64, c)
        cases[f"link broken at {at}"] = rows
        rows = list(good)
        rows[at - 1] = (s, p, a, "e" * 64)
        cases[f"hash replaced at {at}"] = rows
    cases["two gaps"] = [r for r in good if r[0] not in (11, 12, 30)]
    return cases


KEYS = ("intact", "checked", "first_seq", "last_seq", "head_hash", "broken_seq", "reason")


def verdict(report):
    return tuple(getattr(report, k) for k in KEYS)


@pytest.mark.parametrize(("name", "rows"), list(breakages().items()))
def test_bytes_and_segments_give_the_serial_verdict(name, rows):
    serial = verify_rows(rows)
    assert serial.intact == (name in ("intact", "gap at 40"))  # a cut tail shows only against the head row
    assert verdict(verify_rows(as_bytes(rows))) == verdict(serial)
    for parts in (2, 3, 4, 7, 40):
        assert verdict(segmented(as_bytes(rows), parts)) == verdict(serial), parts


def test_segments_from_a_trusted_start():
    rows = chain(30)
    start_seq, start_hash = 12, rows[11][3]
    tail = rows[12:]
    serial = verify_rows(tail, start_seq=start_seq, start_hash=start_hash)
    assert serial.intact and serial.checked == 18
    assert verdict(segmented(as_bytes(tail), 4, start_seq, start_hash)) == verdict(serial)
    wrong = verify_rows(tail, start_seq=start_seq, start_hash="a" * 64)
    assert not wrong.intact
    assert verdict(segmented(as_bytes(tail), 4, start_seq, "a" * 64)) == verdict(wrong)


def test_an_empty_segment_in_the_middle_is_a_gap():
    rows = [r for r in chain(40) if not 11 <= r[0] <= 20]  # one whole segment of four missing
    serial = verify_rows(rows)
    assert serial.reason.startswith("gap: expected seq 11, found 21")
    assert verdict(segmented(as_bytes(rows), 4)) == verdict(serial)
