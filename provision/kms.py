"""The lab's HSM-backed KMS: a SoftHSM2 token holding non-extractable AES-256 KEKs (the DEK
KEK ``ztm-kek-v<N>`` and the PQ KEK ``ztm-pq-kek-v1``), and the organisation's post-quantum
key pair, its private half stored only wrapped by the PQ KEK: its own key, so that
break-glass recovery through the PQ path works even when the DEK KEK is gone.

Token PINs are never put on a command line: softhsm2-util is driven through a pseudo-terminal.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import subprocess
import termios
import time
from dataclasses import dataclass
from pathlib import Path

from ztm.errors import UserError

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN_LABEL = "ztm-kms"
KEY_PREFIX = "ztm-kek-v"
PQ_KEY_PREFIX = "ztm-pq-kek-v"


@dataclass(frozen=True)
class KmsLayout:
    root: Path

    conf = property(lambda self: self.root / "softhsm2.conf")
    tokens = property(lambda self: self.root / "tokens")
    pq_public = property(lambda self: self.root / "pq-public.json")
    pq_private_wrapped = property(lambda self: self.root / "pq-private.wrapped.json")


def _answer_prompts(argv: list[str], answers: list[str], env: dict[str, str], timeout: float = 20) -> str:
    master, slave = pty.openpty()

    def controlling_tty() -> None:
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, preexec_fn=controlling_tty,
                            close_fds=True)
    os.close(slave)
    output, deadline = b"", time.monotonic() + timeout
    pending = list(answers)
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            chunk = os.read(master, 1024)
        except OSError:
            break
        output += chunk
        if pending and output.rstrip().endswith(b":"):
            os.write(master, pending.pop(0).encode() + b"\n")
            output += b"\n"
    proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    os.close(master)
    text = output.decode(errors="replace")
    if proc.returncode != 0:
        raise UserError(f"{argv[0]} failed: {text.strip().splitlines()[-1] if text.strip() else 'no output'}")
    return text


def ensure_token(layout: KmsLayout, user_pin: str, so_pin: str) -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.root.chmod(0o700)
    layout.tokens.mkdir(exist_ok=True)
    layout.tokens.chmod(0o700)
    layout.conf.write_text(f"directories.tokendir = {layout.tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = dict(os.environ, SOFTHSM2_CONF=str(layout.conf))
    slots = subprocess.run(["softhsm2-util", "--show-slots"], capture_output=True, text=True, env=env).stdout
    if f"Label:            {TOKEN_LABEL}" in slots:
        return
    _answer_prompts(["softhsm2-util", "--init-token", "--free", "--label", TOKEN_LABEL],
                    [so_pin, so_pin, user_pin, user_pin], env)


def ensure_keys(layout: KmsLayout, user_pin: str) -> None:
    """DEK KEK version 1, the PQ KEK and the organisation PQ key pair, made once. A PQ private
    key that an older lab wrapped under the DEK KEK is moved under the PQ KEK."""
    from envelope import pq
    from envelope.kms.pkcs11 import Pkcs11Kms

    env = {"SOFTHSM2_CONF": str(layout.conf)}
    dek_kms = Pkcs11Kms(MODULE, TOKEN_LABEL, KEY_PREFIX, user_pin, 1, env)
    pq_kms = Pkcs11Kms(MODULE, TOKEN_LABEL, PQ_KEY_PREFIX, user_pin, 1, env)
    try:
        dek_kms.create_kek(1)
        pq_kms.create_kek(1)
        if not layout.pq_private_wrapped.exists():
            private, public = pq.generate_keypair()
            pq.save_private_wrapped(private, pq_kms, layout.pq_private_wrapped)
            layout.pq_public.write_text(json.dumps(public.to_json()) + "\n")
        elif pq.read_private_wrapped(layout.pq_private_wrapped).key_id.startswith(
                f"pkcs11:token={TOKEN_LABEL};object={KEY_PREFIX}"):
            pq.save_private_wrapped(pq.load_private(layout.pq_private_wrapped, dek_kms), pq_kms,
                                    layout.pq_private_wrapped)
    finally:
        pq_kms.close()
        dek_kms.close()
