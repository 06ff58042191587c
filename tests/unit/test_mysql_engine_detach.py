"""MySQLEngine.detach removes only the mount point it made and the lab's own folder above it,
never a folder of the shared rootfs itself (its /tmp: a server under /tmp/x once took it away)."""

from __future__ import annotations

from pathlib import Path

from provision.engines.mysql import MySQLEngine


def _engine_with_point(tmp_path: Path, server_dir: Path) -> tuple[MySQLEngine, Path]:
    engine = MySQLEngine(cache_dir=tmp_path)
    point = engine.rootfs / server_dir.relative_to("/")
    point.mkdir(parents=True)
    return engine, point


def test_a_server_directly_under_tmp_leaves_the_rootfs_tmp(tmp_path):
    engine, point = _engine_with_point(tmp_path, Path("/tmp/ztm-stock-abc"))
    engine.detach(Path("/tmp/ztm-stock-abc"))
    assert not point.exists(), "the mount point goes"
    assert (engine.rootfs / "tmp").is_dir(), "the rootfs's own /tmp stays"


def test_a_lab_folder_goes_with_its_mount_point(tmp_path):
    engine, point = _engine_with_point(tmp_path, Path("/work/repo/lab/db"))
    engine.detach(Path("/work/repo/lab/db"))
    assert not point.exists() and not point.parent.exists(), "the lab's folder above it, now empty, goes"
    assert (engine.rootfs / "work/repo").is_dir(), "shared folders higher up stay"
