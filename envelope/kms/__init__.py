"""KMS providers behind one interface (``Kms``), chosen by the target's [kms] section."""

from __future__ import annotations

import importlib
from typing import Any

from envelope.kms.base import Kms, WrappedKey
from ztm.errors import UserError

__all__ = ["Kms", "WrappedKey", "kms_for"]


PROVIDERS = {
    "pkcs11": ("envelope.kms.pkcs11", "Pkcs11Kms"),
    "aws": ("envelope.kms.aws", "AwsKms"),
    "kmip": ("envelope.kms.kmip", "KmipKms"),
    "gcp": ("envelope.kms.gcp", "GcpKms"),
    "azure": ("envelope.kms.azure", "AzureKms"),
}


def kms_for(section: dict[str, Any], resolve) -> Kms:
    provider = section.get("provider")
    if provider not in PROVIDERS:
        raise UserError(f"the target's [kms] section names no known provider ({provider!r}; "
                        f"one of {', '.join(PROVIDERS)})")
    module, name = PROVIDERS[provider]
    try:
        cls = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        raise UserError(f"KMS provider {provider} needs the Python package {exc.name!r} "
                        "(pip install -e '.[all]')") from None
    try:
        return cls.from_section(section, resolve)
    except KeyError as exc:
        raise UserError(f"the target's [kms] section (provider {provider}) lacks the field {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"the target's [kms] section (provider {provider}) has a bad value: {exc}") from None
