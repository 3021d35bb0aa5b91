"""MPI3D loader: tiny npz files in the official layout, read back exactly."""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np
import pytest

from vaelens.data import get_spec, load_dataset
from vaelens.data.base import factors_to_index, index_to_factors
from vaelens.data.mpi3d import (
    MPI3D_FACTOR_NAMES,
    convert_npz_member_to_npy,
    load_mpi3d,
    read_npz_member_header,
)
from vaelens.errors import DatasetError

SIZES = (2, 3, 1, 1, 2, 2, 3)  # 72 images
N = int(np.prod(SIZES))


def _images(n: int = N, side: int = 4) -> np.ndarray:
    """Image i holds a pattern that encodes i, so a wrong index order is caught."""
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    imgs[:, 0, 0, 0] = np.arange(n) % 256
    imgs[:, 0, 0, 1] = np.arange(n) // 256
    return imgs


def _write(path, images, compressed=False, key="images"):
    path.parent.mkdir(parents=True, exist_ok=True)
    (np.savez_compressed if compressed else np.savez)(path, **{key: images})


@pytest.mark.parametrize("compressed", [False, True])
def test_reads_npz_exactly_in_factor_order(tmp_path, compressed):
    imgs = _images()
    _write(tmp_path / "mpi3d_toy.npz", imgs, compressed)
    ds = load_mpi3d(root=tmp_path, factor_sizes=SIZES)
    assert ds.factor_names == MPI3D_FACTOR_NAMES
    assert ds.factor_sizes == SIZES
    assert ds.image_shape == (3, 4, 4)
    assert ds.variant == "toy"
    # the last factor (vertical_axis) is fastest: [1,2,0,0,1,1,2] -> 1*36 + 2*12 + 1*6 + 1*3 + 2
    f = np.array([[1, 2, 0, 0, 1, 1, 2], [0, 0, 0, 0, 0, 0, 1], [0, 1, 0, 0, 0, 0, 0]])
    idx = np.array([36 + 24 + 6 + 3 + 2, 1, 12])
    np.testing.assert_array_equal(factors_to_index(f, SIZES), idx)
    out = ds.images(f)
    assert out.dtype == np.float32 and out.shape == (3, 3, 4, 4)
    np.testing.assert_array_equal(out, imgs[idx].transpose(0, 3, 1, 2) / np.float32(255))
    # every image round-trips through its factors
    allf = index_to_factors(np.arange(N), SIZES)
    np.testing.assert_array_equal(ds.uint8_images(allf), imgs.transpose(0, 3, 1, 2))
    # the memory-mapped cache was written beside the npz
    cached = np.load(tmp_path / "mpi3d_toy.images.npy", mmap_mode="r")
    assert isinstance(ds.array, np.memmap)
    np.testing.assert_array_equal(cached, imgs)


def test_registry_variants_and_subfolder(tmp_path):
    imgs = _images()
    _write(tmp_path / "mpi3d" / "mpi3d_real.npz", imgs)
    ds = load_dataset("mpi3d", source="file", root=tmp_path, variant="real", factor_sizes=SIZES)
    assert ds.name == "mpi3d" and ds.variant == "real"
    np.testing.assert_array_equal(ds.array, imgs)
    spec = get_spec("mpi3d")
    assert spec.factor_sizes == (6, 6, 2, 3, 3, 40, 40) and spec.n_images == 1_036_800
    assert {f.name: f.md5 for f in spec.files}[
        "mpi3d_toy.npz"
    ] == "55889cb7c7dfc655d6e0277beee88868"
    assert all(f.urls for f in spec.files)
    # the complex variant has its own grid and file name
    _write(tmp_path / "real3d_complicated_shapes_ordered.npz", imgs[:24])
    cx = load_dataset("mpi3d_real_complex", root=tmp_path, factor_sizes=(1, 4, 1, 1, 1, 2, 3))
    assert cx.name == "mpi3d_real_complex" and cx.level_names[1][0] == "coffee-cup"
    np.testing.assert_array_equal(cx.array, imgs[:24])
    assert get_spec("mpi3d_real_complex").n_images == 460_800


def test_official_sizes_are_checked_against_the_file(tmp_path):
    _write(tmp_path / "mpi3d_toy.npz", _images(10))
    with pytest.raises(DatasetError, match=r"mpi3d_toy\.npz.*10 images, expected 1036800"):
        load_mpi3d(root=tmp_path)
    assert not (tmp_path / "mpi3d_toy.images.npy").exists()  # failed before converting
    with pytest.raises(DatasetError, match=r"expected 7 = prod"):
        load_mpi3d(root=tmp_path, factor_sizes=(1, 1, 1, 1, 1, 1, 7))


def test_cache_is_reused_rebuilt_when_stale_and_survives_npz_removal(tmp_path):
    npz = tmp_path / "mpi3d_toy.npz"
    _write(npz, _images())
    load_mpi3d(root=tmp_path, factor_sizes=SIZES)
    npy = tmp_path / "mpi3d_toy.images.npy"
    first = npy.stat().st_mtime_ns
    load_mpi3d(root=tmp_path, factor_sizes=SIZES)
    assert npy.stat().st_mtime_ns == first  # not converted again
    new = _images()[::-1].copy()
    _write(npz, new)
    os.utime(npz, ns=(first + 10**9, first + 10**9))
    ds = load_mpi3d(root=tmp_path, factor_sizes=SIZES)
    np.testing.assert_array_equal(ds.array, new)  # rebuilt from the newer npz
    npz.unlink()
    ds = load_mpi3d(root=tmp_path, factor_sizes=SIZES)
    np.testing.assert_array_equal(ds.array, new)


def test_streamed_conversion_in_small_chunks(tmp_path):
    imgs = _images()
    _write(tmp_path / "a.npz", imgs, compressed=True)
    assert read_npz_member_header(tmp_path / "a.npz", "images") == (
        imgs.shape,
        np.dtype(np.uint8),
        False,
    )
    shape = convert_npz_member_to_npy(
        tmp_path / "a.npz", "images", tmp_path / "a.npy", chunk_bytes=7
    )
    assert shape == imgs.shape
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), imgs)


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match=r"mpi3d_toy\.npz not found"):
        load_mpi3d(root=tmp_path)
    with pytest.raises(DatasetError, match="variant"):
        load_mpi3d(root=tmp_path, variant="huge")
    with pytest.raises(DatasetError, match="factor_sizes"):
        load_mpi3d(root=tmp_path, factor_sizes=(2, 2))
    _write(tmp_path / "mpi3d_toy.npz", _images(), key="imgs")
    with pytest.raises(DatasetError, match=r"mpi3d_toy\.npz.*'images'.*\['imgs'\]"):
        load_mpi3d(root=tmp_path, factor_sizes=SIZES)
    _write(tmp_path / "mpi3d_toy.npz", _images()[..., 0])
    with pytest.raises(DatasetError, match=r"mpi3d_toy\.npz.*\(N, H, W, 3\)"):
        load_mpi3d(root=tmp_path, factor_sizes=SIZES)
    (tmp_path / "mpi3d_toy.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"mpi3d_toy\.npz.*not a readable"):
        load_mpi3d(root=tmp_path, factor_sizes=SIZES)


def test_truncated_member_is_reported(tmp_path):
    imgs = _images()
    header = np.lib.format.header_data_from_array_1_0(imgs)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    buf.write(imgs.tobytes()[:100])
    with zipfile.ZipFile(tmp_path / "mpi3d_toy.npz", "w") as zf:
        zf.writestr("images.npy", buf.getvalue())
    with pytest.raises(
        DatasetError, match=r"mpi3d_toy\.npz.*truncated: expected 3456 data bytes, got 100"
    ):
        load_mpi3d(root=tmp_path, factor_sizes=SIZES)
    assert not (tmp_path / "mpi3d_toy.images.npy").exists()  # no half-written cache
    assert not list(tmp_path.glob(".*.tmp"))
