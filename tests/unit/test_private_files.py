"""Key files are 0600 from their first byte, written under an unguessable temporary name
with O_EXCL|O_NOFOLLOW and renamed into place; the bundle secret scan knows every private
component of RSA, EC and Ed25519 keys."""

from __future__ import annotations

import base64
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from evidence.sensitive import key_material
from provision.files import ensure_secret
from ztm.files import write_private


def test_written_0600_from_creation_even_under_a_lax_umask(tmp_path, monkeypatch):
    seen = []
    real_write = os.write

    def spy(fd, data):  # the mode as it is when the first byte goes in
        seen.append(stat.S_IMODE(os.fstat(fd).st_mode))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", spy)
    old = os.umask(0)
    try:
        write_private(tmp_path / "k.pem", "secret\n")
    finally:
        os.umask(old)
    assert seen and set(seen) == {0o600}
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.pem"], "a temporary file was left behind"


def test_a_symlink_planted_at_the_key_path_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("do not touch\n")
    (tmp_path / "k.pem").symlink_to(victim)
    write_private(tmp_path / "k.pem", "key\n")
    assert victim.read_text() == "do not touch\n"
    assert not (tmp_path / "k.pem").is_symlink() and (tmp_path / "k.pem").read_text() == "key\n"


def test_the_old_predictable_temporary_name_is_not_used(tmp_path):
    """A link at the name the old writer used (.NAME.tmp) must neither be followed nor block the write."""
    victim = tmp_path / "victim"
    victim.write_text("do not touch\n")
    (tmp_path / ".k.pem.tmp").symlink_to(victim)
    write_private(tmp_path / "k.pem", "key\n")
    assert victim.read_text() == "do not touch\n" and (tmp_path / "k.pem").read_text() == "key\n"


def test_ensure_secret_does_not_read_through_a_symlink(tmp_path):
    (tmp_path / "other").write_text("not a secret of ours\n")
    (tmp_path / "db.password").symlink_to(tmp_path / "other")
    with pytest.raises(OSError):
        ensure_secret(tmp_path / "db.password")


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _forms(n: int) -> set[str]:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return {raw.hex(), base64.b64encode(raw).decode()}


def test_every_rsa_private_component_is_searched_for(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "rsa.pem").write_bytes(_pem(key))
    values = set(key_material(tmp_path / "rsa.pem"))
    n = key.private_numbers()
    for name, number in {"d": n.d, "p": n.p, "q": n.q, "dp": n.dmp1, "dq": n.dmq1, "qinv": n.iqmp}.items():
        assert _forms(number) <= values, f"RSA {name} is not in the secret scan"


@pytest.mark.parametrize("make", [lambda: ec.generate_private_key(ec.SECP256R1()),
                                  ed25519.Ed25519PrivateKey.generate], ids=["ec", "ed25519"])
def test_ec_and_ed25519_private_values_are_searched_for(tmp_path, make):
    key = make()
    (tmp_path / "k.pem").write_bytes(_pem(key))
    values = set(key_material(tmp_path / "k.pem"))
    raw = (key.private_bytes_raw() if hasattr(key, "private_bytes_raw")
           else key.private_numbers().private_value.to_bytes(32, "big"))
    assert {raw.hex(), base64.b64encode(raw).decode()} <= values
