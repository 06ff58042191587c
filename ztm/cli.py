"""The `ztm` console script: one front for the packages.

Each package contributes its subcommands through ``register(subparsers)``. Errors a user
can cause are printed as one line (``ztm: ...``) with a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ztm import __version__
from ztm.errors import UserError

# Modules with a ``register(subparsers)``; a module not present yet is skipped.
COMMAND_MODULES = (
    "provision.cli",
    "ztm.cli_tls",
    "envelope.cli",
    "evidence.cli",
    "provision.audit_cli",
    "provision.anchor_cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ztm", description="Zero-Trust MySQL: install, prove, and verify.")
    parser.add_argument("--version", action="version", version=f"ztm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"ztm: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ztm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.: not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
