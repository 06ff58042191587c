"""Google Cloud KMS (google-cloud-kms): Encrypt/Decrypt of the DEK under a Cloud KMS key
(HSM protection level in production), the context as additional authenticated data."""

from __future__ import annotations

from typing import Any

from envelope.kms.base import Kms, WrappedKey
from ztm.errors import UserError


class GcpKms(Kms):
    def __init__(self, key_name: str, version: int = 1, client: Any = None, api_endpoint: str | None = None) -> None:
        if client is None:
            from google.api_core.client_options import ClientOptions
            from google.cloud import kms_v1

            options = ClientOptions(api_endpoint=api_endpoint) if api_endpoint else None
            client = kms_v1.KeyManagementServiceClient(client_options=options)
        self._client, self.key_name, self._version, self.calls = client, key_name, version, 0

    @classmethod
    def from_section(cls, section: dict[str, Any], resolve) -> GcpKms:
        return cls(section["key_name"], int(section.get("key_version", 1)), api_endpoint=section.get("endpoint_url"))

    @property
    def current_version(self) -> int:
        return self._version

    def wrap(self, dek: bytes, context: bytes, key_version: int | None = None) -> WrappedKey:
        from google.api_core import exceptions

        try:
            self._count()
            response = self._client.encrypt(request={"name": self.key_name, "plaintext": dek,
                                                     "additional_authenticated_data": context})
        except exceptions.GoogleAPIError as exc:
            raise UserError(f"Cloud KMS refused to wrap the data key: {exc}") from None
        return WrappedKey(bytes(response.ciphertext), f"gcp-kms:{self.key_name}", key_version or self._version)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        from google.api_core import exceptions

        try:
            self._count()
            response = self._client.decrypt(request={"name": self.key_name, "ciphertext": wrapped.blob,
                                                     "additional_authenticated_data": context})
        except exceptions.GoogleAPIError as exc:
            raise UserError(f"Cloud KMS refused to unwrap the data key: {exc}") from None
        return bytes(response.plaintext)
