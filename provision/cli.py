"""`ztm lab ...` and `ztm pki ...`."""

from __future__ import annotations

import argparse
import json
import shutil
import string
import sys
import tempfile
from pathlib import Path

from provision import database, fail2ban, firewall, netns
from provision import lab as lab_mod
from provision.accounts import LOGIN_ACCOUNTS
from provision.anchor_cli import file_sink_paths, writable_dirs
from provision.files import write_public
from provision.pki import rotate, rotate_signer
from ztm.data_plane import DATABASE
from ztm.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    lab = sub.add_parser("lab", help="bring the embedded lab deployment up or down")
    lab.add_argument("--dir", type=Path, default=None, help="lab folder (default ./lab or $ZTM_LAB_DIR)")
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="ACTION")
    lab_sub.required = True
    up = lab_sub.add_parser("up", help="build or repair the lab (idempotent)")
    up.add_argument("--engine", choices=("mariadb", "mysql"), default="mariadb")
    up.add_argument("--database", default=DATABASE, metavar="NAME",
                    help=f"the data plane's database (letters, digits, underscore; default {DATABASE}); "
                         "another name than the lab's replaces its database")
    up.add_argument("--host-access", choices=("ssh", "local"), default=None,
                    help="how the target reaches the database host: over the lab's sshd (default) or local:// "
                         "(default: as the last 'up')")
    up.set_defaults(func=_lab_up)
    lab_sub.add_parser("down", help="remove every namespace, process and file the lab made").set_defaults(
        func=_lab_down)
    lab_sub.add_parser("status", help="what is running").set_defaults(func=_lab_status)

    _register_provision(sub)

    pki = sub.add_parser("pki", help="the lab PKI")
    pki.add_argument("--dir", type=Path, default=None, help="lab folder (default ./lab or $ZTM_LAB_DIR)")
    pki_sub = pki.add_subparsers(dest="pki_command", metavar="ACTION")
    pki_sub.required = True
    pki_sub.add_parser("rotate", help="reissue server, client and evidence signer certificates (CAs kept), revoke "
                                      "the replaced ones in the CRLs; restarts the lab server").set_defaults(
        func=_pki_rotate)
    pki_sub.add_parser("rotate-signer", help="issue a new evidence signer from the evidence CA and revoke the old one "
                                             "(superseded) in the evidence CRL; no restart").set_defaults(
        func=_pki_rotate_signer)


def _register_provision(sub: argparse._SubParsersAction) -> None:
    prov = sub.add_parser("provision", help="install pieces of the deployment on this host (a VM)")
    prov_sub = prov.add_subparsers(dest="provision_command", metavar="PART")
    prov_sub.required = True
    fw = prov_sub.add_parser("firewall", help="default-deny firewall: database port only from allowlisted CIDRs")
    fw.add_argument("--firewall", choices=("nftables", "ufw"), default="nftables")
    fw.add_argument("--allow", action="append", required=True, metavar="CIDR", help="allowlisted client network")
    fw.add_argument("--port", type=int, default=3306)
    fw.add_argument("--apply", action="store_true", help="apply it (root); without: print what would be applied")
    fw.set_defaults(func=_provision_firewall)
    f2b = prov_sub.add_parser("fail2ban", help="fail2ban jails for failed database logins and SSH, on a VM")
    f2b.add_argument("--server-log", type=Path, required=True, help="the server's error log (its log_error)")
    f2b.add_argument("--ssh-log", type=Path, default=Path("/var/log/auth.log"))
    f2b.add_argument("--ignore", action="append", default=[], metavar="CIDR",
                     help="never banned (e.g. the assessor, whose negative-login probes would ban it)")
    f2b.add_argument("--apply", action="store_true", help="install the jail.d drop-in and reload fail2ban (root)")
    f2b.set_defaults(func=_provision_fail2ban)
    scap = prov_sub.add_parser("scap", help="SCAP Security Guide content for this host's OS (for ZTM-HST-2)")
    scap.add_argument("--apply", action="store_true",
                      help="fetch it from Debian's newer suite and install it (root); without: say what would be done")
    scap.set_defaults(func=_provision_scap)
    units = prov_sub.add_parser("anchor-units", help="systemd service and timer for the anchor on a VM")
    units.add_argument("--target", type=Path, required=True, help="the target file the anchor host uses")
    units.add_argument("--out", type=Path, default=Path("/etc/systemd/system"))
    units.add_argument("--user", default="ztm-anchor")
    units.set_defaults(func=_provision_anchor_units)
    database.register(prov_sub)


def _provision_firewall(args: argparse.Namespace) -> int:
    if args.firewall == "ufw":
        commands = firewall.ufw_commands(args.allow, db_port=args.port)
        if not args.apply:
            print("\n".join(" ".join(c) for c in commands))
            return 0
        lab_mod.require_root("ztm provision firewall --apply")
        if shutil.which("ufw") is None:
            raise UserError("ufw is not installed on this host; use --firewall nftables")
        firewall.apply_ufw(commands)
        print(f"ufw: default deny incoming, {args.port}/tcp from {', '.join(args.allow)}, 22/tcp")
        return 0
    ruleset = firewall.nftables_ruleset(args.allow, db_port=args.port)
    if not args.apply:
        print(ruleset)
        return 0
    lab_mod.require_root("ztm provision firewall --apply")
    with tempfile.TemporaryDirectory() as tmp:
        firewall.apply_nftables(ruleset, Path(tmp) / "ztm.nft", [])
    print(f"nftables: table inet {firewall.TABLE} loaded (input policy drop)")
    return 0


def _provision_scap(args: argparse.Namespace) -> int:
    from provision import os_packages, scap
    from provision.engines.base import default_cache_dir

    release = scap.os_release()
    name = scap.product(release)
    package = scap.PACKAGES.get(release.get("ID", ""))
    if package is None:
        raise UserError(f"no Debian package carries SCAP Security Guide content for {name or 'this OS'}")
    if not args.apply:
        print(f"would fetch {package} from Debian {os_packages.NEWER_SUITE} ({os_packages.MIRROR}) into "
              f"{default_cache_dir() / 'scap'} and install ssg-{name}-ds.xml into {scap.INSTALL_DIR}")
        return 0
    lab_mod.require_root("ztm provision scap --apply")
    os_packages.ensure_packages(["openscap-scanner"])
    installed = scap.install(scap.fetch(default_cache_dir(), release), release)
    print(f"SCAP content for {name}: {installed} (oscap xccdf eval --profile standard {installed})")
    return 0


def _provision_fail2ban(args: argparse.Namespace) -> int:
    settings = fail2ban.JailSettings(ignoreip=("127.0.0.1/8", *args.ignore))
    if not args.apply:
        print(fail2ban.render_jail(args.server_log, settings, args.ssh_log))
        return 0
    lab_mod.require_root("ztm provision fail2ban --apply")
    fail2ban.install_on_host(args.server_log, settings, args.ssh_log)
    print(f"fail2ban: jails {fail2ban.JAIL} ({args.server_log}) and sshd ({args.ssh_log}) in {fail2ban.VM_DROP_IN}")
    return 0


def _provision_anchor_units(args: argparse.Namespace) -> int:
    target = args.target.resolve()
    beside = Path(sys.executable).parent / "ztm"  # the venv's console script
    ztm = str(beside) if beside.exists() else shutil.which("ztm") or f"{sys.executable} -m ztm.cli"
    # ProtectSystem=strict: the unit may write only where the anchor keeps sinks and buffer.
    # The file sinks are write-once: a privileged ('+') start step creates each for the service's
    # user and sets chattr +a, which the service itself (User=, NoNewPrivileges) cannot do.
    append_only = "\n".join(f"ExecStartPre=+/bin/sh -c 'test -e {p} || install -o {args.user} -m 0640 /dev/null {p}; "
                             f"chattr +a {p}'" for p in file_sink_paths(target))
    facts = {"ztm": ztm, "target": str(target), "user": args.user, "append_only": append_only,
             "state_dir": " ".join(str(p) for p in writable_dirs(target))}
    templates = Path(__file__).resolve().parent / "templates"
    for name in ("ztm-anchor.service", "ztm-anchor-once.service", "ztm-anchor-once.timer"):
        text = string.Template((templates / name).read_text()).substitute(facts)
        try:
            write_public(args.out / name, text)
        except OSError as exc:
            raise UserError(f"cannot write {args.out / name}: {exc.strerror}") from None
    print(f"wrote ztm-anchor.service and ztm-anchor-once.{{service,timer}} to {args.out}; enable one of: "
          "'systemctl enable --now ztm-anchor.service' or 'systemctl enable --now ztm-anchor-once.timer'")
    return 0


def _lab(args: argparse.Namespace) -> lab_mod.Lab:
    return lab_mod.Lab(args.dir.resolve() if args.dir else lab_mod.default_lab_dir())


def _lab_up(args: argparse.Namespace) -> int:
    lab = _lab(args)
    timings = lab_mod.up(lab, args.engine, args.database, args.host_access)
    steps = ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
    print(f"lab up ({args.engine}): target file {lab.target_file} ({steps})")
    return 0


def _lab_down(args: argparse.Namespace) -> int:
    lab = _lab(args)
    lab_mod.down(lab)
    print(f"lab down: removed namespaces, server and {lab.dir}")
    return 0


def _lab_status(args: argparse.Namespace) -> int:
    info = lab_mod.status(_lab(args))
    print(json.dumps(info, indent=2))
    return 0 if info.get("server pid") else 1


def _pki_rotate_signer(args: argparse.Namespace) -> int:
    lab = _lab(args)
    lab.engine()  # no lab: one line, and nothing is created
    superseded = rotate_signer(lab.pki)
    print(f"evidence signer rotated: new {lab.pki.signer('pem')} from {lab.pki.evidence_ca_cert}; "
          f"{len(superseded)} replaced signer certificate(s) revoked as superseded in {lab.pki.evidence_crl}")
    return 0


def _pki_rotate(args: argparse.Namespace) -> int:
    lab = _lab(args)
    engine = lab.engine()  # no lab: one line, and nothing is created
    lab_mod.require_root("ztm pki rotate")
    superseded = rotate(lab.pki, server_name=lab_mod.SERVER_NAME, server_address=netns.DB.address,
                        users=LOGIN_ACCOUNTS)
    lab_mod.up(lab, engine.name, lab.database())  # installs the new server material and rebinds accounts
    lab.restart()  # the server loads the new certificate and CRL
    print(f"pki rotated: new server, client and signer certificates under the same CAs; "
          f"{len(superseded)} replaced certificate(s) revoked as superseded in the CRL; server restarted")
    return 0
