"""The thin installer: PKI, per-engine server configuration, SQL, firewall, fail2ban, anchor, lab."""
