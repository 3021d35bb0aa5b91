"""3DShapes: the official-file loader (tiny h5 files written here) and the procedural renderer.

Files use the official layout (``images`` (N, 64, 64, 3) uint8, ``labels`` (N, 6) float64,
orientation fastest) on a small grid whose factors keep their first levels
(``factor_sizes=`` keyword of the loader).
"""

from __future__ import annotations

import colorsys
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from vaelens.data import check_dataset, get_spec, index_to_factors, load_dataset
from vaelens.data.shapes3d import (
    SHAPES3D_FACTOR_NAMES,
    SHAPES3D_FACTOR_SIZES,
    Shapes3D,
    Shapes3DFile,
    hue_to_rgb,
    load_shapes3d,
    open_shapes3d_h5,
    render_shapes3d,
    shapes3d_factor_values,
)
from vaelens.errors import DatasetError

SIZES = (2, 2, 1, 2, 2, 3)  # 48 images
N = int(np.prod(SIZES))


def _labels(sizes: tuple[int, ...]) -> np.ndarray:
    factors = index_to_factors(np.arange(int(np.prod(sizes))), sizes)
    values = shapes3d_factor_values(sizes)
    return np.stack([values[f][factors[:, f]] for f in range(6)], axis=1)


def _write(
    path: Path,
    images: np.ndarray | bool | None = None,
    labels: np.ndarray | bool | None = None,
) -> Path:
    """A tiny 3dshapes.h5 in the official layout; random images unless given, none if False."""
    if images is None:
        images = np.random.default_rng(1).integers(0, 256, size=(N, 64, 64, 3), dtype=np.uint8)
    if labels is None:
        labels = _labels(SIZES)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        if images is not False:
            fh["images"] = images
        if labels is not False:
            fh["labels"] = labels
    return path


def _hue(rgb: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*(np.asarray(rgb, dtype=np.float64) / 255.0))[0]


def _hue_distance(a: float, b: float) -> float:
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)


# --------------------------------------------------------------------------- official file


def test_file_is_read_back_exactly(tmp_path: Path) -> None:
    images = np.random.default_rng(2).integers(0, 256, size=(N, 64, 64, 3), dtype=np.uint8)
    _write(tmp_path / "shapes3d" / "3dshapes.h5", images)
    ds = load_dataset("shapes3d", source="file", root=tmp_path, factor_sizes=SIZES)
    assert isinstance(ds, Shapes3DFile) and check_dataset(ds) is ds
    assert ds.factor_names == SHAPES3D_FACTOR_NAMES and ds.factor_sizes == SIZES
    assert ds.image_shape == (3, 64, 64) and ds.pixel_max == 255 and len(ds) == N
    np.testing.assert_allclose(ds.factor_values[3], np.linspace(0.75, 1.25, 8)[:2])
    np.testing.assert_allclose(
        ds.factor_values[5], [-30.0, -25.714285714285715, -21.428571428571427]
    )
    # unsorted indices with repeats, as sample_factors gives them
    index = np.array([47, 3, 3, 0, 20, 47, 11])
    factors = index_to_factors(index, SIZES)
    got = ds.uint8_images(factors)
    assert got.dtype == np.uint8 and got.shape == (7, 3, 64, 64)
    np.testing.assert_array_equal(got, images[index].transpose(0, 3, 1, 2))
    floats = ds.images(factors)
    assert floats.dtype == np.float32
    np.testing.assert_array_equal(floats, got.astype(np.float32) / 255.0)
    # the flat index follows the official order: orientation fastest, floor_hue slowest
    np.testing.assert_array_equal(
        ds.uint8_images([[0, 0, 0, 0, 0, 1]])[0], images[1].transpose(2, 0, 1)
    )
    np.testing.assert_array_equal(
        ds.uint8_images([[1, 0, 0, 0, 0, 0]])[0], images[24].transpose(2, 0, 1)
    )
    # pickles (DataLoader workers) and reopens the file lazily
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.uint8_images(factors), got)
    ds.close()
    np.testing.assert_array_equal(ds.uint8_at(np.array([5])), images[[5]].transpose(0, 3, 1, 2))
    with pytest.raises(DatasetError, match="out of range"):
        ds.uint8_images([[0, 0, 1, 0, 0, 0]])  # object_hue has one level in this grid


def test_rendered_file_matches_the_renderer(tmp_path: Path) -> None:
    factors = index_to_factors(np.arange(N), SIZES)
    rendered = render_shapes3d(factors)
    path = _write(tmp_path / "3dshapes.h5", rendered.transpose(0, 2, 3, 1))
    ds = open_shapes3d_h5(path, factor_sizes=SIZES)
    np.testing.assert_array_equal(ds.uint8_images(factors[::5]), rendered[::5])


def test_auto_source_prefers_the_file(tmp_path: Path) -> None:
    assert isinstance(load_dataset("shapes3d", source="auto", root=tmp_path), Shapes3D)
    with pytest.raises(DatasetError, match=r"3dshapes\.h5 not found"):
        load_dataset("shapes3d", source="file", root=tmp_path)
    _write(tmp_path / "3dshapes.h5")
    assert isinstance(load_dataset("shapes3d", root=tmp_path, factor_sizes=SIZES), Shapes3DFile)
    assert isinstance(load_dataset("shapes3d", source="procedural", root=tmp_path), Shapes3D)
    with pytest.raises(DatasetError, match="image_size"):
        load_dataset("shapes3d", root=tmp_path, factor_sizes=SIZES, image_size=32)
    spec = get_spec("shapes3d")
    assert spec.sources == ("procedural", "file") and spec.factor_sizes == SHAPES3D_FACTOR_SIZES
    assert spec.files[0].name == "3dshapes.h5"
    assert spec.files[0].md5 == "099a2078d58cec4daad0702c55d06868"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"labels": False}, "missing dataset 'labels'"),
        ({"images": False}, "missing dataset 'images'"),
        ({"images": np.zeros((N, 64, 64, 3), np.float32)}, "'images' is float32 .* expected uint8"),
        ({"images": np.zeros((N, 3, 64, 64), np.uint8)}, r"expected uint8 \(48, 64, 64, 3\)"),
        ({"images": np.zeros((N - 1, 64, 64, 3), np.uint8)}, r"expected uint8 \(48, 64, 64, 3\)"),
        ({"labels": _labels(SIZES).astype(np.int64)}, "'labels' is int64 .* expected float64"),
        ({"labels": _labels(SIZES)[:, :5]}, r"expected float64 \(48, 6\)"),
        # rows in another order (orientation slowest): labels disagree with the flat index
        (
            {
                "labels": _labels(SIZES)
                .reshape(*SIZES, 6)
                .transpose(5, 0, 1, 2, 3, 4, 6)
                .reshape(N, 6)
            },
            r"labels\[1, 4\] \(shape\) is 1.0, expected 0.0: .* flat-index order",
        ),
        ({"labels": _labels(SIZES) * np.array([1, 1, 1, 2, 1, 1])}, r"\(scale\) is 1.5"),
    ],
)
def test_malformed_file_raises_one_clear_error(tmp_path: Path, kwargs: dict, match: str) -> None:
    path = _write(tmp_path / "3dshapes.h5", **kwargs)
    with pytest.raises(DatasetError, match=match) as info:
        open_shapes3d_h5(path, factor_sizes=SIZES)
    assert str(path) in str(info.value)


def test_truncated_or_garbage_file_raises(tmp_path: Path) -> None:
    path = _write(tmp_path / "3dshapes.h5")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"3dshapes\.h5: cannot be read as HDF5 .*truncated"):
        open_shapes3d_h5(path, factor_sizes=SIZES)
    path.write_bytes(b"not an hdf5 file" * 100)
    with pytest.raises(DatasetError, match="cannot be read as HDF5"):
        load_dataset("shapes3d", root=tmp_path, factor_sizes=SIZES)
    with pytest.raises(DatasetError, match="file not found"):
        open_shapes3d_h5(tmp_path / "absent.h5")


def test_bad_arguments_raise() -> None:
    with pytest.raises(DatasetError, match="factor_sizes"):
        shapes3d_factor_values((11, 10, 10, 8, 4, 15))
    with pytest.raises(DatasetError, match="factor_sizes"):
        shapes3d_factor_values((2, 2))
    with pytest.raises(DatasetError, match="source"):
        load_shapes3d(source="web")
    with pytest.raises(DatasetError, match="full grid"):
        load_shapes3d(source="procedural", factor_sizes=SIZES)
    with pytest.raises(DatasetError, match="image_size"):
        Shapes3D(image_size=0)


# --------------------------------------------------------------------------- renderer


def test_factor_values_are_the_real_labels() -> None:
    values = shapes3d_factor_values()
    assert [v.shape[0] for v in values] == list(SHAPES3D_FACTOR_SIZES)
    for hue in values[:3]:
        np.testing.assert_allclose(hue, np.arange(10) / 10)
    np.testing.assert_allclose(values[3], np.linspace(0.75, 1.25, 8))
    np.testing.assert_array_equal(values[4], [0, 1, 2, 3])
    np.testing.assert_allclose(values[5], np.linspace(-30, 30, 15))
    np.testing.assert_allclose(
        hue_to_rgb(np.array([0.0, 0.6, 1 / 3])), [[1, 0, 0], [0, 0.4, 1], [0, 1, 0]], atol=1e-12
    )


def test_render_is_deterministic_and_batch_independent() -> None:
    ds = load_dataset("shapes3d", source="procedural")
    factors = ds.sample_factors(12, np.random.default_rng(0))
    assert factors.min() >= 0 and (factors.max(axis=0) < np.array(SHAPES3D_FACTOR_SIZES)).all()
    a = ds.uint8_images(factors)
    assert a.shape == (12, 3, 64, 64) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, render_shapes3d(factors))
    # one image alone, or in a batch of other shapes, or in small chunks: the same bytes
    np.testing.assert_array_equal(render_shapes3d(factors[3:4])[0], a[3])
    np.testing.assert_array_equal(render_shapes3d(factors, chunk=5), a)
    np.testing.assert_array_equal(ds.images(factors), a.astype(np.float32) / 255)
    assert render_shapes3d(factors[:2], image_size=32, supersample=1).shape == (2, 3, 32, 32)


def test_every_factor_level_changes_the_image() -> None:
    base = np.array([1, 2, 3, 4, 1, 5])
    sweeps = []
    for f, size in enumerate(SHAPES3D_FACTOR_SIZES):
        rows = np.repeat(base[None], size, axis=0)
        rows[:, f] = np.arange(size)
        sweeps.append(rows)
    images = render_shapes3d(np.concatenate(sweeps)).astype(np.int16)
    start = 0
    for f, size in enumerate(SHAPES3D_FACTOR_SIZES):
        block = images[start : start + size].reshape(size, -1)
        start += size
        for i in range(size):
            for j in range(i + 1, size):
                changed = np.count_nonzero(block[i] != block[j])
                assert changed >= 20, (SHAPES3D_FACTOR_NAMES[f], i, j, changed)


def test_hues_of_floor_wall_and_object() -> None:
    # cube at scale 1.25 seen head-on (orientation 0 degrees); three different hues per image
    k = np.arange(10)
    factors = np.stack(
        [k, (k + 3) % 10, (k + 6) % 10, np.full(10, 7), np.zeros(10, int), np.full(10, 7)], 1
    )
    images = render_shapes3d(factors).transpose(0, 2, 3, 1)
    hues = np.arange(10) / 10
    regions = {
        0: (slice(57, 64), slice(0, 8)),  # floor, lower left (lit, away from the shadow)
        1: (slice(20, 30), slice(0, 8)),  # back wall, left
        2: (slice(40, 50), slice(28, 36)),  # the cube's front face
    }
    for img, fac in zip(images, factors, strict=True):
        for f, (rows, cols) in regions.items():
            patch = img[rows, cols].reshape(-1, 3)
            hue = _hue(patch.mean(axis=0))
            assert _hue_distance(hue, hues[fac[f]]) < 0.02, (SHAPES3D_FACTOR_NAMES[f], fac, hue)
            sat = (patch.max(1) - patch.min(1)) / np.maximum(patch.max(1), 1)
            assert sat.min() > 0.95
        np.testing.assert_array_equal(
            img[1:8, :].reshape(-1, 3), np.tile([153, 226, 249], (7 * 64, 1))
        )


def test_scene_layout_orientation_shadow_and_scale() -> None:
    # uniform wall (hue 0.6), red floor, capsule; orientations -30, 0, +30 degrees
    factors = np.array(
        [[0, 6, 3, 7, 3, 0], [0, 6, 3, 7, 3, 7], [0, 6, 3, 7, 3, 14], [0, 6, 3, 0, 3, 7]]
    )
    img = render_shapes3d(factors).astype(np.float64)
    wall = img[:, 2, 24:30]  # blue channel of the wall band
    left, right = wall[:, :, 1:6].mean(axis=(1, 2)), wall[:, :, 58:63].mean(axis=(1, 2))
    assert right[0] < 0.85 * left[0]  # -30: the darker side wall on the right
    assert left[2] < 0.85 * right[2]  # +30: on the left
    assert abs(left[1] - right[1]) < 0.05 * left[1]  # 0: the back wall fills the view
    # sky over the top quarter, wall band, floor below (as rows 0-16 / 17-40 / 41-63)
    blue_wall = (img[1, 2] > 200) & (img[1, 0] < 40)
    assert blue_wall[18:40, 2].all() and not blue_wall[:16, 2].any() and not blue_wall[42:, 2].any()
    # the shadow falls to the lower right of the object: red floor darker there than mirrored
    red = img[1, 0]
    assert red[53:57, 42:50].mean() < 0.6 * red[53:57, 14:22].mean()
    # the capsule's height: about 45 px at scale 1.25, 27 px at 0.75 (measured on real frames)
    green_rows = np.flatnonzero(((img[:, 1] > 150) & (img[:, 0] < 120)).any(axis=2)[1])
    assert 42 <= green_rows.size <= 48
    small_rows = np.flatnonzero(((img[3, 1] > 150) & (img[3, 0] < 120)).any(axis=1))
    assert 24 <= small_rows.size <= 30


def test_renderer_rejects_bad_factors() -> None:
    with pytest.raises(DatasetError, match=r"factor 3 index 8 .* out of range \[0, 7\]"):
        render_shapes3d(np.array([[0, 0, 0, 8, 0, 0]]))
    with pytest.raises(DatasetError, match="out of range"):
        render_shapes3d(np.array([[0, 0, 0, 0, 0, -1]]))
    with pytest.raises(DatasetError, match=r"expected shape \(N, 6\)"):
        render_shapes3d(np.zeros((2, 5), dtype=int))
    with pytest.raises(DatasetError, match="integer"):
        render_shapes3d(np.full((1, 6), 0.5))
    with pytest.raises(DatasetError, match="supersample"):
        render_shapes3d(np.zeros((1, 6), dtype=int), supersample=0)
