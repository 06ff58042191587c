"""Zero-Trust MySQL: installer, controls and evidence for a zero-trust MySQL deployment."""

__version__ = "0.1.0"
