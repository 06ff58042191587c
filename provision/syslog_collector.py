"""A small RFC 5425 syslog collector (TLS, mutual authentication) that keeps an append-only
journal: the lab's stand-in for the SIEM / log service that receives the anchors.

    python -m provision.syslog_collector --listen ADDR:PORT --cert C --key K --ca CA --journal FILE

Frames use octet counting ("LEN SP MSG"). Each message is appended to the journal as one
JSON line with the time received and the client certificate's subject.
"""

from __future__ import annotations

import argparse
import json
import socketserver
import ssl
import subprocess
import threading
from datetime import UTC, datetime
from pathlib import Path

MAX_FRAME = 64 * 1024


class Collector(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, journal: Path) -> None:
        super().__init__(address, Handler)
        self.context, self.journal, self.lock = context, journal, threading.Lock()

    def append(self, entry: dict) -> None:
        with self.lock, open(self.journal, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")


class Handler(socketserver.BaseRequestHandler):
    server: Collector

    def handle(self) -> None:
        try:
            tls = self.server.context.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # no certificate, wrong CA, old protocol: nothing is logged from it
        peer = dict(x[0] for x in tls.getpeercert().get("subject", ()))
        buffer = b""
        with tls:
            while True:
                try:
                    chunk = tls.recv(4096)
                except (ssl.SSLError, OSError):
                    return
                if not chunk:
                    return
                buffer += chunk
                while b" " in buffer:
                    length, _, rest = buffer.partition(b" ")
                    if not length.isdigit() or int(length) > MAX_FRAME:
                        return  # not octet-counted syslog: drop the connection
                    if len(rest) < int(length):
                        break
                    message, buffer = rest[: int(length)], rest[int(length):]
                    self.server.append({"received_at": datetime.now(UTC).isoformat(), "peer": peer.get("commonName"),
                                        "message": message.decode("utf-8", errors="replace")})


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--journal", type=Path, required=True)
    args = parser.parse_args()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(args.cert, args.key)
    context.load_verify_locations(args.ca)
    args.journal.touch(exist_ok=True)
    done = subprocess.run(["chattr", "+a", str(args.journal)], capture_output=True, text=True)
    print(f"journal {args.journal}: " + ("append-only attribute set" if done.returncode == 0 else
                                         f"append-only attribute not supported here: {done.stderr.strip()}"),
          flush=True)
    host, _, port = args.listen.rpartition(":")
    with Collector((host, int(port)), context, args.journal) as server:
        print(f"listening on {host}:{server.server_address[1]}", flush=True)  # port 0: the one chosen
        server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
