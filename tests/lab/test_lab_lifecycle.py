"""`ztm lab up` twice is safe, `ztm lab down` leaves nothing behind, non-root gets one line.

Only this run's own lab instance ($ZTM_LAB_INSTANCE) is touched, and the test brings it up
again before it ends (even when an assertion fails), so other lab tests of the same run
find it up whatever the order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pkcs11
import pytest

from provision import kms, netns, procs, server
from provision import lab as lab_mod
from provision.engines import engine_for
from ztm.schemas import validate
from ztm.target import load_target

pytestmark = pytest.mark.lab

UNPRIVILEGED = ("65534", "65534")  # nobody:nogroup


def _ztm(*argv: str, user: tuple[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user[0]}", f"--regid={user[1]}", "--clear-groups"] if user else []
    return subprocess.run([*prefix, sys.executable, "-m", "ztm.cli", *argv], capture_output=True, text=True,
                          timeout=1800, env=dict(os.environ), cwd="/")


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            argv = " ".join(procs.command_line(int(entry.name)))
            if text in argv and procs.is_running(int(entry.name)):
                found.append(f"{entry.name}: {argv[:200]}")
    return found


def _leftovers(lab: lab_mod.Lab, engine_name: str) -> list[str]:
    left = [f"netns {h.netns}" for h in netns.HOSTS if netns.netns_exists(h.netns)]
    left += [f"link {name}" for name in (netns.BRIDGE, *(h.veth for h in netns.HOSTS)) if netns.link_exists(name)]
    inside = f"{lab.dir}/"  # with the slash: lab-1/ of a side-by-side lab is not ours
    left += [f"process {p}" for p in _processes_mentioning(inside)]
    mounts = Path("/proc/self/mountinfo").read_text()
    left += [f"mount {line.split()[4]}" for line in mounts.splitlines() if inside in line]
    if lab.dir.exists():
        left.append(f"folder {lab.dir}")
    engine = engine_for(engine_name)
    rootfs = getattr(engine, "rootfs", None)
    if rootfs is not None and (rootfs / lab.server.root.relative_to("/")).exists():
        left.append(f"folder {rootfs / lab.server.root.relative_to('/')} (the server's mount point in the rootfs)")
    return left


def test_up_twice_down_and_up_again(lab):
    engine_name = lab.state()["engine"]
    try:
        first_pid = server.read_pid(lab.server)
        assert first_pid is not None, "the session lab has no running server"

        # A stale anchor pid file naming a live unrelated process must not count as "running".
        lab_mod.anchor_down(lab)
        with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) as unrelated:
            try:
                procs.write_pid_file(lab.log_host / "anchor.pid", unrelated.pid)
                again = _ztm("lab", "--dir", str(lab.dir), "up", "--engine", engine_name)
                assert again.returncode == 0, again.stderr
                assert unrelated.poll() is None, "lab up disturbed a process that only shared a stale pid"
            finally:
                unrelated.kill()
        assert server.read_pid(lab.server) == first_pid, "a second 'up' restarted a healthy server"
        anchor = lab_mod.anchor_pid(lab)
        assert anchor is not None and anchor != unrelated.pid, "lab up left no anchor process running"
        target = load_target(lab.target_file)
        validate(target.raw, "target.schema.json", "lab target after a second up")

        down = _ztm("lab", "--dir", str(lab.dir), "down")
        assert down.returncode == 0, down.stderr
        assert _leftovers(lab, engine_name) == [], "lab down left things behind"
        down_again = _ztm("lab", "--dir", str(lab.dir), "down")
        assert down_again.returncode == 0, f"down on a downed lab: {down_again.stderr}"
        assert _leftovers(lab, engine_name) == [], "a second down left things behind"
    finally:
        _restore(lab, engine_name)
    assert server.read_pid(lab.server) is not None and lab_mod.anchor_pid(lab) is not None


def _restore(lab: lab_mod.Lab, engine_name: str) -> None:
    """Bring the session lab back, as the other tests of this run expect it.

    In a new process: SoftHSM, once loaded here, still holds the token of the lab that was
    just removed; it is reinitialised so that later tests in this process see the new one."""
    done = _ztm("lab", "--dir", str(lab.dir), "up", "--engine", engine_name)
    loaded = getattr(pkcs11, "_loaded", {}).get(kms.MODULE)
    if loaded is not None and loaded.initialized:
        loaded.reinitialize()
    assert done.returncode == 0, f"could not bring the session lab back up: {done.stderr}"


@pytest.mark.parametrize("action", ["up", "down"])
def test_without_root_one_line_and_nothing_touched(lab, action, tmp_path):
    tmp_path.chmod(0o755)
    lab_dir = tmp_path / "lab-nonroot"
    done = _ztm("lab", "--dir", str(lab_dir), action, user=UNPRIVILEGED)
    assert done.returncode != 0 and done.stdout == ""
    assert done.stderr == f"ztm: ztm lab {action} needs root (network namespaces, firewall, server processes); " \
                          "run it as root\n"
    assert not lab_dir.exists()
    assert server.read_pid(lab.server) is not None, "a non-root attempt disturbed the lab"
