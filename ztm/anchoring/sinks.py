"""Write-once sinks for anchors: each ships one anchor and reads back all it holds.

``file``: append-only JSON lines. The append-only attribute (chattr +a) needs
CAP_LINUX_IMMUTABLE, which the anchor service (User=, NoNewPrivileges) lacks: a privileged
step sets it once (the lab's set-up as root; on a VM, root runs ``chattr +a FILE``); the sink
tries too and says when it cannot. ``s3`` writes with
If-None-Match: an anchor object is never overwritten. ``syslog``: RFC 5424 over TLS to a
collector whose journal is read back. ``write_once()`` reports whether the storage really is
write-once (ZTM-AUD-3 checks it). Delivery is idempotent: an anchor delivered again (the
shipper died between shipping it and saving its buffer) is recognised by the file and s3
sinks and never written twice; the syslog journal may hold it twice, and the verifiers
count an exact repeat once. (The anchor host's retrying shipper is provision.anchor_shipper.)
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ztm.errors import UserError

TAIL_BYTES = 1 << 20  # how much of a file sink's end is read to recognise a re-delivered anchor


def append_only(path: Path) -> tuple[bool | None, str]:
    """Whether ``path`` carries the append-only attribute (lsattr): (True/False, detail), or
    (None, why) when it cannot be told (no such file, a filesystem without attributes)."""
    done = subprocess.run(["lsattr", "-d", str(path)], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout.strip():
        return None, f"cannot read the attributes of {path}: {(done.stderr or 'lsattr failed').strip()[-200:]}"
    flags = done.stdout.split()[0]
    if "a" in flags:
        return True, f"{path} is append-only (chattr +a)"
    return False, f"{path} is not append-only (attributes {flags}): anyone who may write it may rewrite it"


@dataclass
class FileSink:
    path: Path
    append_only: bool | None = None  # None: not tried yet
    note: str = ""

    @property
    def name(self) -> str:
        return str(self.path)

    def prepare(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)
        if self.append_only is None:
            done = subprocess.run(["chattr", "+a", str(self.path)], capture_output=True, text=True)
            self.append_only = done.returncode == 0
            self.note = ("append-only attribute set" if self.append_only else
                         f"append-only attribute not supported here: {(done.stderr or 'chattr failed').strip()}")

    def holds(self, record: dict[str, Any]) -> bool:
        """True when the sink already ends with this anchor (re-delivery); UserError when it
        holds a different anchor with the same anchor_seq (never written over)."""
        seq = record["checkpoint"]["anchor_seq"]
        for held in reversed(self._tail()):
            checkpoint = held.get("checkpoint") if isinstance(held, dict) else None
            if not isinstance(checkpoint, dict) or checkpoint.get("anchor_seq") != seq:
                continue
            if json.dumps(held, sort_keys=True) == json.dumps(record, sort_keys=True):
                return True
            raise UserError(f"{self.path} already holds a different anchor {seq}: not appended")
        return False

    def _tail(self) -> list[Any]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(0, 2)
                start = max(0, handle.tell() - TAIL_BYTES)
                handle.seek(start)
                data = handle.read()
        except FileNotFoundError:
            return []
        lines = data.split(b"\n")[(1 if start else 0):-1]  # a cut first line, an unfinished last one
        out = []
        for line in lines:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # judged by the verifier (read), not here
        return out

    def write_once(self) -> tuple[bool | None, str]:
        return append_only(self.path)

    def ship(self, record: dict[str, Any]) -> None:
        self.prepare()
        if self.holds(record):
            return  # delivered before the shipper could record it: not appended twice
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        # One unbuffered write per record: a buffered text file may split a long line (an
        # anchor with its RFC 3161 token) into several writes that a reader could see half done.
        with open(self.path, "ab", buffering=0) as handle:
            handle.write(line)
            os.fsync(handle.fileno())

    def read(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text()
        except OSError as exc:
            raise UserError(f"cannot read anchor sink {self.path}: {exc.strerror}") from None
        lines = text.split("\n")
        lines.pop()  # what follows the last newline: empty, or a record still being appended
        try:
            return [json.loads(line) for line in lines if line.strip()]
        except ValueError:
            raise UserError(f"anchor sink {self.path} holds a line that is not JSON") from None


@dataclass
class S3Sink:
    """One object per anchor, in a bucket with Object Lock, each in COMPLIANCE mode with a
    retain-until date: nobody, the bucket owner included, can delete or overwrite it early."""

    bucket: str
    prefix: str = "anchors/"
    retain_days: int = 365
    endpoint_url: str | None = None
    region: str = "us-east-1"
    note: str = ""
    client: Any = None
    path: Path = Path("s3")  # for messages
    name: str = "s3"

    def __post_init__(self) -> None:
        try:
            import boto3
        except ImportError:
            raise UserError("the s3 anchor sink needs boto3: pip install -e .[aws]") from None

        self.client = self.client or boto3.client("s3", region_name=self.region, endpoint_url=self.endpoint_url)
        self.path = Path(f"s3://{self.bucket}/{self.prefix}")
        self.name = f"s3://{self.bucket}/{self.prefix}"

    def prepare(self) -> None:
        from botocore.exceptions import ClientError

        try:
            config = self.client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
        except ClientError as exc:
            raise UserError(f"s3://{self.bucket} has no Object Lock configuration ({exc.response['Error']['Code']}): "
                            "refusing to anchor to storage that is not write-once") from None
        if config.get("ObjectLockEnabled") != "Enabled":
            raise UserError(f"s3://{self.bucket} does not have Object Lock enabled: refusing it as an anchor sink")
        self.note = f"Object Lock COMPLIANCE, {self.retain_days} days"

    def write_once(self) -> tuple[bool | None, str]:
        try:
            self.prepare()
        except UserError as exc:
            return False, str(exc)
        return True, f"{self.name}: {self.note}"

    def ship(self, record: dict[str, Any]) -> None:
        self.prepare()
        key = f"{self.prefix}{record['checkpoint']['anchor_seq']:012d}.json"
        from botocore.exceptions import ClientError

        body = json.dumps(record, sort_keys=True).encode()
        try:  # If-None-Match: never overwrite an object (a retried upload may already be there)
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*",
                                   ObjectLockMode="COMPLIANCE",
                                   ObjectLockRetainUntilDate=datetime.now(UTC) + timedelta(days=self.retain_days))
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("PreconditionFailed", "412"):
                raise
            if self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read() != body:
                raise UserError(f"s3://{self.bucket}/{key} already holds a different anchor: not overwritten") from None

    def read(self) -> list[dict[str, Any]]:
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return [json.loads(self.client.get_object(Bucket=self.bucket, Key=k)["Body"].read()) for k in sorted(keys)]


@dataclass
class SyslogSink:
    """RFC 5424 messages over TCP with TLS (RFC 5425, octet counting), mutually authenticated,
    to a collector. ``journal`` (optional) is where the collector keeps what it received:
    the verifier reads anchors back from it."""

    address: str
    ca: Path
    server_name: str
    cert: Path
    key: Path
    journal: Path | None = None
    note: str = "syslog over TLS"
    timeout: float = 30.0  # connect, TLS handshake and send; a loaded collector is slow, not down

    @property
    def path(self) -> Path:
        return self.journal or Path(f"syslog://{self.address}")

    @property
    def name(self) -> str:
        return f"syslog://{self.address}" + (f" (journal {self.journal})" if self.journal else "")

    def ship(self, record: dict[str, Any]) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_verify_locations(str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        host, _, port = self.address.rpartition(":")
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        # PRI 110: facility 13 (log audit), severity 6 (informational).
        message = (f"<110>1 {stamp} {socket.gethostname()} ztm-anchor - anchor - "
                   + json.dumps(record, sort_keys=True)).encode()
        with socket.create_connection((host, int(port)), timeout=self.timeout) as raw, \
                context.wrap_socket(raw, server_hostname=self.server_name) as tls:
            tls.sendall(str(len(message)).encode() + b" " + message)
            # Syslog has no acknowledgement: end our side and wait for the collector to close
            # its own, which it does only after it has read (and journalled) every frame.
            # Closing at once could reset the connection over data the collector had not read.
            tls.shutdown(socket.SHUT_WR)
            while tls.recv(4096):
                pass

    def write_once(self) -> tuple[bool | None, str]:
        if self.journal is None:
            return None, f"the syslog sink {self.address} names no journal: its storage cannot be checked"
        return append_only(self.journal)

    def read(self) -> list[dict[str, Any]]:
        if self.journal is None:
            raise UserError(f"the syslog sink {self.address} names no journal to read anchors back from")
        records = []
        for line in FileSink(self.journal).read():
            text = line.get("message", "")
            if " anchor - " in text:
                records.append(json.loads(text.split(" anchor - ", 1)[1]))
        return records


def sink_for(spec: dict[str, Any], resolve) -> FileSink | S3Sink | SyslogSink:
    if spec.get("kind") == "file":
        return FileSink(resolve(spec["path"]))
    if spec.get("kind") == "s3":
        return S3Sink(spec["bucket"], spec.get("prefix", "anchors/"), int(spec.get("retain_days", 365)),
                      spec.get("endpoint_url"), spec.get("region", "us-east-1"))
    if spec.get("kind") == "syslog":
        return SyslogSink(spec["address"], resolve(spec["ca"]), spec["server_name"], resolve(spec["cert"]),
                          resolve(spec["key"]), resolve(spec["journal"]) if spec.get("journal") else None)
    raise UserError(f"anchor sink kind {spec.get('kind')!r} is not known (file, s3, syslog)")


Sink = FileSink | S3Sink | SyslogSink


def read_sinks(sinks: list[Sink]) -> tuple[list[tuple[str, list[dict[str, Any]]]], list[str]]:
    """Every sink's anchors by sink name, and the sinks that could not be read (a finding,
    never a crash: such a sink counts as holding nothing)."""
    named, problems = [], []
    for sink in sinks:
        try:
            named.append((sink.name, sink.read()))
        except Exception as exc:  # an unreadable sink is a finding, not a crash
            problems.append(f"{sink.name}: cannot read the sink: {' '.join(str(exc).split())[:300]}")
            named.append((sink.name, []))
    return named, problems
