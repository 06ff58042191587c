"""Client-side envelope encryption: PII never reaches the database in plaintext.

A record's PII fields are encrypted with AES-256-GCM under a data key (DEK); the DEK is
wrapped by an HSM-backed KMS (and optionally, in addition, by a post-quantum hybrid HPKE
wrap to an organisation key). The database stores ciphertext, IV, AAD and wrapped DEKs.
"""
