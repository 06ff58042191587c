"""`ztm evidence verify BUNDLE (--ca FILE [--crl FILE] [--tsa-ca FILE] | --pubkey FILE | --trust-embedded-key)`.

Exit codes: 0 verified; 1 verification failed (each problem printed, or one line for a damaged
archive or a missing trust anchor); 2 usage (bad arguments, no such bundle, not a regular
non-empty gzip file, unreadable key, CA or CRL).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evidence.verify import verify_bundle
from ztm.text import printable


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evidence", help="evidence bundles written by pytest --evidence-out")
    ev_sub = ev.add_subparsers(dest="evidence_command", metavar="ACTION")
    ev_sub.required = True
    v = ev_sub.add_parser("verify", help="check a bundle's signer, signature and every file's hash, offline",
                          description="Check that signer.pem chains to YOUR evidence CA (at the time of the bundle's "
                                      "RFC 3161 timestamp, else now), MANIFEST.sha256.sig under the certified key, "
                                      "every file's SHA-256, and that no file is missing or added. A trust anchor is "
                                      "required. Exit 0 verified, 1 failed, 2 usage.")
    v.add_argument("bundle", type=Path, help="the bundle (tar.gz)")
    who = v.add_mutually_exclusive_group()
    who.add_argument("--ca", type=Path, metavar="FILE",
                     help="the evidence CA certificate(s) (PEM) that must have issued the signer's certificate")
    who.add_argument("--pubkey", type=Path, metavar="FILE", help="the signer's Ed25519 public key (PEM) you trust")
    who.add_argument("--trust-embedded-key", action="store_true",
                     help="inspection only: verify with signer.pub.pem from inside the bundle (proves integrity, "
                          "not who signed)")
    v.add_argument("--crl", type=Path, metavar="FILE", help="with --ca: a CRL (PEM) of the evidence CA; a signer "
                                                             "listed in it is refused")
    v.add_argument("--tsa-ca", type=Path, metavar="FILE",
                   help="the CA certificate(s) of the time-stamping authority (default: the --ca file)")
    v.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    result = verify_bundle(args.bundle, ca=args.ca, pubkey=args.pubkey, crl=args.crl, tsa_ca=args.tsa_ca,
                           trust_embedded=args.trust_embedded_key)
    shown = printable(str(args.bundle))
    for note in result.notes:
        if note.startswith("warning:"):
            print(note, file=sys.stderr)
        else:
            print(f"note: {note}")
    if result.ok:
        print(f"verified: {shown} ({result.files} files, signer, signature and every hash match)")
        return 0
    for problem in result.problems:
        print(f"FAILED: {problem}")
    print(f"ztm: {shown} did not verify ({len(result.problems)} problem(s))", file=sys.stderr)
    return 1
