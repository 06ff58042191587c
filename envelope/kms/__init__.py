"""KMS providers behind one interface (``Kms``), chosen by the target's [kms] section."""

from __future__ import annotations

from typing import Any

from envelope.kms.base import Kms, WrappedKey
from ztm.errors import UserError

__all__ = ["Kms", "WrappedKey", "kms_for"]


def kms_for(section: dict[str, Any], resolve) -> Kms:
    provider = section.get("provider")
    if provider == "pkcs11":
        from envelope.kms.pkcs11 import Pkcs11Kms

        return Pkcs11Kms.from_section(section, resolve)
    if provider == "aws":
        from envelope.kms.aws import AwsKms

        return AwsKms.from_section(section, resolve)
    if provider == "kmip":
        from envelope.kms.kmip import KmipKms

        return KmipKms.from_section(section, resolve)
    if provider == "gcp":
        from envelope.kms.gcp import GcpKms

        return GcpKms.from_section(section, resolve)
    if provider == "azure":
        from envelope.kms.azure import AzureKms

        return AzureKms.from_section(section, resolve)
    raise UserError(f"the target's [kms] section names no known provider ({provider!r})")
