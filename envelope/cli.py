"""`ztm envelope encrypt | create-user | import | decrypt | rewrap`: client-side encryption from the shell.

PII is read from a JSON file or standard input ({"name", "email", "phone"}), never from
the command line, where other users of the machine could read it. Mistakes a user can make
(an id that is not a UUID, bad JSON, a target without a PIN or a provider field) end in one
line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql

from envelope import bulk
from envelope.client import EnvelopeClient, api_json
from envelope.rotate import RewrapCounts, rewrap_tenant
from envelope.setup import client_for, pq_private_for
from ztm.db import connect
from ztm.errors import UserError
from ztm.target import load_target

PROGRESS_EVERY = 1000


def register(sub: argparse._SubParsersAction) -> None:
    env = sub.add_parser("envelope", help="client-side envelope encryption of PII")
    env_sub = env.add_subparsers(dest="envelope_command", metavar="ACTION")
    env_sub.required = True
    for name, helptext, func in (
            ("encrypt", "print the JSON app_create_user_encrypted takes", _encrypt),
            ("create-user", "encrypt and create the user over mTLS through the procedure", _create_user)):
        p = env_sub.add_parser(name, help=helptext)
        p.add_argument("--target", type=Path, required=True)
        p.add_argument("--tenant", required=True, help="tenant id (UUID)")
        p.add_argument("--user-id", default=None, help="record id (UUID; default: a new random one)")
        p.add_argument("--pii", type=Path, default=None, help="JSON file with name, email, phone (default: stdin)")
        p.add_argument("--role", default="user")
        p.add_argument("--no-pq", action="store_true", help="skip the post-quantum wrap (if not required)")
        p.add_argument("--no-dek-cache", action="store_true", help="a fresh DEK (and KMS call) for every record")
        p.set_defaults(func=func)
    i = env_sub.add_parser("import", help="bulk load: encrypt records from a JSON Lines file and store them in "
                                          "batches (one audited transaction per batch)")
    i.add_argument("--target", type=Path, required=True)
    i.add_argument("--tenant", required=True, help="tenant id (UUID)")
    i.add_argument("--input", type=Path, required=True,
                   help='JSON Lines: one {"name", "email", "phone", "role"?, "user_id"?} object a line')
    i.add_argument("--batch", type=int, default=bulk.BATCH, help=f"records per call (1..{bulk.MAX_BATCH})")
    i.add_argument("--no-pq", action="store_true", help="skip the post-quantum wrap (if not required)")
    i.add_argument("--no-dek-cache", action="store_true", help="a KMS call for every record")
    i.set_defaults(func=_import)
    r = env_sub.add_parser("rewrap", help="KEK rotation: re-wrap every DEK of a tenant under a newer KEK version "
                                          "(resumable: run it again after an interruption)")
    r.add_argument("--target", type=Path, required=True)
    r.add_argument("--tenant", required=True, help="tenant id (UUID)")
    r.add_argument("--to-version", type=int, required=True)
    r.add_argument("--create-kek", action="store_true", help="create that KEK version on the token if missing")
    r.set_defaults(func=_rewrap)
    d = env_sub.add_parser("decrypt", help="read a user through v_users and decrypt it in the client")
    d.add_argument("--target", type=Path, required=True)
    d.add_argument("--tenant", required=True, help="tenant id (UUID)")
    d.add_argument("--user-id", required=True, help="record id (UUID)")
    d.add_argument("--via-pq", action="store_true",
                   help="break-glass: recover the DEK from the PQ wrap alone (the DEK KEK is not used)")
    d.set_defaults(func=_decrypt)


def _uuid(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise UserError(f"{what} {value!r} is not a UUID") from None


MAX_PII_JSON = 1 << 20  # three short fields: a larger document is a mistake, not a record


def _pii_doc(doc: Any) -> dict[str, str]:
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("name", "email", "phone")):
        raise UserError("the PII JSON must be an object with string fields name, email and phone")
    return {k: doc[k] for k in ("name", "email", "phone")}


def _pii(path: Path | None) -> dict[str, str]:
    try:
        data = path.read_bytes()[:MAX_PII_JSON + 1] if path else sys.stdin.buffer.read(MAX_PII_JSON + 1)
        if len(data) > MAX_PII_JSON:
            raise UserError(f"the PII JSON is larger than {MAX_PII_JSON} bytes")
        doc = json.loads(data.decode())
    except UnicodeDecodeError:
        raise UserError("the PII JSON is not UTF-8 text") from None
    except RecursionError:  # e.g. 100k nested brackets
        raise UserError("the PII JSON is nested too deeply") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the PII JSON ({exc})") from None
    return _pii_doc(doc)


def _jsonl(path: Path) -> Iterator[tuple[dict[str, str], str, str | None]]:
    """(PII, role, user id) of each non-empty line, read lazily; a bad line: UserError naming it."""
    try:
        with path.open("rb") as f:
            for number, line in enumerate(f, 1):
                if len(line) > MAX_PII_JSON:
                    raise UserError(f"{path} line {number}: longer than {MAX_PII_JSON} bytes")
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line.decode())
                    pii = _pii_doc(doc)
                    role = doc.get("role", "user")
                    if not isinstance(role, str):
                        raise ValueError("role must be a string")
                    user_id = _uuid(doc.get("user_id"), "user id") if isinstance(doc.get("user_id"), str) else None
                except UnicodeDecodeError:
                    raise UserError(f"{path} line {number}: not UTF-8 text") from None
                except RecursionError:
                    raise UserError(f"{path} line {number}: nested too deeply") from None
                except (ValueError, UserError) as exc:
                    raise UserError(f"{path} line {number}: {exc}") from None
                yield pii, role, user_id
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def _check_lines(path: Path) -> int:
    """The number of records, every line checked first: a bad line costs no KMS login, no
    connection and no partial import."""
    return sum(1 for _ in _jsonl(path))


def _target(args: argparse.Namespace):
    args.tenant = _uuid(args.tenant, "tenant id")
    args.user_id = _uuid(getattr(args, "user_id", None), "user id")
    return load_target(args.target)


def _client(args: argparse.Namespace, target):
    with_pq = None
    if getattr(args, "no_pq", False):
        if target.section("crypto").get("require_pq"):
            raise UserError("the target requires post-quantum wraps; --no-pq is refused")
        with_pq = False
    return client_for(target, with_pq=with_pq, cache=False if getattr(args, "no_dek_cache", False) else None)


def _encrypted(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    target = _target(args)
    pii = _pii(args.pii)  # read before the KMS is opened: a bad file costs no token login
    client = _client(args, target)
    try:
        return target, client.encrypt_user(args.tenant, pii, args.role, args.user_id)
    finally:
        client.kms.close()


def _encrypt(args: argparse.Namespace) -> int:
    print(json.dumps(_encrypted(args)[1], indent=2))
    return 0


def _app_session(target, tenant: str):
    try:
        conn = connect(target, target.roles["app"], database=target.database)
        with conn.cursor() as cur:
            cur.execute("CALL security_set_tenant(%s)", (tenant,))
    except pymysql.MySQLError as exc:
        raise UserError(f"cannot open an app session for tenant {tenant}: {exc.args[-1]}") from None
    return conn


def _create_user(args: argparse.Namespace) -> int:
    target, doc = _encrypted(args)
    conn = _app_session(target, args.tenant)
    try:
        with conn.cursor() as cur:
            cur.execute("CALL app_create_user_encrypted(%s)", (api_json(doc),))
            (user_id,) = cur.fetchone()
    except pymysql.MySQLError as exc:
        raise UserError(f"the server refused the record: {exc.args[-1]}") from None
    finally:
        conn.close()
    print(f"created user {user_id} in tenant {args.tenant} (DEK wrapped by {doc['pii_kms_key_id']}"
          + (f", PQ wrap {doc['pq_alg']})" if doc.get("pq_alg") else ")"))
    return 0


def _import(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    target = _target(args)
    if not 1 <= args.batch <= bulk.MAX_BATCH:
        raise UserError(f"--batch must be 1..{bulk.MAX_BATCH}, not {args.batch}")
    total = _check_lines(args.input)
    client = _client(args, target)
    stored = 0
    bar = tqdm(total=total, unit="rec", disable=not sys.stderr.isatty(), file=sys.stderr)
    try:
        conn = _app_session(target, args.tenant)
        docs = (client.encrypt_user(args.tenant, pii, role, user_id) for pii, role, user_id in _jsonl(args.input))

        def progress(n: int) -> None:
            nonlocal stored
            stored += n
            bar.update(n)

        try:
            bulk.import_records(conn, docs, size=args.batch, progress=progress)
        except pymysql.MySQLError as exc:
            raise UserError(f"the server refused a batch ({exc.args[-1]}); {stored} records stored before it, "
                            "the refused batch not at all") from None
        except UserError as exc:
            raise UserError(f"{exc}; {stored} records stored before it") from None
        finally:
            conn.close()
    finally:
        bar.close()
        calls = client.kms.calls
        client.kms.close()
    print(f"imported {stored} records into tenant {args.tenant} ({calls} KMS calls)")
    return 0


def _decrypt(args: argparse.Namespace) -> int:
    target = _target(args)
    conn = _app_session(target, args.tenant)
    try:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute("SELECT * FROM v_users WHERE user_id = %s", (args.user_id,))
            row: dict[str, Any] | None = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        raise UserError(f"no user {args.user_id} visible in tenant {args.tenant}")
    if args.via_pq:  # break-glass: only the PQ private key's own KEK is opened
        pii = EnvelopeClient.recover_with_pq(row, pq_private_for(target))
    else:
        client = _client(args, target)
        try:
            pii = client.decrypt_user(row)
        finally:
            client.kms.close()
    print(json.dumps(pii, indent=2))
    return 0


def _rewrap(args: argparse.Namespace) -> int:
    target = _target(args)
    if args.to_version < 1:
        raise UserError(f"--to-version must be 1 or more, not {args.to_version}")
    client = _client(args, target)
    counts = RewrapCounts()

    def progress(now: RewrapCounts) -> None:
        nonlocal counts
        counts = now
        if now.seen % PROGRESS_EVERY == 0:
            print(f"  {now.seen} records: {now.rewrapped} re-wrapped, {now.already_current} already current, "
                  f"{len(now.failed)} failed", file=sys.stderr, flush=True)

    try:
        if hasattr(client.kms, "has_kek") and not client.kms.has_kek(args.to_version):
            if not args.create_kek:
                raise UserError(f"KEK version {args.to_version} does not exist (add --create-kek to make it)")
            client.kms.create_kek(args.to_version)
        conn = _app_session(target, args.tenant)
        try:
            counts = rewrap_tenant(conn, client, args.tenant, args.to_version, progress)
        except KeyboardInterrupt:
            raise UserError(f"rewrap interrupted after {counts.rewrapped} re-wrapped (committed); run the same "
                            "command again to resume", exit_code=130) from None
        finally:
            conn.close()
    finally:
        client.kms.close()
    print(f"rewrap to KEK version {args.to_version}: {counts.rewrapped} re-wrapped, {counts.already_current} "
          f"already current, {len(counts.failed)} failed, {counts.kms_calls} KMS calls")
    for user_id, why in counts.failed.items():
        print(f"  failed {user_id}: {why}")
    if counts.rewrapped and not counts.failed:
        print(f"next: set [kms].key_version = {args.to_version} in the target so new records use it")
    return 1 if counts.failed else 0
