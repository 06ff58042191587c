"""`ztm evidence verify BUNDLE [--pubkey FILE | --ca FILE]`.

Exit codes: 0 verified; 1 verification failed (each problem printed, or one line for a
damaged archive); 2 usage (bad arguments, no such bundle, unreadable key or CA).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evidence.verify import verify_bundle


def register(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evidence", help="evidence bundles written by pytest --evidence-out")
    ev_sub = ev.add_subparsers(dest="evidence_command", metavar="ACTION")
    ev_sub.required = True
    v = ev_sub.add_parser("verify", help="check a bundle's signature and every file's hash, offline",
                          description="Check MANIFEST.sha256.sig over MANIFEST.sha256, every file's SHA-256, and "
                                      "that no file is missing or added. Exit 0 verified, 1 failed, 2 usage.")
    v.add_argument("bundle", type=Path, help="the bundle (tar.gz)")
    who = v.add_mutually_exclusive_group()
    who.add_argument("--pubkey", type=Path, metavar="FILE", help="the signer's Ed25519 public key (PEM) you trust")
    who.add_argument("--ca", type=Path, metavar="FILE",
                     help="the CA certificate(s) (PEM) that issued the signer's certificate (signer.pem)")
    v.set_defaults(func=_verify)


def _verify(args: argparse.Namespace) -> int:
    result = verify_bundle(args.bundle, pubkey=args.pubkey, ca=args.ca)
    for note in result.notes:
        if note.startswith("warning:"):
            print(note, file=sys.stderr)
        else:
            print(f"note: {note}")
    if result.ok:
        print(f"verified: {args.bundle} ({result.files} files, signature and every hash match)")
        return 0
    for problem in result.problems:
        print(f"FAILED: {problem}")
    print(f"ztm: {args.bundle} did not verify ({len(result.problems)} problem(s))", file=sys.stderr)
    return 1
