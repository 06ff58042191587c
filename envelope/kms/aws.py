"""AWS KMS (boto3): Encrypt/Decrypt of the DEK under a KMS key, the context as
EncryptionContext (KMS refuses to decrypt under another context). Key rotation is AWS's
own (the key id stays); ``key_version`` counts the project's re-wraps."""

from __future__ import annotations

from typing import Any

from envelope.kms.base import Kms, WrappedKey
from ztm.errors import UserError


class AwsKms(Kms):
    def __init__(self, key_id: str, region: str, endpoint_url: str | None = None, version: int = 1,
                 client: Any = None) -> None:
        import boto3

        # A boto3 client is thread-safe once made, but making one through boto3's shared default
        # session is not: each client gets its own session.
        self._client = client or boto3.session.Session().client("kms", region_name=region, endpoint_url=endpoint_url)
        self.key_id, self._version, self.calls = key_id, version, 0

    @classmethod
    def from_section(cls, section: dict[str, Any], resolve) -> AwsKms:
        return cls(section["key_id"], section.get("region", "us-east-1"), section.get("endpoint_url"),
                   int(section.get("key_version", 1)))

    @property
    def current_version(self) -> int:
        return self._version

    @staticmethod
    def _context(context: bytes) -> dict[str, str]:
        return {"ztm": context.decode()}

    def wrap(self, dek: bytes, context: bytes, key_version: int | None = None) -> WrappedKey:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._count()
            blob = self._client.encrypt(KeyId=self.key_id, Plaintext=dek,
                                        EncryptionContext=self._context(context))["CiphertextBlob"]
        except (BotoCoreError, ClientError) as exc:
            raise UserError(f"AWS KMS refused to wrap the data key: {exc}") from None
        return WrappedKey(blob, f"aws-kms:{self.key_id}", key_version or self._version)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._count()
            return self._client.decrypt(CiphertextBlob=wrapped.blob, KeyId=self.key_id,
                                        EncryptionContext=self._context(context))["Plaintext"]
        except (BotoCoreError, ClientError) as exc:
            raise UserError(f"AWS KMS refused to unwrap the data key: {exc}") from None
