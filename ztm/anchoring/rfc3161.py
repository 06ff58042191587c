"""The RFC 3161 client the anchor and its verifiers use: ask a time-stamping authority for a
token over some data, verify a token against the TSA's CA and read its genTime (``openssl ts``)."""

from __future__ import annotations

import re
import subprocess
import tempfile
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from ztm.errors import UserError


def openssl_ts(*args: str, data: bytes | None = None) -> bytes:
    """``openssl ts ARGS`` with ``data`` on stdin; its stdout, or UserError naming the failure."""
    done = subprocess.run(["openssl", "ts", *args], input=data, capture_output=True)
    if done.returncode != 0:
        raise UserError(f"openssl ts {args[0]} failed: {done.stderr.decode(errors='replace').strip()[-200:]}")
    return done.stdout


def timestamp(data: bytes, url: str, timeout: float = 10.0) -> bytes:
    """The TSA's DER response for SHA-256(data)."""
    with tempfile.NamedTemporaryFile() as payload:
        payload.write(data)
        payload.flush()
        query = openssl_ts("-query", "-data", payload.name, "-sha256", "-cert")
    request = urllib.request.Request(url, data=query, headers={"Content-Type": "application/timestamp-query"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except OSError as exc:
        raise UserError(f"the time-stamping authority {url} did not answer: {exc}") from None


def verify(data: bytes, token: bytes, ca: Path) -> None:
    """UserError unless ``token`` is a TSA response over ``data`` that chains to ``ca``."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data").write_bytes(data)
        (Path(tmp) / "reply.tsr").write_bytes(token)
        openssl_ts("-verify", "-data", str(Path(tmp) / "data"), "-in", str(Path(tmp) / "reply.tsr"),
                   "-CAfile", str(ca))


_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                       "Dec"), 1)}


def gen_time(token: bytes) -> datetime:
    """The TSA's genTime in ``token`` (``openssl ts -reply -text``); UserError when it has none."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "reply.tsr").write_bytes(token)
        text = openssl_ts("-reply", "-in", str(Path(tmp) / "reply.tsr"), "-text").decode(errors="replace")
    match = re.search(r"^Time stamp: (\w{3}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)(?:\.\d+)? (\d{4}) GMT$", text, re.M)
    if not match or match.group(1) not in _MONTHS:
        raise UserError("the timestamp token carries no readable genTime")
    month, day, hour, minute, second, year = match.groups()
    return datetime(int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=UTC)
