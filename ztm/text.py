"""Text from untrusted sources (archive member names, server greetings, error packets) made safe to print.

A name like ``"x\\nverified: ok"`` or one holding terminal escape sequences must not be able to
forge a line of our output or drive the terminal: every control character is shown escaped.

    >>> printable("x\\nverified: \\x1b[32mok")
    'x\\\\nverified: \\\\x1b[32mok'
"""

from __future__ import annotations

import unicodedata

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def printable(text: str, limit: int = 300) -> str:
    """``text`` with control, format and separator characters escaped (``\\n``, ``\\x1b``), cut to ``limit``."""
    out: list[str] = []
    for char in text[:limit]:
        if char in _NAMED:
            out.append(_NAMED[char])
        elif unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp"):
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out) + ("..." if len(text) > limit else "")
