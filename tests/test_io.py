"""Atomic writes: whole files or nothing, ordinary permissions, strict JSON."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from vaelens.io import atomic_open, atomic_path, atomic_save_npy, atomic_write_json, to_jsonable


def test_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path, "w") as fh:
        fh.write("new, half")
        raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_mode_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_json_is_strict_and_numpy_aware(tmp_path: Path) -> None:
    obj = {"a": np.float32(1.5), "b": np.arange(3), "c": float("nan"), 4: [np.int64(2)]}
    atomic_write_json(tmp_path / "x.json", obj)
    assert json.loads((tmp_path / "x.json").read_text()) == {
        "a": 1.5,
        "b": [0, 1, 2],
        "c": None,
        "4": [2],
    }
    assert to_jsonable((np.inf,)) == [None]


def test_npy_roundtrip_memory_maps(tmp_path: Path) -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    atomic_save_npy(tmp_path / "a.npy", arr)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy", mmap_mode="r"), arr)


def test_atomic_path_serves_writers_that_need_a_file_name(tmp_path: Path) -> None:
    dest = tmp_path / "big.npy"
    with atomic_path(dest) as tmp:
        assert tmp.parent == tmp_path and not dest.exists()
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(3, 2))
        out[:] = 7
        out.flush()
        del out
    np.testing.assert_array_equal(np.load(dest), np.full((3, 2), 7, np.uint8))
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert np.load(dest).shape == (3, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npy"]
