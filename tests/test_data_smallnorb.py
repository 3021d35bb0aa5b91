"""SmallNORB loader: tiny files in the NORB binary .mat format (plain and gzipped)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from vaelens.data import get_spec, load_dataset
from vaelens.data.smallnorb import (
    NORB_MAGIC,
    SMALLNORB_FILES,
    load_smallnorb,
    read_norb_mat,
    write_norb_mat,
)
from vaelens.errors import DatasetError

TRAIN = SMALLNORB_FILES["training"]
TEST = SMALLNORB_FILES["testing"]

# rows: category, instance, elevation, azimuth (0..34 even), lighting
TRAIN_ROWS = np.array(
    [
        [0, 4, 0, 0, 0],
        [0, 4, 1, 2, 3],
        [1, 6, 8, 34, 5],
        [2, 7, 3, 10, 1],
        [4, 9, 5, 20, 2],
        [3, 8, 2, 4, 0],
    ]
)
TEST_ROWS = np.array([[0, 1, 0, 0, 0], [1, 0, 8, 34, 5], [2, 3, 3, 10, 1], [4, 5, 6, 6, 4]])


def _dat(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 2, 96, 96), dtype=np.uint8)


def _write_split(root, stem, rows, dat, gz):
    ext = ".mat.gz" if gz else ".mat"
    write_norb_mat(root / f"{stem}-dat{ext}", dat)
    write_norb_mat(root / f"{stem}-cat{ext}", rows[:, 0].astype(np.int32))
    write_norb_mat(root / f"{stem}-info{ext}", rows[:, 1:].astype(np.int32))


@pytest.fixture
def norb_root(tmp_path):
    dats = (_dat(len(TRAIN_ROWS), 1), _dat(len(TEST_ROWS), 2))
    _write_split(tmp_path, TRAIN, TRAIN_ROWS, dats[0], gz=True)
    _write_split(tmp_path, TEST, TEST_ROWS, dats[1], gz=False)
    return tmp_path, dats


def test_header_layout_matches_the_format(tmp_path):
    """A 1-d int32 matrix: magic, ndim=1, then three dims (unused ones 1), data at byte 20."""
    cat = np.array([3, -1, 7], dtype=np.int32)
    write_norb_mat(tmp_path / "c.mat", cat)
    expected = struct.pack("<5i", 0x1E3D4C54, 1, 3, 1, 1) + struct.pack("<3i", 3, -1, 7)
    assert (tmp_path / "c.mat").read_bytes() == expected
    # a 4-d uint8 matrix has 4 dims in the header and data at byte 8 + 16
    raw = struct.pack("<6i", 0x1E3D4C55, 4, 1, 2, 1, 2) + bytes([1, 2, 3, 4])
    (tmp_path / "d.mat").write_bytes(raw)
    np.testing.assert_array_equal(read_norb_mat(tmp_path / "d.mat"), [[[[1, 2]], [[3, 4]]]])
    # gzip is detected by content, not by the suffix
    (tmp_path / "d.bin").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_norb_mat(tmp_path / "d.bin"), [[[[1, 2]], [[3, 4]]]])


@pytest.mark.parametrize("magic", sorted(NORB_MAGIC))
@pytest.mark.parametrize("suffix", [".mat", ".mat.gz"])
def test_every_magic_type_round_trips(tmp_path, magic, suffix):
    dtype = NORB_MAGIC[magic]
    arr = (
        np.arange(2 * 3 * 5 * 7).reshape(2, 3, 5, 7) % 120 - (0 if dtype.kind == "u" else 50)
    ).astype(dtype)
    path = tmp_path / f"m{suffix}"
    write_norb_mat(path, arr)
    raw = gzip.decompress(path.read_bytes()) if suffix.endswith(".gz") else path.read_bytes()
    assert struct.unpack("<2i", raw[:8]) == (magic, 4)
    out = read_norb_mat(path)
    assert out.dtype == dtype.newbyteorder("=") and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)


def test_malformed_matrices_name_the_file(tmp_path):
    write_norb_mat(tmp_path / "x.mat", np.zeros((10, 2, 3), np.uint8))
    raw = (tmp_path / "x.mat").read_bytes()
    (tmp_path / "x.mat").write_bytes(raw[:-5])
    with pytest.raises(DatasetError, match=r"x\.mat: truncated: expected 80 bytes .* got 75"):
        read_norb_mat(tmp_path / "x.mat")
    (tmp_path / "x.mat").write_bytes(raw + b"\0")
    with pytest.raises(DatasetError, match=r"x\.mat: has trailing bytes"):
        read_norb_mat(tmp_path / "x.mat")
    (tmp_path / "y.mat").write_bytes(struct.pack("<5i", 0x12345678, 1, 1, 1, 1) + b"\0")
    with pytest.raises(DatasetError, match=r"y\.mat: unknown magic 0x12345678"):
        read_norb_mat(tmp_path / "y.mat")
    (tmp_path / "z.mat").write_bytes(b"\x55\x4c")
    with pytest.raises(DatasetError, match=r"z\.mat: truncated: expected at least 8"):
        read_norb_mat(tmp_path / "z.mat")
    (tmp_path / "g.mat.gz").write_bytes(gzip.compress(raw)[:-12])
    with pytest.raises(DatasetError, match=r"g\.mat\.gz: truncated or corrupt gzip"):
        read_norb_mat(tmp_path / "g.mat.gz")
    with pytest.raises(DatasetError, match="no NORB magic"):
        write_norb_mat(tmp_path / "w.mat", np.zeros(3, np.int64))


def test_loader_joins_splits_keeps_left_image_and_resizes(norb_root):
    root, (dat_tr, dat_te) = norb_root
    ds = load_smallnorb(root=root)
    rows = np.concatenate([TRAIN_ROWS, TEST_ROWS])
    assert len(ds) == 10 and ds.image_shape == (1, 64, 64)
    assert ds.factor_names == ("category", "elevation", "azimuth", "lighting")
    np.testing.assert_array_equal(
        ds.labels, np.stack([rows[:, 0], rows[:, 2], rows[:, 3] // 2, rows[:, 4]], 1)
    )
    np.testing.assert_array_equal(ds.instance, rows[:, 1])
    np.testing.assert_array_equal(ds.split, [0] * 6 + [1] * 4)
    left = np.concatenate([dat_tr[:, 0], dat_te[:, 0]])
    expected = np.stack(
        [np.asarray(Image.fromarray(x).resize((64, 64), Image.Resampling.LANCZOS)) for x in left]
    )
    np.testing.assert_array_equal(ds.array, expected)
    # images(factors) of row 4 (car, elevation 5, azimuth 20 -> index 10, lighting 2)
    out = ds.images(np.array([[4, 5, 10, 2]]))
    assert out.dtype == np.float32 and out.shape == (1, 1, 64, 64)
    np.testing.assert_array_equal(out[0, 0], expected[4] / np.float32(255))
    assert ds.factor_values[1][5] == 55.0 and ds.factor_values[2][10] == 200.0
    # the cache is written once and memory-mapped afterwards
    npy = root / "smallnorb_training+testing_64.npy"
    stamp = npy.stat().st_mtime_ns
    again = load_dataset("smallnorb", root=root)
    assert isinstance(again.array, np.memmap) and npy.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.array, expected)


def test_instance_rules(norb_root):
    root, (dat_tr, _) = norb_root
    ds = load_smallnorb(root=root, image_size=96)
    np.testing.assert_array_equal(ds.array[:6], dat_tr[:, 0])  # no resize at 96: exact bytes
    # (animal, elev 0, azimuth 0, light 0) exists as instance 4 (train row 0) and 1 (test row 0)
    f = np.array([[0, 0, 0, 0], [1, 8, 17, 5]])
    np.testing.assert_array_equal(ds.index_of(f), [6, 7])  # "first": lowest instance
    np.testing.assert_array_equal(ds.index_of(f, instance=np.array([4, 6])), [0, 2])
    np.testing.assert_array_equal(
        ds.images(f[:1], instance=np.array([4]))[0, 0], dat_tr[0, 0] / np.float32(255)
    )
    rnd = load_smallnorb(root=root, image_size=96, instance_rule="random", seed=3)
    picks = {int(rnd.index_of(f[:1])[0]) for _ in range(40)}
    assert picks == {0, 6}
    with pytest.raises(DatasetError, match=r"row 0 \[3, 0, 0, 0\] matches no SmallNORB image"):
        ds.images(np.array([[3, 0, 0, 0]]))
    with pytest.raises(DatasetError, match="instance 5"):
        ds.index_of(f[:1], instance=np.array([5]))
    with pytest.raises(DatasetError, match="instance_rule"):
        load_smallnorb(root=root, instance_rule="nearest")
    drawn = ds.sample_factors(50, np.random.default_rng(0))
    assert drawn.shape == (50, 4)
    assert {tuple(r) for r in drawn} <= {tuple(r) for r in ds.labels}
    assert len({tuple(r) for r in drawn}) > 4


def test_single_split_and_spec(norb_root):
    root, _ = norb_root
    ds = load_smallnorb(root=root, splits=("testing",), image_size=32)
    assert len(ds) == 4 and ds.image_shape == (1, 32, 32)
    spec = get_spec("smallnorb")
    assert spec.factor_sizes == (5, 9, 18, 6) and spec.image_shape == (1, 64, 64)
    assert len(spec.files) == 6 and all(f.name.endswith(".mat.gz") and f.urls for f in spec.files)
    with pytest.raises(DatasetError, match="splits"):
        load_smallnorb(root=root, splits=("validation",))


def test_bad_split_files_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match=r"training-dat\.mat\(\.gz\) not found"):
        load_smallnorb(root=tmp_path)
    rows = TRAIN_ROWS.copy()
    rows[2, 3] = 3  # odd azimuth
    _write_split(tmp_path, TRAIN, rows, _dat(6, 0), gz=False)
    _write_split(tmp_path, TEST, TEST_ROWS, _dat(4, 0), gz=False)
    with pytest.raises(DatasetError, match=r"training-info\.mat: azimuth of row 2 is 3"):
        load_smallnorb(root=tmp_path)
    _write_split(tmp_path, TRAIN, TRAIN_ROWS, _dat(5, 0), gz=False)
    with pytest.raises(
        DatasetError, match=r"training-dat\.mat: has 5 image pairs, but the label files have 6"
    ):
        load_smallnorb(root=tmp_path)
    write_norb_mat(tmp_path / f"{TRAIN}-cat.mat", TRAIN_ROWS[:5, 0].astype(np.int32))
    with pytest.raises(
        DatasetError, match=r"training-info\.mat: has 6 rows, but .*training-cat\.mat has 5"
    ):
        load_smallnorb(root=tmp_path)
    write_norb_mat(tmp_path / f"{TRAIN}-cat.mat", np.full(6, 7, np.int32))
    with pytest.raises(DatasetError, match=r"training-cat\.mat: category of row 0 is 7"):
        load_smallnorb(root=tmp_path)
    raw = (tmp_path / f"{TEST}-dat.mat").read_bytes()
    (tmp_path / f"{TEST}-dat.mat").write_bytes(raw[:1000])
    write_norb_mat(tmp_path / f"{TRAIN}-cat.mat", TRAIN_ROWS[:, 0].astype(np.int32))
    write_norb_mat(tmp_path / f"{TRAIN}-dat.mat", _dat(6, 0))
    with pytest.raises(DatasetError, match=r"testing-dat\.mat: truncated: expected 73752 bytes"):
        load_smallnorb(root=tmp_path)
