"""The envelope client under threads, run in its own process by test_envelope_threads (a crash
in a PKCS#11 module is a segfault: it must fail that test, not kill pytest).

``stress TARGET ROWS_OUT THREADS ROUNDS``: each round, THREADS threads start together, each
builds its own client (half through ``client_for``, half through ``kms_for`` with the AES-KWP
mechanism), encrypts records with the DEK cache off (every record a KMS wrap), decrypts its own
and another thread's records, and closes its client. Prints a JSON summary; writes the
records (ciphertext only) to ROWS_OUT.
``check TARGET ROWS_IN``: in a fresh process, the KEKs are on the token and every record
decrypts to its expected plaintext.
"""

from __future__ import annotations

import base64
import json
import random
import sys
import threading
import traceback
from pathlib import Path

from envelope import pq
from envelope.cache import DekCache
from envelope.client import EnvelopeClient
from envelope.kms import kms_for
from envelope.setup import client_for, pq_kms_for
from ztm.target import load_target

RECORDS_PER_THREAD = 3
BYTES_COLUMNS = ("pii_wrapped_key", "pii_pq_wrapped_key", *(f"{f}_{p}" for f in ("name", "email", "phone")
                                                            for p in ("ct", "iv", "aad")))


def expected_pii(user_id: str) -> dict[str, str]:
    return {"name": f"Stress {user_id}", "email": f"{user_id}@example.invalid", "phone": "+15550000003"}


def as_row(doc: dict, tenant: str) -> dict:
    row = {"user_id": doc["user_id"], "tenant_id": tenant, "pii_key_version": doc["pii_key_version"],
           "pii_wrapped_key": base64.b64decode(doc["pii_wrapped_key"]), "pii_kms_key_id": doc["pii_kms_key_id"],
           "pii_pq_wrapped_key": base64.b64decode(doc["pii_pq_wrapped_key"]) if "pq_alg" in doc else None,
           "pq_alg": doc.get("pq_alg")}
    for name in ("name", "email", "phone"):
        for part in ("ct", "iv", "aad"):
            row[f"{name}_{part}"] = base64.b64decode(doc[name][part])
    return row


def _client(target, index: int) -> EnvelopeClient:
    if index % 2 == 0:
        return client_for(target, cache=False)
    crypto = target.section("crypto")
    public = pq.PqPublicKey.load(target.resolve(crypto["pq_public_key"])) if crypto.get("require_pq") else None
    kms = kms_for({**target.section("kms"), "wrap_mechanism": "aes-kwp"}, target.resolve)
    return EnvelopeClient(kms, public, DekCache(enabled=False))


def stress(target_file: str, rows_out: str, threads: int, rounds: int) -> int:
    target = load_target(Path(target_file))
    tenant = target.raw["tenants"]["granted"][0]
    rows: list[dict] = []
    errors: list[str] = []
    lock = threading.Lock()

    def work(index: int, barrier: threading.Barrier) -> None:
        try:
            barrier.wait(timeout=60)
            client = _client(target, index)
            try:
                mine = []
                for _ in range(RECORDS_PER_THREAD):
                    doc = client.encrypt_user(tenant, expected_pii(user_id := str(random.getrandbits(64))),
                                              user_id=user_id)
                    mine.append(as_row(doc, tenant))
                for row in mine:
                    if client.decrypt_user(row) != expected_pii(row["user_id"]):
                        raise AssertionError(f"record {row['user_id']} decrypted to other data")
                with lock:
                    other = random.choice(rows) if rows else None
                    rows.extend(mine)
                if other is not None and client.decrypt_user(other) != expected_pii(other["user_id"]):
                    raise AssertionError(f"record {other['user_id']} decrypted to other data in another thread")
            finally:
                client.kms.close()
        except BaseException as exc:  # everything a thread meets is reported, nothing is lost
            with lock:
                errors.append(f"thread {index}: {type(exc).__name__}: {exc} "
                              f"({traceback.extract_tb(exc.__traceback__)[-1].name})")

    for _ in range(rounds):
        barrier = threading.Barrier(threads)
        pool = [threading.Thread(target=work, args=(i, barrier)) for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(timeout=300)
        if any(thread.is_alive() for thread in pool):
            errors.append("a thread did not finish within 300 s")
            break
    Path(rows_out).write_text(json.dumps([{k: base64.b64encode(v).decode() if isinstance(v, bytes) else v
                                           for k, v in row.items()} for row in rows]))
    print(json.dumps({"records": len(rows), "errors": errors[:20], "error_count": len(errors)}))
    return 0 if not errors else 1


def check(target_file: str, rows_in: str) -> int:
    target = load_target(Path(target_file))
    client = client_for(target, cache=False)
    pq_kms = pq_kms_for(target)
    stored = json.loads(Path(rows_in).read_text())
    bad = []
    for item in stored:
        row = {k: base64.b64decode(v) if k in BYTES_COLUMNS and v is not None else v for k, v in item.items()}
        try:
            if client.decrypt_user(row) != expected_pii(row["user_id"]):
                bad.append(row["user_id"])
        except Exception as exc:  # a record that does not open is counted, with its reason
            bad.append(f"{row['user_id']}: {exc}")
    print(json.dumps({"kek": client.kms.has_kek(client.kms.current_version), "pq_kek": pq_kms.has_kek(1),
                      "records": len(stored), "undecryptable": bad[:20], "undecryptable_count": len(bad)}))
    return 0


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "stress":
        sys.exit(stress(args[0], args[1], int(args[2]), int(args[3])))
    sys.exit(check(*args))
