"""RFC 3161 timestamps from the lab's TSA (openssl ts behind HTTP) on loopback."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from provision import tsa
from provision.pki import PkiLayout, ensure_ca, issue_tsa
from ztm.errors import UserError


@pytest.fixture(scope="module")
def tsa_url(tmp_path_factory):
    layout = PkiLayout(tmp_path_factory.mktemp("pki"))
    ensure_ca(layout)
    cert, key = issue_tsa(layout)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "provision.tsa", "--listen", f"127.0.0.1:{port}", "--cert",
                             str(cert), "--key", str(key), "--dir", str(layout.root / "tsa-state")])
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/", layout.ca_cert
    proc.terminate()
    proc.wait(timeout=10)


def test_token_verifies_for_its_data_only(tsa_url):
    url, ca = tsa_url
    token = tsa.timestamp(b"checkpoint bytes", url)
    tsa.verify(b"checkpoint bytes", token, ca)
    with pytest.raises(UserError, match="verify failed"):
        tsa.verify(b"another checkpoint", token, ca)


def test_unreachable_tsa_is_one_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match="did not answer"):
        tsa.timestamp(b"x", f"http://127.0.0.1:{port}/", timeout=2)
