"""A copy of the lab's SoftHSM2 token for tests that destroy keys (the lab's own token stays
whole for every other test). ``copy_token`` clones the token folder and writes a config for
it; ``destroy_keys`` runs in its own process (a process binds the PKCS#11 module to one
configuration), reading the PIN from a file, never from the command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def copy_token(kms_dir: Path, dest: Path) -> Path:
    """Clone ``kms_dir``/tokens into ``dest``; return the new softhsm2.conf."""
    shutil.copytree(kms_dir / "tokens", dest / "tokens")
    conf = dest / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {dest / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    return conf


def destroy_keys(conf: Path, pin_file: Path, label_prefix: str) -> list[str]:
    """Destroy every secret key whose label starts with ``label_prefix`` on the copy; the labels."""
    done = subprocess.run([sys.executable, "-m", "tests.lab.hsm_copy", str(conf), str(pin_file), label_prefix],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"destroying keys on the token copy failed: {done.stderr.strip()}")
    return done.stdout.split()


def _main(conf: str, pin_file: str, prefix: str) -> None:
    import os

    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    from provision import kms as lab_kms

    os.environ["SOFTHSM2_CONF"] = conf
    token = pkcs11.lib(lab_kms.MODULE).get_token(token_label=lab_kms.TOKEN_LABEL)
    with token.open(user_pin=Path(pin_file).read_text().splitlines()[0], rw=True) as session:
        for key in list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})):
            label = key[Attribute.LABEL]
            if label.startswith(prefix):
                key.destroy()
                print(label)


if __name__ == "__main__":
    _main(*sys.argv[1:4])
