"""RFC 3161 time-stamp tokens over the manifest signature, through ``openssl ts`` (as the offline script).

The bundle carries the TSA's whole reply as ``MANIFEST.sha256.tsr``. Its message imprint is the
SHA-256 of ``MANIFEST.sha256.sig``: the token proves the signature existed at its time, so the
signer's certificate is judged at that time (Authenticode/cosign-style countersignature).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from ztm.errors import UserError

TIMEOUT = 30
STAMP = re.compile(r"^Time stamp: (\w{3}) +(\d{1,2}) (\d\d:\d\d:\d\d)(?:\.\d+)? (\d{4}) GMT$", re.M)


def _openssl(*args: str) -> str:
    try:
        done = subprocess.run(["openssl", "ts", *args], capture_output=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"openssl ts did not run: {exc}") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.decode(errors="replace").splitlines() if ln.strip()]
        raise ValueError(lines[-1][-200:] if lines else f"openssl ts {args[0]} failed")
    return done.stdout.decode(errors="replace")


def request(data: bytes, url: str, timeout: float = 10.0) -> bytes:
    """The TSA's DER reply for SHA-256(data), with its certificate; UserError when it does not grant one."""
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data").write_bytes(data)
        try:
            query = subprocess.run(["openssl", "ts", "-query", "-data", str(Path(tmp) / "data"), "-sha256", "-cert"],
                                   capture_output=True, timeout=TIMEOUT, check=True).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise UserError(f"cannot make a time-stamp query with openssl: {exc}") from None
        req = urllib.request.Request(url, data=query, headers={"Content-Type": "application/timestamp-query"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:
                reply = response.read(2**20)
        except OSError as exc:
            raise UserError(f"the time-stamping authority {url} did not answer: {exc}") from None
        (Path(tmp) / "reply.tsr").write_bytes(reply)
        try:
            text = _openssl("-reply", "-in", str(Path(tmp) / "reply.tsr"), "-text")
        except ValueError as exc:
            raise UserError(f"the time-stamping authority {url} sent no readable reply: {exc}") from None
    if "Status: Granted" not in text:
        raise UserError(f"the time-stamping authority {url} did not grant a time-stamp")
    return reply


def token_time(signature: bytes, token: bytes, tsa_ca: Path) -> datetime:
    """The token's time once it is shown to be over ``signature`` and signed by a TSA chaining to ``tsa_ca``.

    ValueError names what is wrong (imprint mismatch, untrusted TSA, unreadable token)."""
    with tempfile.TemporaryDirectory() as tmp:
        sig, tsr = Path(tmp) / "sig", Path(tmp) / "tsr"
        sig.write_bytes(signature)
        tsr.write_bytes(token)
        # The TSA's certificate is judged at the token's own (signed) time, so a token outlives it.
        at = parse_time(_openssl("-reply", "-in", str(tsr), "-text"))
        _openssl("-verify", "-data", str(sig), "-in", str(tsr), "-CAfile", str(tsa_ca),
                 "-attime", str(int(at.timestamp())))
    return at


def parse_time(reply_text: str) -> datetime:
    """'Time stamp: Dec  6 06:33:35 2026 GMT' (fractions dropped) from ``openssl ts -reply -text``."""
    found = STAMP.search(reply_text)
    if found is None:
        raise ValueError("the token carries no readable time")
    month, day, clock, year = found.groups()
    return datetime.strptime(f"{month} {day} {clock} {year}", "%b %d %H:%M:%S %Y").replace(tzinfo=UTC)
