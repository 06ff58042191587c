"""`ztm evidence verify BUNDLE ...` and `ztm evidence diff OLD NEW ...` (exit codes in evidence/diff.py's CLI help).

`ztm evidence verify BUNDLE (--ca FILE [--crl FILE] [--tsa-ca FILE] | --pubkey FILE | --trust-embedded-key)`.

Exit codes: 0 verified; 1 verification failed (each problem printed, or one line for a damaged
archive or a missing trust anchor); 2 usage (bad arguments, no such bundle, not a regular
non-empty gzip file, unreadable key, CA or CRL).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evidence.diff import diff, load_verified, text_lines
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
    _trust_arguments(v)
    v.set_defaults(func=_verify)
    d = ev_sub.add_parser("diff", help="which controls regressed, were fixed or changed between two bundles",
                          description="Verify both bundles (same trust arguments as verify; a bundle that does not "
                                      "verify is never diffed), then list per control: regressed, fixed, still "
                                      "failing, newly assessed, no longer assessed, changed; and evidence files "
                                      "whose data changed for controls whose verdict did not. Exit 0 no regression, "
                                      "1 a control regressed, 2 usage, 3 a bundle did not verify.")
    d.add_argument("old", type=Path, help="the earlier bundle (tar.gz)")
    d.add_argument("new", type=Path, help="the later bundle (tar.gz)")
    d.add_argument("--json", action="store_true", help="one JSON document on stdout")
    _trust_arguments(d)
    d.set_defaults(func=_diff)


def _trust_arguments(v: argparse.ArgumentParser) -> None:
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


def _diff(args: argparse.Namespace) -> int:
    trust = {"ca": args.ca, "pubkey": args.pubkey, "crl": args.crl, "tsa_ca": args.tsa_ca,
             "trust_embedded": args.trust_embedded_key}
    old, new = load_verified(args.old, **trust), load_verified(args.new, **trust)
    result = diff(old, new)
    if args.json:
        print(json.dumps(result.to_json(old, new), indent=2))
    else:
        for line in text_lines(result, old, new):
            print(line)
    return 1 if result.regressed else 0


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
