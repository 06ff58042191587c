"""The Cloud KMS provider through the real google-cloud-kms client (REST transport) against
a FAKED Cloud KMS: a small HTTP server on loopback that answers encrypt/decrypt with
AES-GCM and refuses a wrong AAD, as Cloud KMS does. No Google service can run here."""

from __future__ import annotations

import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from envelope.context import wrap_context
from envelope.record import new_dek
from ztm.errors import UserError

pytest.importorskip("google.cloud.kms_v1", reason="google-cloud-kms is not installed: pip install -e .[gcp]")

KEY = "projects/p/locations/global/keyRings/ztm/cryptoKeys/kek"


class FakeCloudKms(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    secret = AESGCM(AESGCM.generate_key(bit_length=256))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        aad = base64.b64decode(body.get("additionalAuthenticatedData", ""))
        status, out = 200, {}
        if path.endswith(":encrypt"):
            nonce = os.urandom(12)
            sealed = nonce + self.secret.encrypt(nonce, base64.b64decode(body["plaintext"]), aad)
            out = {"name": KEY, "ciphertext": base64.b64encode(sealed).decode()}
        elif path.endswith(":decrypt"):
            blob = base64.b64decode(body["ciphertext"])
            try:
                out = {"plaintext": base64.b64encode(self.secret.decrypt(blob[:12], blob[12:], aad)).decode()}
            except InvalidTag:
                status, out = 400, {"error": {"code": 400, "message": "Decryption failed", "status":
                                              "INVALID_ARGUMENT"}}
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def gcp_kms():
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import kms_v1

    from envelope.kms.gcp import GcpKms

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeCloudKms)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = kms_v1.KeyManagementServiceClient(
        credentials=AnonymousCredentials(), transport="rest",
        client_options=ClientOptions(api_endpoint=f"http://127.0.0.1:{server.server_address[1]}"))
    yield GcpKms(KEY, client=client)
    server.shutdown()


def test_gcp_kms_wrap_round_trip_and_aad_binding_with_faked_transport(gcp_kms):
    dek = new_dek()
    context = wrap_context(tenant="t-1", table="users", key_version=1)
    wrapped = gcp_kms.wrap(dek, context)
    assert gcp_kms.unwrap(wrapped, context) == dek and wrapped.key_id == f"gcp-kms:{KEY}"
    with pytest.raises(UserError, match="refused to unwrap"):
        gcp_kms.unwrap(wrapped, wrap_context(tenant="t-2", table="users", key_version=1))
