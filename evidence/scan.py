"""Look for secrets in a produced bundle: private keys, known passwords and PINs, PII sentinels."""

from __future__ import annotations

import base64
from pathlib import Path

from evidence.verify import read_bundle

PRIVATE_KEY_MARKERS = (b"PRIVATE KEY-----", b"PRIVATE KEY BLOCK")


def find_secrets(bundle: Path, needles: list[str]) -> list[str]:
    """Findings as 'file: what' lines. Each needle is also searched hex- and base64-encoded."""
    findings = []
    for name, data in read_bundle(bundle).items():
        for marker in PRIVATE_KEY_MARKERS:
            if marker in data:
                findings.append(f"{name}: contains a PEM private key")
        for needle in needles:
            if not needle:
                continue
            raw = needle.encode()
            for label, form in (("plain", raw), ("hex", raw.hex().encode()), ("base64", base64.b64encode(raw))):
                if len(form) >= 6 and form in data:
                    findings.append(f"{name}: contains a secret ({label}, {len(needle)} characters)")
    return findings
