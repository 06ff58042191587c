"""Certificate names in the form the database servers compare against."""

from __future__ import annotations

from cryptography import x509


def oneline(name: x509.Name) -> str:
    """OpenSSL's X509_NAME_oneline form, which MySQL and MariaDB compare against."""
    return "".join(f"/{attr.rfc4514_attribute_name}={attr.value}" for attr in name)
