"""The database host's SSH server in the lab: Debian's OpenSSH ``sshd``, run by the lab.

Not the system service: the lab starts ``sshd -D`` in the database namespace with its own
config, host key and authorized key, so the assessor reaches the database host over SSH
exactly as it would a VM (testinfra's ssh backend, key-only, host key pinned).

sshd runs in a private mount namespace, the database host's *view* of the machine:

- ``/etc/ssh`` is the lab's ``etc`` folder: the sshd_config a scan reads there is the one
  actually serving (so SCAP rules on sshd judge the real thing);
- ``view/`` holds a tmpfs with a marker file that exists only in this view (the assessor
  sees an empty folder): a test shows host evidence really comes through this sshd;
- SCAP content fetched for the host's OS (``provision.scap``) is mounted read-only at
  ``/usr/local/share/xml/scap/ssg/content``, where a provisioned VM has it too;
- root's ``~/.bashrc`` is Debian's stock one (``/etc/skel/.bashrc``, read-only): bash sources it
  for every command sshd runs, and the assessor machine's own (here it runs ``pyenv init``,
  0.2 s per command) is not the database host's.

Every command run over SSH inherits that view and the database namespace's network.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provision import procs
from provision.files import write_private
from ztm.errors import UserError

SSHD = "/usr/sbin/sshd"
PORT = 22
SCAP_MOUNT = Path("/usr/local/share/xml/scap/ssg/content")
PRIVSEP_DIR = Path("/run/sshd")  # sshd refuses to start without it (the system service makes it)

# $1 view tmpfs, $2 marker text, $3 lab etc -> /etc/ssh, $4 SCAP content (or ""), $5 sshd_config.
_ENTER_VIEW = ('set -e; mount -t tmpfs -o mode=0755,size=64k ztm-dbhost-view "$1"; '
               'printf "%s\\n" "$2" > "$1/marker"; mount --bind "$3" /etc/ssh; '
               'if [ -n "$4" ]; then mount --bind "$4" "$SCAP_MOUNT"; mount -o remount,bind,ro "$SCAP_MOUNT"; fi; '
               'if [ -f /root/.bashrc ] && [ -f /etc/skel/.bashrc ]; then '
               'mount --bind /etc/skel/.bashrc /root/.bashrc; mount -o remount,bind,ro /root/.bashrc; fi; '
               f'exec {SSHD} -D -e -f "$5"')


@dataclass(frozen=True)
class SshdLayout:
    root: Path  # lab/host/ssh

    etc = property(lambda self: self.root / "etc")  # /etc/ssh in the database host's view
    config = property(lambda self: self.etc / "sshd_config")
    host_key = property(lambda self: self.etc / "ssh_host_ed25519_key")
    authorized_keys = property(lambda self: self.etc / "authorized_keys")
    view = property(lambda self: self.root / "view")  # a tmpfs only the database host's view has
    marker_expected = property(lambda self: self.root / "view-marker.expected")
    client = property(lambda self: self.root / "assessor")
    identity = property(lambda self: self.client / "id_ed25519")
    known_hosts = property(lambda self: self.client / "known_hosts")
    client_config = property(lambda self: self.client / "ssh_config")
    pid_file = property(lambda self: self.root / "sshd.pid")
    log = property(lambda self: self.root / "sshd.log")


def _ed25519(path: Path, comment: str) -> str:
    """An Ed25519 key in OpenSSH format, written 0600 from creation; returns its public line."""
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                              serialization.NoEncryption()), mode=0o600)
    key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    line = f"{public.decode()} {comment}"
    write_private(path.with_name(path.name + ".pub"), line + "\n", mode=0o644)
    return line


def sshd_config(layout: SshdLayout, listen: str, admin_address: str) -> str:
    """Key-only; root may log in (with a key) only from the assessor's management address."""
    return f"""# Written by 'ztm lab up': the database host's sshd (not the system service).
Port {PORT}
ListenAddress {listen}
HostKey /etc/ssh/{layout.host_key.name}
PidFile {layout.root / "sshd.pid.own"}
AuthorizedKeysFile {layout.authorized_keys}
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
HostbasedAuthentication no
IgnoreRhosts yes
UsePAM no
StrictModes yes
X11Forwarding no
AllowTcpForwarding no
AllowAgentForwarding no
PermitTunnel no
PermitUserEnvironment no
MaxAuthTries 3
LoginGraceTime 30
ClientAliveInterval 300
ClientAliveCountMax 0
LogLevel VERBOSE
Match Address {admin_address}
    PermitRootLogin prohibit-password
"""


def client_config(layout: SshdLayout, address: str) -> str:
    return f"""# Written by 'ztm lab up': how the assessor reaches the database host (testinfra ssh backend).
Host {address}
    User root
    Port {PORT}
    IdentityFile {layout.identity}
    IdentitiesOnly yes
    UserKnownHostsFile {layout.known_hosts}
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    CheckHostIP no
    BatchMode yes
    PasswordAuthentication no
    KbdInteractiveAuthentication no
    ControlPath {layout.client}/cm-%C
    LogLevel ERROR
"""


def prepare(layout: SshdLayout, address: str, admin_address: str) -> None:
    """Keys (0600 from creation), configs, known_hosts pinned to the lab's host key (idempotent)."""
    for folder, mode in ((layout.root, 0o755), (layout.etc, 0o755), (layout.client, 0o700), (layout.view, 0o755)):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(mode)
    host_public = _ed25519(layout.host_key, "ztm-lab-db-host")
    client_public = _ed25519(layout.identity, "ztm-lab-assessor")
    write_private(layout.authorized_keys, client_public + "\n", mode=0o600)
    write_private(layout.known_hosts, f"{address} {' '.join(host_public.split()[:2])}\n", mode=0o600)
    write_private(layout.config, sshd_config(layout, address, admin_address), mode=0o600)
    write_private(layout.client_config, client_config(layout, address), mode=0o600)
    if not layout.marker_expected.exists():
        write_private(layout.marker_expected, f"ztm database host view {secrets.token_hex(16)}\n", mode=0o644)


def spec(layout: SshdLayout, address: str) -> str:
    """The testinfra host spec of the database host."""
    return f"ssh://root@{address}?ssh_config={layout.client_config}"


def _markers(layout: SshdLayout) -> tuple[str, ...]:
    return ("sshd", str(layout.config))


def pid(layout: SshdLayout) -> int | None:
    return procs.read_pid_file(layout.pid_file, _markers(layout))


def start(layout: SshdLayout, netns_argv: list[str], scap_content: Path | None = None) -> None:
    """Start sshd in the database host's view (no-op when it already runs)."""
    if pid(layout) is not None:
        return
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    check = subprocess.run([SSHD, "-t", "-f", str(layout.config)], capture_output=True, text=True)
    # -t also loads HostKey /etc/ssh/…, which only the view below has: here only the syntax counts.
    if check.returncode != 0 and not any(s in check.stderr for s in ("load host key", "no hostkeys")):
        raise UserError(f"the lab's sshd_config is refused by sshd: {check.stderr.strip()[-300:]}")
    if scap_content is not None:
        SCAP_MOUNT.mkdir(parents=True, exist_ok=True)  # an empty mount point; the content is in the view only
    marker = layout.marker_expected.read_text().strip()
    argv = [*netns_argv, "unshare", "--mount", "--propagation", "private", "--", "env",
            f"SCAP_MOUNT={SCAP_MOUNT}", "sh", "-c", _ENTER_VIEW, "ztm-sshd", str(layout.view), marker,
            str(layout.etc), str(scap_content or ""), str(layout.config)]
    offset = layout.log.stat().st_size if layout.log.exists() else 0
    with open(layout.log, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    procs.write_pid_file(layout.pid_file, proc.pid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = layout.log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"the lab's sshd exited at start (status {proc.returncode}): {tail[0]}")
        if b"Server listening" in layout.log.read_bytes()[offset:]:
            return
        time.sleep(0.1)
    raise UserError(f"the lab's sshd did not start listening; see {layout.log}")


def stop(layout: SshdLayout, address: str) -> None:
    """Stop sshd; the assessor's SSH connection masters (ControlPersist) are told to exit first."""
    if layout.client_config.exists():
        subprocess.run(["ssh", "-F", str(layout.client_config), "-O", "exit", address], capture_output=True,
                       timeout=30)
    running = pid(layout)
    if running is not None:
        procs.terminate(running)
    layout.pid_file.unlink(missing_ok=True)
