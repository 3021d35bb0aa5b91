"""dSprites: renderer geometry and fidelity to the real frames, official-file loader, packed cache."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from vaelens.data import (
    check_dataset,
    factors_to_index,
    get_spec,
    index_to_factors,
    intervention_pairs,
    load_dataset,
)
from vaelens.data import dsprites as ds
from vaelens.errors import DatasetError

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GIF = SHARED / "data" / "dsprites.gif"
SMALL_SIZES = (3, 2, 2, 2, 2)  # a small factor grid for files written by the tests


# --------------------------------------------------------------------------- helpers


def _official_arrays(sizes=SMALL_SIZES, seed=0):
    """Arrays in the official layout for a grid of ``sizes`` (colour column first)."""
    n = int(np.prod(sizes))
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 2, size=(n, 64, 64), dtype=np.uint8)
    classes = np.zeros((n, 6), dtype=np.int64)
    classes[:, 1:] = index_to_factors(np.arange(n), sizes)
    values = classes.astype(np.float64)
    values[:, 0] = 1.0
    return imgs, classes, values


def _write_npz(path, imgs, classes, values, *, drop=None):
    arrays = {"imgs": imgs, "latents_classes": classes, "latents_values": values}
    if drop:
        arrays.pop(drop)
    # the official file carries a pickled metadata dict that the loader must skip
    meta = np.array(pickle.dumps({"title": "dSprites"}), dtype=object)
    np.savez_compressed(path, metadata=meta, **arrays)


def _write_hdf5(path, imgs, classes, values, **kw):
    with h5py.File(path, "w") as fh:
        fh.create_dataset("imgs", data=imgs, **kw)
        fh.create_dataset("latents_classes", data=classes)
        fh.create_dataset("latents_values", data=values)


def _walk():
    """Factors of the 320 frames of dsprites.gif: per shape (heart, ellipse, square) the
    scale goes up, down, up (18 frames) at posX = posY = 0, then orientation 0..39 at scale
    5; the heart then walks posY 0..31, posX 0..31, posY 31..0, posX 31..0 (128 frames);
    finally the scale goes down (6 frames). Verified below by fitting each frame."""
    rows = []
    up = list(range(6))
    for shape in (2, 1, 0):
        rows += [(shape, s, 0, 0, 0) for s in up + up[::-1] + up]
        rows += [(shape, 5, o, 0, 0) for o in range(40)]
        if shape == 2:
            rows += [(2, 5, 0, 0, y) for y in range(32)]
            rows += [(2, 5, 0, x, 31) for x in range(32)]
            rows += [(2, 5, 0, 31, y) for y in range(31, -1, -1)]
            rows += [(2, 5, 0, x, 0) for x in range(31, -1, -1)]
        rows += [(shape, s, 0, 0, 0) for s in up[::-1]]
    return np.array(rows, dtype=np.int64)


# --------------------------------------------------------------------------- renderer


def test_render_returns_binary_uint8_batch(rng):
    factors = np.concatenate(
        [
            rng.integers(0, ds.FACTOR_SIZES, size=(60, 5)),
            [[0, 5, 0, 0, 0], [2, 5, 17, 31, 31], [1, 5, 39, 31, 0], [0, 5, 5, 0, 31]],
        ]
    )
    out = ds.render_dsprites(factors)
    assert out.dtype == np.uint8 and out.shape == (64, 1, 64, 64)
    assert set(np.unique(out)) <= {0, 1}
    assert (out.reshape(64, -1).sum(1) > 40).all()  # every sprite is drawn
    # a single factor vector is a batch of one; an empty batch is empty
    np.testing.assert_array_equal(ds.render_dsprites(factors[0]), out[:1])
    assert ds.render_dsprites(np.zeros((0, 5), dtype=np.int64)).shape == (0, 1, 64, 64)


def test_windowed_render_equals_full_frame_render(rng):
    # the 32x32 tile around each centre must hold the whole sprite, at every extreme too
    extremes = np.array(
        [[s, 5, o, x, y] for s in range(3) for o in (0, 5, 15) for x in (0, 31) for y in (0, 31)]
    )
    factors = np.concatenate([extremes, rng.integers(0, ds.FACTOR_SIZES, size=(400, 5))])
    np.testing.assert_array_equal(
        ds.render_dsprites(factors), ds.render_dsprites(factors, window=64)
    )


def test_render_geometry_square_centre_and_orientation_period():
    big, small = ds.render_dsprites(np.array([[0, 5, 0, 0, 0], [0, 0, 0, 0, 0]]))[:, 0]
    # square of half-side 9.6 (scale 1) / 4.8 (scale 0.5) centred on (16, 16)
    rows, cols = np.nonzero(big)
    assert big.sum() == 400 and (rows.min(), rows.max(), cols.min(), cols.max()) == (6, 25, 6, 25)
    assert small.sum() == 100
    # index 0 and 39 are 0 and 2*pi: the same image
    f = np.array([[s, 3, o, 7, 20] for s in range(3) for o in (0, 39)])
    img = ds.render_dsprites(f)
    for k in range(3):
        np.testing.assert_array_equal(img[2 * k], img[2 * k + 1])


def test_render_axes_and_rotation_direction():
    heart = ds.render_dsprites(
        np.array([[2, 5, 0, 0, 0], [2, 5, 0, 31, 0], [2, 5, 0, 0, 31], [2, 5, 10, 0, 0]])
    )[:, 0]
    com = [np.argwhere(h).mean(0) for h in heart]  # (row, col) centres of mass
    assert com[1][1] - com[0][1] == pytest.approx(32, abs=0.01)  # posX grows to the right
    assert com[2][0] - com[0][0] == pytest.approx(32, abs=0.01)  # posY grows downwards
    # upright heart: lobes (mass) above the centre (row 16); after ~90 degrees
    # counter-clockwise (on screen) the lobes point left
    assert com[0][0] + 0.5 < 16 - 0.2 and abs(com[0][1] + 0.5 - 16) < 0.01
    assert com[3][1] + 0.5 < 16 - 0.2


@pytest.mark.parametrize(
    ("factors", "needle"),
    [
        (np.array([[0, 0, 0, 32, 0]]), "factors: factor 3 index 32"),
        (np.array([[3, 0, 0, 0, 0]]), "factors: factor 0 index 3"),
        (np.array([[0, -1, 0, 0, 0]]), "factors: factor 1 index -1"),
        (np.zeros((2, 4), dtype=np.int64), "factors: expected shape (N, 5)"),
        (np.array([[0, 0.5, 0, 0, 0]]), "factors: expected integer"),
    ],
)
def test_render_rejects_bad_factors(factors, needle):
    with pytest.raises(DatasetError, match=r"^" + needle.replace("(", r"\(").replace(")", r"\)")):
        ds.render_dsprites(factors)


# --------------------------------------------------------------------------- fidelity


@pytest.fixture(scope="module")
def gif_frames():
    if not GIF.is_file():
        pytest.skip(f"real dSprites frames not found at {GIF} (shared/ is not beside the repo)")
    from PIL import Image, ImageSequence

    with Image.open(GIF) as im:
        frames = np.stack([np.asarray(f.convert("L")) for f in ImageSequence.Iterator(im)])
    assert frames.shape == (320, 64, 64)
    return frames > 127


def test_gif_frame_factors_are_the_best_fit(gif_frames):
    """Each frame's listed factors explain it at least as well as every neighbouring level
    of every factor and every other shape (so the labels used below are right)."""
    labels = _walk()
    assert labels.shape == (320, 5)
    cand, owner = [labels], [np.arange(320)]
    for f in range(5):
        for step in (-1, 1):
            moved = labels.copy()
            moved[:, f] += step
            ok = (moved[:, f] >= 0) & (moved[:, f] < ds.FACTOR_SIZES[f])
            cand.append(moved[ok])
            owner.append(np.nonzero(ok)[0])
    for shift in (1, 2):
        moved = labels.copy()
        moved[:, 0] = (moved[:, 0] + shift) % 3
        cand.append(moved)
        owner.append(np.arange(320))
    cand_f, owner_i = np.concatenate(cand), np.concatenate(owner)
    err = (ds.render_dsprites(cand_f)[:, 0].astype(bool) != gif_frames[owner_i]).sum((1, 2))
    own_err = err[:320]
    best = np.full(320, np.iinfo(np.int64).max)
    np.minimum.at(best, owner_i[320:], err[320:])
    worse = np.nonzero(own_err > best)[0]
    assert worse.size == 0, f"frames {worse.tolist()} fit a neighbouring factor level better"


def test_renderer_matches_real_frames(gif_frames):
    """Mismatched pixels / on-pixels of the real frame, per frame, by shape."""
    labels = _walk()
    real = gif_frames
    mine = ds.render_dsprites(labels)[:, 0].astype(bool)
    mismatch = (mine != real).sum((1, 2)) / real.sum((1, 2))
    report = {}
    for k, name in enumerate(ds.SHAPE_NAMES):
        m = mismatch[labels[:, 0] == k]
        report[name] = (100 * m.mean(), 100 * m.max(), int(m.size))
    print("dSprites renderer vs dsprites.gif (mean %, worst %, frames):", report)
    assert 100 * mismatch.mean() <= 4.0, (
        f"mean mismatch over all frames {100 * mismatch.mean():.3f}%"
    )
    for name, (mean, worst, _) in report.items():
        assert mean <= 0.5, f"{name}: mean mismatch {mean:.3f}% > 0.5%"
        assert worst <= 4.0, f"{name}: worst frame mismatch {worst:.3f}% > 4%"


# --------------------------------------------------------------------------- official files


@pytest.mark.parametrize("fmt", ["npz", "hdf5"])
def test_reader_returns_official_arrays_exactly(tmp_path, fmt):
    imgs, classes, values = _official_arrays()
    path = tmp_path / f"small.{fmt}"
    (_write_npz if fmt == "npz" else _write_hdf5)(path, imgs, classes, values)
    got_imgs, got_classes = ds.read_dsprites_file(path, factor_sizes=SMALL_SIZES)
    assert got_imgs.dtype == np.uint8
    np.testing.assert_array_equal(got_imgs, imgs)
    np.testing.assert_array_equal(got_classes, classes[:, 1:])
    assert got_classes.dtype == np.int64


def test_file_source_finds_and_validates_the_official_file(tmp_path):
    """The official name under the data cache is found by "file" and "auto" and validated
    (a wrong file is an error, not a silent fall-back to the renderer)."""
    folder = tmp_path / "dsprites"
    folder.mkdir()
    _write_npz(folder / ds.NPZ_NAME, *_official_arrays())  # right layout, too few rows
    for source in ("file", "auto"):
        with pytest.raises(
            DatasetError,
            match=r"64x64\.npz: 'imgs' is uint8 \(48, 64, 64\), expected uint8 \(737280, 64, 64\)",
        ):
            load_dataset("dsprites", source=source, root=tmp_path)


def test_array_dataset_serves_uint8_rows_in_file_order():
    picks = np.array([[0, 0, 0, 0, 0], [2, 5, 17, 31, 31], [1, 3, 9, 12, 4]])
    imgs = np.zeros((ds.N_IMAGES, 64, 64), dtype=np.uint8)  # pages stay untouched
    imgs[factors_to_index(picks, ds.FACTOR_SIZES)] = ds.render_dsprites(picks)[:, 0]
    data = ds.DSpritesArray(imgs)
    check_dataset(data)
    assert data.source == "file" and data.pixel_max == 1 and data.image_shape == (1, 64, 64)
    assert data.shape_names == ("square", "ellipse", "heart")
    np.testing.assert_array_equal(data.uint8_images(picks[::-1]), ds.render_dsprites(picks[::-1]))
    x = data.images(picks)
    assert x.dtype == np.float32 and x.max() == 1.0
    with pytest.raises(DatasetError, match=r"dsprites: images array has 10 rows, expected 737280"):
        ds.DSpritesArray(imgs[:10])


def test_truncated_npz_names_the_file(tmp_path):
    path = tmp_path / "dsprites_cut.npz"
    _write_npz(path, *_official_arrays())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"dsprites_cut\.npz: cannot read .*truncated"):
        ds.read_dsprites_file(path, factor_sizes=SMALL_SIZES)


def test_corrupted_npz_names_the_file(tmp_path):
    imgs, classes, values = _official_arrays()
    path = tmp_path / "dsprites_bad.npz"
    np.savez(path, imgs=imgs, latents_classes=classes, latents_values=values)  # stored, CRC'd
    raw = bytearray(path.read_bytes())
    mid = raw.index(b"latents_classes") - 5000  # inside the imgs member's data
    raw[mid : mid + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"dsprites_bad\.npz: cannot read"):
        ds.read_dsprites_file(path, factor_sizes=SMALL_SIZES)


def test_truncated_hdf5_names_the_file(tmp_path):
    path = tmp_path / "dsprites_cut.hdf5"
    _write_hdf5(path, *_official_arrays())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DatasetError, match=r"dsprites_cut\.hdf5: cannot read"):
        ds.read_dsprites_file(path, factor_sizes=SMALL_SIZES)


@pytest.mark.parametrize("key", ["imgs", "latents_classes", "latents_values"])
def test_missing_key_is_named(tmp_path, key):
    path = tmp_path / "d.npz"
    _write_npz(path, *_official_arrays(), drop=key)
    with pytest.raises(DatasetError, match=rf"d\.npz: missing array '{key}'"):
        ds.read_dsprites_file(path, factor_sizes=SMALL_SIZES)


def _mutations():
    def float_imgs(a):
        a[0] = a[0].astype(np.float32)

    def bad_shape(a):
        a[0] = a[0][:, :32, :]

    def grey_values(a):
        a[0] = a[0] * 255

    def few_rows(a):
        a[1] = a[1][:-1]

    def float_classes(a):
        a[1] = a[1].astype(np.float64)

    def int_values(a):
        a[2] = a[2].astype(np.int64)

    def colour(a):
        a[1][3, 0] = 1

    def order(a):
        a[1][[4, 5]] = a[1][[5, 4]]

    return [
        (float_imgs, r"'imgs' is float32 .*expected uint8 \(48, 64, 64\)"),
        (bad_shape, r"'imgs' is uint8 \(48, 32, 64\), expected uint8 \(48, 64, 64\)"),
        (grey_values, r"'imgs' has values up to 255, expected 0/1"),
        (few_rows, r"'latents_classes' is int64 \(47, 6\), expected integers \(48, 6\)"),
        (float_classes, r"'latents_classes' is float64"),
        (int_values, r"'latents_values' is int64 \(48, 6\), expected floats"),
        (colour, r"'latents_classes' column 0 \(colour\) must be all 0"),
        (order, r"'latents_classes' row 4 is .*flat-index order"),
    ]


@pytest.mark.parametrize(("mutate", "needle"), _mutations())
def test_malformed_arrays_are_rejected_with_the_field_named(tmp_path, mutate, needle):
    arrays = list(_official_arrays())
    mutate(arrays)
    path = tmp_path / "odd.npz"
    _write_npz(path, *arrays)
    with pytest.raises(DatasetError, match=r"odd\.npz: " + needle):
        ds.read_dsprites_file(path, factor_sizes=SMALL_SIZES)


def test_reader_rejects_wrong_suffix_and_missing_file(tmp_path):
    with pytest.raises(DatasetError, match=r"x\.txt: expected a \.npz or \.hdf5"):
        ds.read_dsprites_file(tmp_path / "x.txt")
    with pytest.raises(DatasetError, match=r"gone\.npz: file not found"):
        ds.read_dsprites_file(tmp_path / "gone.npz")


# --------------------------------------------------------------------------- sources


def test_registry_spec_and_procedural_dataset(rng):
    spec = get_spec("dsprites")
    assert spec.sources == ("procedural", "file", "cache")
    assert spec.files[0].name == ds.NPZ_NAME
    assert spec.files[0].md5 == "7da33b31b13a06f4b04a70402ce90c2e"
    assert all("google-deepmind/dsprites-dataset" in u for u in spec.files[0].urls)
    assert spec.n_images == 737280

    data = load_dataset("dsprites", source="procedural")
    check_dataset(data)
    assert data.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert [len(v) for v in data.factor_values] == [3, 6, 40, 32, 32]
    assert data.factor_values[2][-1] == pytest.approx(2 * np.pi)
    assert data.pixel_max == 1 and data.image_shape == (1, 64, 64)
    f = data.sample_factors(500, np.random.default_rng(3))
    np.testing.assert_array_equal(f, data.sample_factors(500, np.random.default_rng(3)))
    assert f.shape == (500, 5) and (f.min(0) == 0).all()
    assert (f.max(0) == np.array(ds.FACTOR_SIZES) - 1).all()
    x = data.images(f[:16])
    assert x.dtype == np.float32 and x.shape == (16, 1, 64, 64)
    np.testing.assert_array_equal(x, data.uint8_images(f[:16]))
    np.testing.assert_array_equal(
        data.uint8_at(factors_to_index(f[:16], ds.FACTOR_SIZES)), data.uint8_images(f[:16])
    )
    base, changed = intervention_pairs(data, "scale", 32, rng)
    assert (base[:, 1] != changed[:, 1]).all()
    np.testing.assert_array_equal(np.delete(base, 1, 1), np.delete(changed, 1, 1))


def test_auto_without_files_is_procedural_and_file_source_says_what_is_missing(tmp_path):
    assert load_dataset("dsprites", source="auto", root=tmp_path).source == "procedural"
    with pytest.raises(DatasetError, match=r"neither .*\.npz nor .*\.hdf5 found in .*dsprites"):
        load_dataset("dsprites", source="file", root=tmp_path)


def test_unknown_source_and_option_are_named():
    with pytest.raises(DatasetError, match=r"^source: .*'disk'"):
        load_dataset("dsprites", source="disk")
    with pytest.raises(DatasetError, match=r"^source: dsprites supports .*'disk'"):
        ds.load_dsprites(source="disk")
    with pytest.raises(DatasetError, match=r"unknown options \['variant'\]"):
        ds.load_dsprites(source="procedural", variant="toy")


# --------------------------------------------------------------------------- packed cache


def test_partial_cache_rows_are_packed_renders(tmp_path):
    n = 2100  # shape 0, scale 0, orientations 0-2, over three chunks
    path = ds.build_dsprites_cache(tmp_path, chunk=1000, n_limit=n)
    assert path.parent == tmp_path / "dsprites"
    assert path.stat().st_size == 128 + n * ds.PACKED_ROW_BYTES
    packed = np.load(path, mmap_mode="r")
    assert packed.dtype == np.uint8 and packed.shape == (n, 512)
    want = ds.render_dsprites(index_to_factors(np.arange(n), ds.FACTOR_SIZES))
    np.testing.assert_array_equal(np.unpackbits(packed, axis=1).reshape(want.shape), want)
    mtime = path.stat().st_mtime_ns
    heard: list[tuple[str, int, int]] = []
    again = ds.build_dsprites_cache(
        tmp_path, chunk=1000, n_limit=n, progress=lambda *a: heard.append(a)
    )
    assert again == path and path.stat().st_mtime_ns == mtime  # reused
    assert heard == [("done", n, n)]
    with pytest.raises(DatasetError, match=r"n_limit: expected an int in \[1, 737280\]"):
        ds.build_dsprites_cache(tmp_path, n_limit=0)
    with pytest.raises(DatasetError, match=r"chunk: expected a positive int"):
        ds.build_dsprites_cache(tmp_path, chunk=0)


def test_cache_build_tells_progress_per_chunk(tmp_path):
    heard: list[tuple[str, int, int]] = []
    ds.build_dsprites_cache(tmp_path, chunk=1000, n_limit=2100, progress=lambda *a: heard.append(a))
    assert heard == [("render", 0, 2100), ("render", 1000, 2100), ("render", 2000, 2100),
                     ("done", 2100, 2100)]  # fmt: skip


def test_full_size_cache_header_and_size():
    buf = io.BytesIO()
    ds._write_cache_header(buf, ds.N_IMAGES)
    assert buf.tell() == 128
    assert ds.N_IMAGES * ds.PACKED_ROW_BYTES == 377_487_360  # + 128 header bytes on disk


def _sparse_full_cache(root, fill):
    """A full-size cache file (sparse on disk) with only the rows ``fill`` written."""
    path = root / "dsprites" / ds.CACHE_NAME
    path.parent.mkdir(parents=True)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(ds.N_IMAGES, 512))
    if len(fill):
        imgs = ds.render_dsprites(index_to_factors(fill, ds.FACTOR_SIZES))
        mm[fill] = np.packbits(imgs.reshape(len(fill), -1), axis=1)
    mm.flush()
    del mm
    return path


def test_cache_source_memory_maps_and_unpacks(tmp_path, rng):
    picks = rng.integers(0, ds.N_IMAGES, size=40)
    path = _sparse_full_cache(tmp_path, np.union1d(picks, ds._CACHE_CHECK_INDEX))
    assert os.path.getsize(path) == 128 + 377_487_360
    data = load_dataset("dsprites", source="cache", root=tmp_path, build_cache=False)
    assert isinstance(data, ds.DSpritesPacked) and data.source == "cache"
    assert isinstance(data.packed, np.memmap)
    assert data.image_shape == (1, 64, 64) and data.pixel_max == 1 and len(data) == ds.N_IMAGES
    factors = index_to_factors(picks[::-1], ds.FACTOR_SIZES)  # unsorted, on purpose
    want = ds.render_dsprites(factors)
    np.testing.assert_array_equal(data.uint8_images(factors), want)
    np.testing.assert_array_equal(data.images(factors), want.astype(np.float32))
    with pytest.raises(DatasetError, match=r"^factors: factor 4 index 32"):
        data.images(np.array([[0, 0, 0, 0, 32]]))


def test_stale_or_wrong_cache_is_rejected(tmp_path):
    path = _sparse_full_cache(tmp_path, np.array([], dtype=np.int64))  # all rows blank
    with pytest.raises(DatasetError, match=r"packbits\.npy: cache rows differ .*stale"):
        ds.open_dsprites_cache(path)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((10, 512), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"wrong\.npy: cache array is uint8 \(10, 512\)"):
        ds.open_dsprites_cache(wrong)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not a numpy file")
    with pytest.raises(DatasetError, match=r"junk\.npy: cannot read the dSprites cache"):
        ds.open_dsprites_cache(junk)
    with pytest.raises(DatasetError, match=r"dSprites cache not found"):
        load_dataset("dsprites", source="cache", root=tmp_path / "empty", build_cache=False)
