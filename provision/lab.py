"""`ztm lab up|down|status`: a real zero-trust deployment on this machine.

The database runs in netns ztm-db on its lab address; the assessor (this process) reaches it
over the lab bridge from an allowlisted address. State lives in the lab folder
(default ./lab, or $ZTM_LAB_DIR); engine binaries that take long to fetch are cached in
$ZTM_CACHE_DIR (default /var/cache/ztm).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pymysql
import tomli_w
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provision import database as database_mod
from provision import fail2ban, firewall, kms, netns, procs, scap, schema, server, sshd
from provision.accounts import (
    LOGIN_ACCOUNTS,
    PROBE_ACCOUNT,
    LoginAccount,
    apply_login_account,
    apply_probe_account,
    drop_default_accounts,
)
from provision.anchor_cli import declare_schema_change
from provision.engines import engine_for
from provision.engines.base import Engine, default_cache_dir
from provision.fail2ban import Fail2banLayout, JailSettings
from provision.files import ensure_secret, write_private
from provision.kms import KmsLayout
from provision.os_packages import ensure_packages
from provision.pki import PkiLayout, ensure_signer, issue_all, issue_collector, issue_tsa
from ztm.data_plane import DATABASE
from ztm.db import quote_name
from ztm.errors import NotRootError, UserError
from ztm.keys import private_pem, public_pem
from ztm.schemas import validate

SERVER_NAME = "db.ztm.lab"
PORT = 3306
# Fixed, so that a rebuilt lab keeps the same assessment tenants.
COLLECTOR_NAME = "log.ztm.lab"
SYSLOG_PORT = 6514
TSA_PORT = 3180
# Short enough for tests to trigger, long enough that a ban outlives the test that checks it.
# The assessor is exempt: its negative-login probes (ZTM-TLS-2/3) would otherwise ban it;
# ZTM-NET-2 shows the ban from the intruder's allowlisted address and that another
# allowlisted client (the log host) keeps working.
JAIL_SETTINGS = JailSettings(maxretry=5, findtime=60, bantime=600,
                             ignoreip=("127.0.0.1/8", netns.ASSESSOR_ADDRESS))
TENANT_A = str(uuid.uuid5(uuid.NAMESPACE_DNS, "tenant-a.assessment.ztm.lab"))
TENANT_B = str(uuid.uuid5(uuid.NAMESPACE_DNS, "tenant-b.assessment.ztm.lab"))
TENANT_UNGRANTED = str(uuid.uuid5(uuid.NAMESPACE_DNS, "tenant-ungranted.assessment.ztm.lab"))
TENANT_AUDITOR_ONLY = str(uuid.uuid5(uuid.NAMESPACE_DNS, "tenant-auditor-only.assessment.ztm.lab"))
# openssh-server for the database host's sshd (run by the lab, never as the system service),
# openssh-client for the assessor, openscap-scanner for ZTM-HST-2 on the database host.
BASE_PACKAGES = ["iproute2", "nftables", "procps", "fail2ban", "softhsm2", "openssh-server", "openssh-client",
                 "openscap-scanner"]
SYSTEM_SERVICES_OFF = ("ssh.service",)
HOST_ACCESS = ("ssh", "local")


def default_lab_dir() -> Path:
    default = "lab" if netns.INSTANCE == 0 else f"lab-{netns.INSTANCE}"
    return Path(os.environ.get("ZTM_LAB_DIR", default)).resolve()


@dataclass(frozen=True)
class Lab:
    dir: Path

    def __post_init__(self) -> None:
        # Paths end up in my.cnf and are read by a server with another working directory.
        object.__setattr__(self, "dir", Path(self.dir).resolve())

    pki = property(lambda self: PkiLayout(self.dir / "pki"))
    host_dir = property(lambda self: self.dir / "host")
    log_host = property(lambda self: self.dir / "log-host")
    kms = property(lambda self: KmsLayout(self.dir / "kms"))
    fail2ban = property(lambda self: Fail2banLayout(self.dir / "host" / "fail2ban"))
    sshd = property(lambda self: sshd.SshdLayout(self.dir / "host" / "ssh"))
    server = property(lambda self: server.ServerLayout(self.dir / "db"))
    secrets = property(lambda self: self.dir / "secrets")
    state_file = property(lambda self: self.dir / "state.json")
    target_file = property(lambda self: self.dir / "target.toml")

    def state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def database(self) -> str:
        """The database the lab's data plane lives in (``ztm lab up --database``)."""
        return self.state().get("database", DATABASE)

    def engine(self) -> Engine:
        name = self.state().get("engine")
        if not name:
            raise UserError(f"no lab in {self.dir}: run 'ztm lab up' first")
        return engine_for(name)

    def password(self, role: str) -> str:
        return ensure_secret(self.secrets / f"{role}.password")

    def admin(self) -> pymysql.connections.Connection:
        """Break-glass admin over the server's unix socket."""
        return pymysql.connect(unix_socket=str(self.server.socket), user="root", password=self.password("admin"),
                               autocommit=True, connect_timeout=5)

    # -- server lifecycle -------------------------------------------------------------
    def render_config(self, overrides: server.Overrides | None = None) -> None:
        text = server.render_config(self.engine(), self.server, bind_address=netns.DB.address, port=PORT,
                                    overrides=overrides)
        server.write_config(self.server, text)

    def start_server(self) -> None:
        engine = self.engine()
        engine.attach(self.server.root)
        try:
            server.start(engine, self.server, netns.in_netns(netns.DB.netns, []))
        except UserError as exc:
            holder = _other_server_in_netns(netns.DB.netns, self.server.defaults_file)
            if holder is None:
                raise
            pid, defaults = holder
            raise UserError(f"lab instance {netns.INSTANCE} is held by another lab: its server (pid {pid}, "
                            f"{defaults}) already runs in namespace {netns.DB.netns} on {netns.DB.address}:{PORT}; "
                            f"run 'ztm lab down' with ZTM_LAB_INSTANCE={netns.INSTANCE} in that checkout, or pick "
                            f"another ZTM_LAB_INSTANCE (the server said: {exc})") from None

    def restart(self, overrides: server.Overrides | None = None) -> None:
        server.stop(self.server)
        self.render_config(overrides)
        self.start_server()

    @contextmanager
    def reconfigured(self, overrides: server.Overrides) -> Iterator[None]:
        """Run the server with some settings broken, then put the hardened config back."""
        try:
            self.restart(overrides)
            yield
        finally:
            self.restart()


def _other_server_in_netns(name: str, own_defaults: Path) -> tuple[int, str] | None:
    """A database server of another lab (another --defaults-file) running in netns ``name``:
    (pid, its defaults file), or None. Namespaces compare by their nsfs inode."""
    try:
        wanted = os.stat(f"/run/netns/{name}")
    except OSError:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ns = os.stat(entry / "ns" / "net")
            if (ns.st_dev, ns.st_ino) != (wanted.st_dev, wanted.st_ino):
                continue
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        defaults = next((a.removeprefix("--defaults-file=") for a in argv if a.startswith("--defaults-file=")), None)
        if defaults is not None and Path(defaults) != own_defaults:
            return int(entry.name), defaults
    return None


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise NotRootError(what)


def up(lab: Lab, engine_name: str = "mariadb", database: str = DATABASE,
       host_access: str | None = None) -> dict[str, float]:
    """Bring the lab up (idempotent) with its data plane in ``database``; returns timings of
    the steps, in seconds. Another database than the lab had replaces it (dropped, with a new
    audit chain and new anchors). ``host_access``: how the target reaches the database host,
    "ssh" (default) or "local"; None keeps the last."""
    quote_name(database)  # a name the SQL files can use, checked before anything is done
    require_root("ztm lab up")
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    engine = engine_for(engine_name)
    ensure_packages(BASE_PACKAGES, services_off=SYSTEM_SERVICES_OFF)
    engine.install(default_cache_dir())
    scap_content = scap.fetch(default_cache_dir())
    timings["install"] = time.monotonic() - t0

    lab.dir.mkdir(parents=True, exist_ok=True)
    lab.dir.chmod(0o755)
    lab.secrets.mkdir(exist_ok=True)
    lab.secrets.chmod(0o700)
    host_access = host_access or lab.state().get("host_access", "ssh")
    if host_access not in HOST_ACCESS:
        raise UserError(f"host access must be one of {', '.join(HOST_ACCESS)}, not {host_access!r}")
    previous, old_database = lab.state().get("engine"), lab.database()
    if previous and previous != engine_name:  # switching engines: the datadirs are not compatible
        _stop_and_remove_server(lab, engine_for(previous))
        _forget_anchors(lab)
    elif previous and old_database != database:
        _forget_anchors(lab)
    write_private(lab.state_file, json.dumps({"engine": engine_name, "database": database,
                                              "host_access": host_access}) + "\n", mode=0o644)

    t = time.monotonic()
    netns.up()
    timings["network"] = time.monotonic() - t

    t = time.monotonic()
    if not lab.pki.server("pem").exists():
        issue_all(lab.pki, server_name=SERVER_NAME, server_address=netns.DB.address, users=LOGIN_ACCOUNTS)
    ensure_signer(lab.pki)  # a lab made before the evidence CA existed gets it (and a signer from it) now
    timings["pki"] = time.monotonic() - t

    t = time.monotonic()
    layout = lab.server
    server.prepare_folders(layout, lab.pki.root / "server", database)
    lab.render_config()
    engine.attach(layout.root)
    server.initialize(engine, layout, netns.in_netns(netns.DB.netns, []))
    lab.start_server()
    timings["server"] = time.monotonic() - t

    t = time.monotonic()
    host_controls_up(lab)
    timings["firewall, fail2ban"] = time.monotonic() - t

    t = time.monotonic()
    sshd_up(lab, scap_content)
    timings["sshd"] = time.monotonic() - t

    t = time.monotonic()
    kms.ensure_token(lab.kms, lab.password("kms-user"), lab.password("kms-so"))
    kms.ensure_keys(lab.kms, lab.password("kms-user"))
    timings["kms"] = time.monotonic() - t

    t = time.monotonic()
    _bootstrap_accounts(lab)
    timings["accounts"] = time.monotonic() - t
    t = time.monotonic()
    anchor_down(lab)  # a schema change is declared below, not anchored as if it were tampering
    with lab.admin() as conn:
        if previous and old_database != database:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {quote_name(old_database)}")
        schema.apply(conn, account_host=netns.ACCOUNT_HOST, database=database)
        seed_tenants(conn, database)
    timings["data plane"] = time.monotonic() - t
    write_target(lab, engine, database, host_access)
    t = time.monotonic()
    if (lab.log_host / "anchor.key").exists():
        declare_schema_change(lab.target_file, "audit schema applied by 'ztm lab up'")
    anchor_up(lab)
    timings["anchor"] = time.monotonic() - t
    timings["total"] = time.monotonic() - t0
    return timings


def _ensure_admin_password(lab: Lab) -> None:
    """The install leaves root@localhost without a password: set it. Decided by trying, not by
    whether the datadir is new, so that an 'up' interrupted before this step is repaired."""
    try:
        lab.admin().close()
        return
    except pymysql.err.OperationalError as exc:
        if exc.args[0] != 1045:  # only "access denied" means the password is not set yet
            raise
    try:
        conn = pymysql.connect(unix_socket=str(lab.server.socket), user="root", password="", autocommit=True)
    except pymysql.err.OperationalError as exc:
        raise UserError(f"the lab server refuses its admin password and root has a password of its own "
                        f"({exc.args[-1]}); run 'ztm lab down' and 'ztm lab up' to rebuild it") from None
    with conn.cursor() as cur:
        cur.execute("ALTER USER 'root'@'localhost' IDENTIFIED BY %s", (lab.password("admin"),))
    conn.close()


def _bootstrap_accounts(lab: Lab) -> None:
    _ensure_admin_password(lab)
    with lab.admin() as conn:
        drop_default_accounts(conn)
        for role, user in LOGIN_ACCOUNTS.items():
            apply_login_account(conn, LoginAccount(user=user, host=netns.ACCOUNT_HOST, password=lab.password(role),
                                                   cert=lab.pki.client(role, "pem")))
        apply_probe_account(conn, PROBE_ACCOUNT, netns.ACCOUNT_HOST, lab.password("probe"))


def host_controls_up(lab: Lab) -> None:
    """Default-deny firewall and fail2ban inside the database namespace (idempotent)."""
    lab.host_dir.mkdir(exist_ok=True)
    ruleset = firewall.nftables_ruleset([netns.ALLOWLIST], db_port=PORT)
    firewall.apply_nftables(ruleset, lab.host_dir / "firewall.nft", netns.in_netns(netns.DB.netns, []))
    layout = lab.fail2ban
    fail2ban.write_config(layout, lab.server.error_log, JAIL_SETTINGS)
    fail2ban.start(layout, netns.in_netns(netns.DB.netns, []))


def sshd_up(lab: Lab, scap_content: Path | None) -> None:
    """The database host's sshd, in its namespace and its own view (idempotent)."""
    sshd.prepare(lab.sshd, netns.DB.address, netns.ASSESSOR_ADDRESS)
    sshd.start(lab.sshd, netns.in_netns(netns.DB.netns, []), scap_content)


def anchor_up(lab: Lab) -> None:
    """The off-host anchor: its own key on the log host, running in the ztm-log namespace."""
    lab.log_host.mkdir(exist_ok=True)
    key_path = lab.log_host / "anchor.key"
    if not key_path.exists():
        key = Ed25519PrivateKey.generate()
        write_private(key_path, private_pem(key), mode=0o600)
        write_private(lab.log_host / "anchor.pub.pem", public_pem(key.public_key()), mode=0o644)
    for sink in (lab.log_host / "anchors.jsonl", lab.log_host / "syslog-journal.jsonl"):
        _append_only(sink)
    cert, key = issue_collector(lab.pki, name=COLLECTOR_NAME, address=netns.LOG.address)
    if _log_host_pid(lab, "collector") is None:
        _spawn(lab, "collector", [
            sys.executable, "-m", "provision.syslog_collector", "--listen", f"{netns.LOG.address}:{SYSLOG_PORT}",
            "--cert", str(cert), "--key", str(key), "--ca", str(lab.pki.ca_cert),
            "--journal", str(lab.log_host / "syslog-journal.jsonl")])
        _wait_for_port(netns.LOG.netns, netns.LOG.address, SYSLOG_PORT)
    tsa_cert, tsa_key = issue_tsa(lab.pki)
    if _log_host_pid(lab, "tsa") is None:
        _spawn(lab, "tsa", [sys.executable, "-m", "provision.tsa", "--listen", f"{netns.LOG.address}:{TSA_PORT}",
                            "--cert", str(tsa_cert), "--key", str(tsa_key), "--dir", str(lab.log_host / "tsa")])
        _wait_for_port(netns.LOG.netns, netns.LOG.address, TSA_PORT)
    if anchor_pid(lab) is None:
        proc = _spawn(lab, "anchor", [sys.executable, "-m", "ztm.cli", "anchor", "run", "--target",
                                      str(lab.target_file)])
        deadline = time.monotonic() + 60
        sink = lab.log_host / "anchors.jsonl"
        while time.monotonic() < deadline and not (sink.exists() and sink.stat().st_size):
            if proc.poll() is not None:  # our child: its exit status, not /proc, says it ended
                raise UserError(f"the anchor process exited at start (status {proc.returncode}); "
                                f"see {lab.log_host / 'anchor.log'}")
            time.sleep(0.2)  # the first anchor is written at start
    if anchor_pid(lab) is None:
        raise UserError(f"the anchor process is not running; see {lab.log_host / 'anchor.log'}")


def _append_only(path: Path) -> None:
    """The privileged step that makes a sink write-once (chattr +a needs CAP_LINUX_IMMUTABLE,
    which an anchor service should not hold); ZTM-AUD-3 checks the attribute."""
    path.touch(exist_ok=True)
    done = subprocess.run(["chattr", "+a", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"warning: {path} cannot be made append-only here ({done.stderr.strip()}): ZTM-AUD-3 will fail it",
              file=sys.stderr)


# What only each log-host process of *this* lab has on its command line: a pid file naming
# another process (a reused pid, another lab's process) does not count as running.
_MARKERS = {"collector": ("provision.syslog_collector", "syslog-journal.jsonl"),
            "tsa": ("provision.tsa",), "anchor": ("anchor", "run")}


def _markers(lab: Lab, name: str) -> tuple[str, ...]:
    unique = {"collector": str(lab.log_host / "syslog-journal.jsonl"), "tsa": str(lab.log_host / "tsa"),
              "anchor": str(lab.target_file)}
    return (*_MARKERS[name], unique[name])


def _spawn(lab: Lab, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    with open(lab.log_host / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(netns.in_netns(netns.LOG.netns, argv), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    # Popen returns after the exec succeeded: /proc shows 'ip netns exec ... ARGV', then ARGV
    # itself once ip has exec'd it (both carry the markers; procs waits out the switch).
    procs.write_pid_file(lab.log_host / f"{name}.pid", proc.pid)
    return proc


def _log_host_pid(lab: Lab, name: str) -> int | None:
    return procs.read_pid_file(lab.log_host / f"{name}.pid", _markers(lab, name))


def _wait_for_port(netns_name: str, address: str, port: int, timeout: float = 60) -> None:
    probe = [sys.executable, "-m", "ztm.netprobe", "connect", address, str(port), "--timeout", "5"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(netns.in_netns(netns_name, probe), capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    raise UserError(f"the log collector did not start listening on {address}:{port}")


def anchor_pid(lab: Lab) -> int | None:
    return _log_host_pid(lab, "anchor")


def _stop(lab: Lab, name: str) -> None:
    pid = _log_host_pid(lab, name)
    if pid is not None:
        procs.terminate(pid)
    (lab.log_host / f"{name}.pid").unlink(missing_ok=True)


def anchor_down(lab: Lab, collector: bool = False) -> None:
    """Stop the anchor process (and, with ``collector``, the log collector)."""
    _stop(lab, "anchor")
    if collector:
        _stop(lab, "collector")
        _stop(lab, "tsa")
        for journal in (lab.log_host / "anchors.jsonl", lab.log_host / "syslog-journal.jsonl"):
            if journal.exists():  # append-only (chattr +a): lifted so that the lab can be removed
                subprocess.run(["chattr", "-a", str(journal)], capture_output=True)


TENANTS = {"granted": [TENANT_A, TENANT_B], "ungranted": TENANT_UNGRANTED, "auditor_only": TENANT_AUDITOR_ONLY}


def seed_tenants(conn: pymysql.connections.Connection, database: str = DATABASE) -> None:
    """Two assessment tenants granted to the app and the auditor, one granted to no one, and
    one to the auditor only."""
    database_mod.seed_tenants(conn, TENANTS, LOGIN_ACCOUNTS["app"], LOGIN_ACCOUNTS["auditor"], database)


def _forget_anchors(lab: Lab) -> None:
    """A new database starts a new audit chain: the old deployment's anchors do not apply."""
    anchor_down(lab, collector=True)
    for name in ("anchors.jsonl", "syslog-journal.jsonl"):
        for path in lab.log_host.glob(name + "*"):
            path.unlink()


def write_target(lab: Lab, engine: Engine, database: str = DATABASE, host_access: str = "ssh") -> None:
    """``host_access``: "ssh" (default: the database host's sshd, as on a VM) or "local"
    (testinfra's local backend on this machine, commands run in the database namespace)."""
    pki, layout = lab.pki, lab.server
    roles = {
        role: {"user": user, "cert": str(pki.client(role, "pem")), "key": str(pki.client(role, "key")),
               "password": {"file": str(lab.secrets / f"{role}.password")}}
        for role, user in LOGIN_ACCOUNTS.items()
    }
    roles["probe"] = {"user": PROBE_ACCOUNT, "password": {"file": str(lab.secrets / "probe.password")}}
    roles["admin"] = {"user": "root", "socket": str(layout.socket),
                      "password": {"file": str(lab.secrets / "admin.password")}}
    doc = {
        "target": {"name": f"ztm-lab-{engine.name}", "engine": engine.name,
                   "version": _version_prefix(engine.version()), "host": netns.DB.address, "port": PORT,
                   "server_name": SERVER_NAME, "database": database},
        "tls": {"ca": str(pki.ca_cert), "crl": str(pki.crl)},
        "roles": roles,
        "negative": {kind: {"cert": str(pki.negative(kind, "pem")), "key": str(pki.negative(kind, "key"))}
                     for kind in ("foreign_ca", "revoked", "expired")},
        "host": {
            "spec": sshd.spec(lab.sshd, netns.DB.address),
            "config_files": [str(layout.defaults_file)], "datadir": str(layout.datadir),
            "key_files": [str(p) for p in layout.key_files], "server_account": "mysql",
            "forbidden_files": [str(layout.root / "etc" / "tls" / "ca.key")],
            "key_scan_dirs": [str(layout.etc), str(layout.secure_files), str(layout.run)],
            "config_dirs": [str(layout.etc), str(layout.conf_d)],
            "fail2ban_socket": str(lab.fail2ban.socket), "fail2ban_jail": fail2ban.JAIL,
        },
        "network": {"allowlisted_cidrs": [netns.ALLOWLIST], "assessor_address": netns.ASSESSOR_ADDRESS,
                    "intruder_netns": netns.INTRUDER.netns, "intruder_address": netns.INTRUDER.addresses[0],
                    "intruder_allowlisted_address": netns.INTRUDER.addresses[1], "other_client_netns": netns.LOG.netns,
                    "listen_ports": [PORT, sshd.PORT], "ssh_port": sshd.PORT},
        "tenants": TENANTS,
        "kms": {"provider": "pkcs11", "module": kms.MODULE, "token_label": kms.TOKEN_LABEL,
                "key_label_prefix": kms.KEY_PREFIX, "key_version": 1,
                "pin": {"file": str(lab.secrets / "kms-user.password")},
                "env": {"SOFTHSM2_CONF": str(lab.kms.conf)}},
        "crypto": {"require_pq": True, "pq_public_key": str(lab.kms.pq_public),
                   "pq_private_wrapped": str(lab.kms.pq_private_wrapped),
                   "pq_kek": {"key_label_prefix": kms.PQ_KEY_PREFIX, "key_version": 1},
                   "dek_cache": {"enabled": True, "max_age_seconds": 300, "max_messages": 1000,
                                 "max_bytes": 1 << 20}},
        "anchor": {"public_key": str(lab.log_host / "anchor.pub.pem"), "signing_key": str(lab.log_host / "anchor.key"),
                   "interval_seconds": 60, "every_events": 500,
                   "tsa_url": f"http://{netns.LOG.address}:{TSA_PORT}/", "tsa_ca": str(pki.evidence_ca_cert),
                   "sinks": [{"kind": "file", "path": str(lab.log_host / "anchors.jsonl")},
                             {"kind": "syslog", "address": f"{netns.LOG.address}:{SYSLOG_PORT}",
                              "server_name": COLLECTOR_NAME, "ca": str(pki.ca_cert),
                              "cert": str(pki.client("auditor", "pem")), "key": str(pki.client("auditor", "key")),
                              "journal": str(lab.log_host / "syslog-journal.jsonl")}]},
        # The evidence signer chains to the evidence CA (not the database CA); bundles are time-stamped by the TSA.
        "evidence": {"signing_key": str(pki.signer("key")), "signing_cert": str(pki.signer("pem")),
                     "tsa_url": f"http://{netns.LOG.address}:{TSA_PORT}/", "ca": str(pki.evidence_ca_cert),
                     "crl": str(pki.evidence_crl)},
        "lab": {"dir": str(lab.dir)},
    }
    if host_access == "local":
        doc["host"].update({"spec": "local://", "netns": netns.DB.netns})
    if engine.dialect.persisted_config_supported:
        doc["host"]["persisted_config"] = str(layout.datadir / "mysqld-auto.cnf")
    validate(doc, "target.schema.json", "generated lab target")
    write_private(lab.target_file, "# Written by 'ztm lab up'. Paths are absolute.\n" + tomli_w.dumps(doc), mode=0o644)


def _version_prefix(version: str) -> str:
    """'10.11.19-MariaDB-0+deb12u1' -> '10.11': the series a target expects."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if not match:
        raise UserError(f"cannot read a version number from {version!r}")
    return f"{match[1]}.{match[2]}"


def _stop_and_remove_server(lab: Lab, engine: Engine) -> None:
    server.stop(lab.server)
    engine.detach(lab.server.root)
    shutil.rmtree(lab.server.root, ignore_errors=True)


def down(lab: Lab) -> None:
    require_root("ztm lab down")
    state = lab.state()
    anchor_down(lab, collector=True)
    fail2ban.stop(lab.fail2ban)
    sshd.stop(lab.sshd, netns.DB.address)
    if state.get("engine"):
        _stop_and_remove_server(lab, engine_for(state["engine"]))
    netns.down()
    shutil.rmtree(lab.dir, ignore_errors=True)


def status(lab: Lab) -> dict[str, object]:
    info: dict[str, object] = dict(netns.status())
    info["engine"] = lab.state().get("engine")
    info["server pid"] = server.read_pid(lab.server)
    info["sshd pid"] = sshd.pid(lab.sshd)
    info["target file"] = str(lab.target_file) if lab.target_file.exists() else None
    return info
