"""The KMIP provider against PyKMIP's own server, run on loopback with the lab PKI (mutual
TLS): a real KMIP server, not a fake. Context binding and refusal of a moved key."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envelope.context import wrap_context
from envelope.record import new_dek
from provision.pki import PkiLayout, issue_all
from ztm.errors import UserError

pytest.importorskip("kmip", reason="PyKMIP is not installed: pip install -e .[kmip]")


@pytest.fixture(scope="module")
def kmip_kms(tmp_path_factory):
    from kmip import enums
    from kmip.pie.client import ProxyKmipClient

    from envelope.kms.kmip import KmipKms

    work = tmp_path_factory.mktemp("kmip")
    layout = PkiLayout(work / "pki")
    issue_all(layout, server_name="localhost", server_address="127.0.0.1", users={"app": "kmip-client"})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (work / "server.conf").write_text(
        f"[server]\nhostname=127.0.0.1\nport={port}\ncertificate_path={layout.server('pem')}\n"
        f"key_path={layout.server('key')}\nca_path={layout.ca_cert}\nauth_suite=TLS1.2\n"
        f"enable_tls_client_auth=True\nlogging_level=WARNING\ndatabase_path={work / 'db.sqlite'}\n")
    server_bin = Path(sys.executable).parent / "pykmip-server"
    proc = subprocess.Popen([str(server_bin if server_bin.exists() else shutil.which("pykmip-server")), "-f",
                             str(work / "server.conf"), "-l", str(work / "server.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    admin = ProxyKmipClient(hostname="127.0.0.1", port=port, cert=str(layout.client("app", "pem")),
                            key=str(layout.client("app", "key")), ca=str(layout.ca_cert), config_file=None)
    with admin:
        uid = admin.create(enums.CryptographicAlgorithm.AES, 256, cryptographic_usage_mask=[
            enums.CryptographicUsageMask.ENCRYPT, enums.CryptographicUsageMask.DECRYPT])
        admin.activate(uid)
    kms = KmipKms("127.0.0.1", port, str(layout.client("app", "pem")), str(layout.client("app", "key")),
                  str(layout.ca_cert), uid)
    yield kms
    kms.close()
    proc.terminate()
    proc.wait(timeout=15)


def test_kmip_wrap_round_trip_and_context_binding(kmip_kms):
    dek = new_dek()
    context = wrap_context(tenant="t-1", table="users", key_version=1)
    wrapped = kmip_kms.wrap(dek, context)
    assert dek not in wrapped.blob and kmip_kms.unwrap(wrapped, context) == dek
    with pytest.raises(UserError, match="another context"):
        kmip_kms.unwrap(wrapped, wrap_context(tenant="t-2", table="users", key_version=1))
    assert wrapped.key_id.startswith("kmip:") and kmip_kms.calls == 3


def test_kmip_holds_the_pq_private_key_wrapped(kmip_kms, tmp_path):
    """The 96-byte PQ private material, not only 32-byte DEKs, goes through the KMIP server."""
    from envelope import pq

    material, _ = pq.generate_keypair()
    pq.save_private_wrapped(material, kmip_kms, tmp_path / "pq.json")
    assert material not in (tmp_path / "pq.json").read_bytes()
    assert pq.load_private(tmp_path / "pq.json", kmip_kms) == material
