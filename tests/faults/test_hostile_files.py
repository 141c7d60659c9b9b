"""Store files that are not what they should be: symbolic links, hard links, FIFOs,
directories. Opening a store never follows a link out of it, never writes a file shared with
another place, never blocks, and raises StoreCorruptedError naming the file."""

import os

import numpy as np
import pytest
from faultkit import make_store, watchdog

from fractaldiff.io.store import SnapshotStore, StoreCorruptedError, open_store

MEMBERS = ["snapshots.bin", "steps.jsonl", "commits.bin", "manifest.json"]


@pytest.mark.parametrize("name", MEMBERS + ["writer.lock"])
@pytest.mark.parametrize("mode", ["r", "a"])
def test_symlinked_member_is_refused_and_target_untouched(tmp_path, name, mode):
    path = tmp_path / "s"
    make_store(path, 6)
    outside = tmp_path / "precious.bin"
    outside.write_bytes(b"keep me" * 1000)
    real = path / name
    os.replace(real, tmp_path / ("moved-" + name))
    # the link even points at the member's own (moved) content: links are refused as such
    os.symlink(outside, real)
    if name == "writer.lock" and mode == "r":
        open_store(path, mode).close()  # readers do not touch the lock file
    else:
        with pytest.raises(StoreCorruptedError, match=f"{name} is a symbolic link"):
            open_store(path, mode).close()
    assert outside.read_bytes() == b"keep me" * 1000


def test_symlinked_data_file_is_not_truncated_by_append_mode(tmp_path):
    """Mode "a" used to truncate the target of a symlinked snapshots.bin to 0 bytes."""
    path = tmp_path / "s"
    make_store(path, 6)
    outside = tmp_path / "important.dat"
    outside.write_bytes(os.urandom(4096))
    before = outside.read_bytes()
    (path / "snapshots.bin").unlink()
    os.symlink(outside, path / "snapshots.bin")
    with pytest.raises(StoreCorruptedError, match="symbolic link"):
        open_store(path, "a").close()
    assert outside.read_bytes() == before


def test_hard_linked_member_is_not_written(tmp_path):
    path = tmp_path / "h"
    data = make_store(path, 6)
    os.link(path / "snapshots.bin", tmp_path / "elsewhere.bin")
    with pytest.raises(StoreCorruptedError, match="hard links"):
        open_store(path, "a")
    with open_store(path) as r:  # reading is fine
        assert np.array_equal(r[:], data)


@pytest.mark.parametrize("name", MEMBERS)
@pytest.mark.parametrize("mode", ["r", "a"])
def test_fifo_member_does_not_block(tmp_path, name, mode):
    path = tmp_path / "f"
    make_store(path, 3)
    (path / name).unlink()
    os.mkfifo(path / name)
    with watchdog(10), pytest.raises(StoreCorruptedError, match=f"{name} is a FIFO"):
        open_store(path, mode)


@pytest.mark.parametrize("name", MEMBERS + ["writer.lock"])
def test_directory_member(tmp_path, name):
    """commits.bin (or any member) a directory: StoreCorruptedError, not IsADirectoryError."""
    path = tmp_path / "d"
    make_store(path, 3)
    (path / name).unlink()
    (path / name).mkdir()
    mode = "r" if name != "writer.lock" else "a"
    with pytest.raises(StoreCorruptedError, match=f"{name} is a directory"):
        open_store(path, mode)
    with pytest.raises(StoreCorruptedError, match=f"{name} is a directory"):
        open_store(path, "a")


def test_update_meta_replaces_a_symlinked_manifest_without_writing_through_it(tmp_path):
    path = tmp_path / "u"
    make_store(path, 2)
    with open_store(path, "a") as w:
        outside = tmp_path / "victim.json"
        outside.write_text("victim")
        os.replace(path / "manifest.json", tmp_path / "manifest.saved")
        os.symlink(outside, path / "manifest.json")
        # the open writer rewrites its manifest by rename inside the store: the link is
        # replaced, its target never written
        w.update_meta(note="x")
    assert outside.read_text() == "victim"
    assert not os.path.islink(path / "manifest.json")
    with open_store(path) as r:
        assert r.meta["note"] == "x"


def test_create_refuses_a_symlink_as_the_new_store(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.symlink(target, tmp_path / "link")
    with pytest.raises(FileExistsError):
        SnapshotStore.create(tmp_path / "link", 3)
    assert not any(target.iterdir())
