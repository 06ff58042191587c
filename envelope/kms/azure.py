"""Azure Key Vault / Managed HSM (azure-keyvault-keys): the DEK is wrapped remotely with
wrapKey/unwrapKey (A256KW on an oct-HSM key by default). Key Vault takes no additional data,
so the wrapped payload is SHA-256(context) || DEK and unwrapping checks the prefix."""

from __future__ import annotations

from typing import Any

from envelope.kms.base import Kms, WrappedKey, commit_context, open_committed
from ztm.errors import UserError


class AzureKms(Kms):
    def __init__(self, key_url: str, version: int = 1, algorithm: str = "A256KW", client: Any = None) -> None:
        if client is None:
            from azure.identity import DefaultAzureCredential
            from azure.keyvault.keys.crypto import CryptographyClient

            client = CryptographyClient(key_url, DefaultAzureCredential())
        self._client, self.key_url, self.algorithm, self._version, self.calls = client, key_url, algorithm, version, 0

    @classmethod
    def from_section(cls, section: dict[str, Any], resolve) -> AzureKms:
        return cls(section["key_url"], int(section.get("key_version", 1)), section.get("algorithm", "A256KW"))

    @property
    def current_version(self) -> int:
        return self._version

    def wrap(self, dek: bytes, context: bytes, key_version: int | None = None) -> WrappedKey:
        from azure.core.exceptions import AzureError

        try:
            self._count()
            result = self._client.wrap_key(self.algorithm, commit_context(dek, context))
        except AzureError as exc:
            raise UserError(f"Azure Key Vault refused to wrap the data key: {exc}") from None
        return WrappedKey(bytes(result.encrypted_key), f"azure-kv:{self.key_url}", key_version or self._version)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        from azure.core.exceptions import AzureError

        try:
            self._count()
            plain = bytes(self._client.unwrap_key(self.algorithm, wrapped.blob).key)
        except AzureError as exc:
            raise UserError(f"Azure Key Vault refused to unwrap the data key: {exc}") from None
        return open_committed(plain, context, "Key Vault")
