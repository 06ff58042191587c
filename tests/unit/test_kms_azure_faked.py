"""The Azure provider through the real azure-keyvault-keys CryptographyClient with a FAKED
transport: no request leaves the process; a fake Managed HSM answers wrapkey/unwrapkey with
AES key wrap (RFC 3394) under its own key and denies keys/get, as an HSM key without the
get permission does. No Azure service can run here."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from envelope.context import wrap_context
from envelope.record import new_dek
from ztm.errors import UserError

pytest.importorskip("azure.keyvault.keys", reason="azure-keyvault-keys is not installed: pip install -e .[azure]")

KID = "https://ztm-test.managedhsm.azure.net/keys/kek/1"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fake_managed_hsm():
    from azure.core.pipeline.transport import HttpResponse, HttpTransport

    secret = new_dek()

    class Response(HttpResponse):
        def __init__(self, request, status: int, doc: dict, headers: dict | None = None) -> None:
            super().__init__(request, None)
            self.status_code, self._body = status, json.dumps(doc).encode()
            self.headers = {"content-type": "application/json", **(headers or {})}
            self.reason, self.content_type = ("OK" if status < 300 else "Error"), "application/json"

        def body(self) -> bytes:
            return self._body

        def text(self, encoding=None) -> str:
            return self._body.decode()

        def json(self):
            return json.loads(self._body)

        def read(self) -> bytes:
            return self._body

        @property
        def content(self) -> bytes:
            return self._body

        def close(self) -> None:
            pass

        is_closed = is_stream_consumed = True

    class Transport(HttpTransport):
        def __enter__(self):
            return self

        def __exit__(self, *args) -> None:
            pass

        def open(self) -> None:
            pass

        def close(self) -> None:
            pass

        def send(self, request, **kwargs):
            if not request.headers.get("Authorization"):  # Key Vault's challenge, then a token
                return Response(request, 401, {}, {"WWW-Authenticate": 'Bearer authorization='
                                                   '"https://login.microsoftonline.com/t", resource="https://managedhsm.azure.net"'})
            if request.method == "GET":
                return Response(request, 403, {"error": {"code": "Forbidden", "message": "no keys/get"}})
            value = _unb64url(json.loads(request.body)["value"])
            if request.url.split("?")[0].endswith("/wrapkey"):
                return Response(request, 200, {"kid": KID, "value": _b64url(aes_key_wrap(secret, value))})
            try:
                return Response(request, 200, {"kid": KID, "value": _b64url(aes_key_unwrap(secret, value))})
            except InvalidUnwrap:
                return Response(request, 400, {"error": {"code": "BadParameter", "message": "unwrap failed"}})

    return Transport()


@pytest.fixture(scope="module")
def azure_kms():
    from azure.core.credentials import AccessToken
    from azure.keyvault.keys.crypto import CryptographyClient

    from envelope.kms.azure import AzureKms

    class FakeCredential:
        def get_token(self, *scopes, **kwargs) -> AccessToken:
            return AccessToken("fake-token", 2**31)

    return AzureKms(KID, client=CryptographyClient(KID, FakeCredential(), transport=fake_managed_hsm()))


def test_azure_wrap_round_trip_and_context_binding_with_faked_transport(azure_kms):
    dek = new_dek()
    context = wrap_context(tenant="t-1", table="users", key_version=1)
    wrapped = azure_kms.wrap(dek, context)
    assert dek not in wrapped.blob and azure_kms.unwrap(wrapped, context) == dek
    with pytest.raises(UserError, match="another context"):
        azure_kms.unwrap(wrapped, wrap_context(tenant="t-2", table="users", key_version=1))
    tampered = type(wrapped)(wrapped.blob[:-1] + bytes([wrapped.blob[-1] ^ 1]), wrapped.key_id, 1)
    with pytest.raises(UserError, match="refused to unwrap"):
        azure_kms.unwrap(tampered, context)


def test_azure_holds_the_pq_private_key_wrapped_with_faked_transport(azure_kms, tmp_path):
    """The 96-byte PQ private material, not only 32-byte DEKs, through wrapKey/unwrapKey (faked service)."""
    from envelope import pq

    material, _ = pq.generate_keypair()
    pq.save_private_wrapped(material, azure_kms, tmp_path / "pq.json")
    assert pq.load_private(tmp_path / "pq.json", azure_kms) == material
