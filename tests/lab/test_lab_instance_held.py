"""``ztm lab up`` when another checkout's lab already runs on the same instance: the server
of the second lab cannot start (the address is taken in the shared namespace), and the error
names the real cause (the other lab's server, its pid and configuration) instead of the
server's bare "Aborting"."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision import lab as lab_mod
from provision import netns, server
from ztm.errors import UserError

pytestmark = pytest.mark.lab


@pytest.fixture
def other_checkout() -> Iterator[Path]:
    """A folder the database server's own user can reach (pytest's tmp_path is root-only)."""
    folder = Path(tempfile.mkdtemp(prefix="ztm-other-checkout-", dir="/var/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_second_lab_on_a_held_instance_names_the_holder(lab, other_checkout):
    holder_pid = server.read_pid(lab.server)
    assert holder_pid is not None, "the lab's server is not running"
    other = lab_mod.Lab(other_checkout / lab.dir.name)
    other.dir.mkdir(parents=True)
    other.state_file.write_text(json.dumps({"engine": lab.state()["engine"]}))
    engine = other.engine()
    try:
        server.prepare_folders(other.server, lab.pki.root / "server", lab.database())
        other.render_config()
        engine.attach(other.server.root)
        server.initialize(engine, other.server, netns.in_netns(netns.DB.netns, []))
        with pytest.raises(UserError) as caught:
            other.start_server()
    finally:
        server.stop(other.server, timeout=20)  # never left running, whatever happened
        engine.detach(other.server.root)
    message = str(caught.value)
    assert f"lab instance {netns.INSTANCE} is held by another lab" in message, message
    assert f"pid {holder_pid}" in message and str(lab.server.defaults_file) in message, message
    assert re.search(r"ZTM_LAB_INSTANCE", message), message
    assert server.read_pid(lab.server) == holder_pid, "the holding lab's server was disturbed"
