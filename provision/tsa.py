"""A local RFC 3161 time-stamping authority for the lab (``openssl ts`` behind a tiny HTTP
server). The client side (query, token, verification) is ztm.anchoring.rfc3161.

    python -m provision.tsa --listen ADDR:PORT --cert TSA.pem --key TSA.key --ca CA.pem --dir FOLDER
"""

from __future__ import annotations

import argparse
import tempfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ztm.anchoring.rfc3161 import openssl_ts
from ztm.errors import UserError

CONFIG = """[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = {cert}
signer_key = {key}
signer_digest = sha256
default_policy = 1.3.6.1.4.1.55555.1.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_POST(self) -> None:
        query = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        config: Path = self.server.config  # type: ignore[attr-defined]
        with tempfile.NamedTemporaryFile() as q:
            q.write(query)
            q.flush()
            try:
                reply = openssl_ts("-reply", "-queryfile", q.name, "-config", str(config))
            except UserError:
                self.send_response(400)
                self.end_headers()
                return
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    serial = args.dir / "serial"
    if not serial.exists():
        serial.write_text("01\n")
    config = args.dir / "ts.cnf"
    config.write_text(CONFIG.format(dir=args.dir, cert=args.cert, key=args.key))
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), _Handler)
    server.config = config  # type: ignore[attr-defined]
    print(f"listening on {host}:{server.server_address[1]}", flush=True)  # port 0: the one chosen
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
