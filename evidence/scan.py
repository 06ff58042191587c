"""Secrets in bundle files: PEM private keys, known passwords and PINs, PII sentinels.

``find_in`` lists them, ``redact`` removes them (the writer calls both before signing) and
``find_secrets`` checks a produced bundle. Each known value is also searched hex- and
base64-encoded.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

from evidence.verify import read_bundle

MIN_NEEDLE = 8  # a shorter value would match ordinary text (durations, counters, ids)
REDACTED = b"***REDACTED***"
REDACTED_KEY = b"***REDACTED PRIVATE KEY***"
_BODY = rb"(?:[A-Za-z0-9+/=:,\- \t\r\n]|\\[rn])"  # base64 and PEM headers, raw or JSON-escaped newlines
_BEGIN = rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
_END = rb"-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
# A key is a BEGIN line with key material after it; the marker alone (e.g. in scanner source code) is not.
PEM_KEY = re.compile(_BEGIN + rb"(?:\s|\\[rn])*(?:[A-Za-z0-9+/]{16}|Proc-Type:)")
PEM_BLOCK = re.compile(_BEGIN + _BODY + rb"*?" + _END + rb"|" + _BEGIN + _BODY + rb"*")


def _forms(needle: str) -> list[tuple[str, bytes]]:
    raw = needle.encode()
    return [("plain", raw), ("hex", raw.hex().encode()), ("HEX", raw.hex().upper().encode()),
            ("base64", base64.b64encode(raw))]


def usable(needles: list[str]) -> list[str]:
    """The values long enough to search for, longest first (so a value inside another goes after it)."""
    return sorted({n for n in needles if len(n) >= MIN_NEEDLE}, key=len, reverse=True)


def find_in(files: dict[str, bytes], needles: list[str]) -> list[str]:
    """Findings as 'file: what' lines; the secret itself is never part of a finding."""
    findings: list[str] = []
    for name, data in sorted(files.items()):
        found = ["a PEM private key"] if PEM_KEY.search(data) else []
        found += [f"a secret ({label})" for needle in usable(needles) for label, form in _forms(needle) if form in data]
        findings += [f"{name}: contains {what}" for what in dict.fromkeys(found)]
    return findings


def redact(files: dict[str, bytes], needles: list[str]) -> tuple[dict[str, bytes], list[str]]:
    """(files with every finding replaced by a redaction mark, what was redacted where)."""
    findings = find_in(files, needles)
    if not findings:
        return files, []
    cleaned = {}
    for name, data in files.items():
        data = PEM_BLOCK.sub(REDACTED_KEY, data)
        for needle in usable(needles):
            for _, form in _forms(needle):
                data = data.replace(form, REDACTED)
        cleaned[name] = data
    return cleaned, findings


def find_secrets(bundle: Path, needles: list[str]) -> list[str]:
    """Findings in a produced bundle (tar.gz)."""
    return find_in(read_bundle(bundle), needles)
