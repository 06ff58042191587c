"""Network probes run from another host or namespace: ``python -m ztm.netprobe ...``.

    connect HOST PORT [--source ADDR] [--timeout S]      exit 0 reachable, 1 not (prints why)
    bad-logins HOST PORT N [--source ADDR]               N logins with a wrong password

Used by ZTM-NET-1/2 through ``ip netns exec`` (lab) or SSH (a remote intruder host). Only
the standard library and pymysql; the wrong password is random and never printed.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import sys


def connect(host: str, port: int, source: str | None, timeout: float) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=timeout,
                                      source_address=(source, 0) if source else None) as sock:
            sock.settimeout(min(timeout, 1.0))
            try:
                first = sock.recv(1)
            except TimeoutError:
                return True, "connected (the server waits for the client to speak)"
            return True, "connected, server greeting received" if first else "connected, closed at once"
    except TimeoutError:
        return False, f"no answer within {timeout:.0f} s (filtered)"
    except ConnectionRefusedError:
        return False, "connection refused (rejected)"
    except OSError as exc:
        return False, f"{exc.strerror or exc}"


def bad_logins(host: str, port: int, count: int, source: str | None, user: str) -> int:
    import pymysql

    refused = 0
    for _ in range(count):
        try:
            pymysql.connect(host=host, port=port, user=user, password=secrets.token_hex(16), connect_timeout=3,
                            bind_address=source, ssl_disabled=True).close()
        except pymysql.err.OperationalError:
            refused += 1
    return refused


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ztm.netprobe")
    sub = parser.add_subparsers(dest="probe", required=True)
    c = sub.add_parser("connect")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--source")
    c.add_argument("--timeout", type=float, default=2.0)
    b = sub.add_parser("bad-logins")
    b.add_argument("host")
    b.add_argument("port", type=int)
    b.add_argument("count", type=int)
    b.add_argument("--source")
    b.add_argument("--user", default="ztm_bruteforce_probe")
    args = parser.parse_args(argv)
    if args.probe == "connect":
        ok, why = connect(args.host, args.port, args.source, args.timeout)
        print(why)
        return 0 if ok else 1
    print(f"{bad_logins(args.host, args.port, args.count, args.source, args.user)} of {args.count} logins refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
