"""The synthetic causal dataset: contract, structural equations measured on the images, graph."""

from __future__ import annotations

import numpy as np
import pytest

from vaelens.data import check_dataset, get_spec, intervention_pairs, load_dataset
from vaelens.data.synthetic import (
    BACKGROUND_LEVELS,
    CAUSAL_GRAPH,
    CONTRAST_LEVELS,
    FACTOR_NAMES,
    POSITION_LEVELS,
    SHAPE_GAINS,
    SIZE_LEVELS,
    SyntheticCausalDataset,
    causal_adjacency,
    endogenous,
    render_float,
)
from vaelens.errors import DatasetError

SHAPE, SIZE, BG, CON, X, Y = range(6)


@pytest.fixture(scope="module")
def ds() -> SyntheticCausalDataset:
    return SyntheticCausalDataset()


def measure(images: np.ndarray) -> dict[str, np.ndarray]:
    """Attributes measured on float images (N, 1, 64, 64) without knowing the factors.

    background = the corner pixel, foreground = the brightest pixel, contrast = fg - bg,
    coverage = (pixel - bg) / contrast, area = summed coverage, centroid = its mean position.
    """
    img = images[:, 0].astype(np.float64)
    bg = img[:, 0, 0]
    fg = img.max(axis=(1, 2))
    contrast = fg - bg
    cov = (img - bg[:, None, None]) / contrast[:, None, None]
    area = cov.sum(axis=(1, 2))
    centres = np.arange(64) + 0.5
    return {
        "background": bg,
        "foreground": fg,
        "contrast": contrast,
        "area": area,
        "size": np.sqrt(area),
        "posX": (cov * centres[None, None, :]).sum(axis=(1, 2)) / area,
        "posY": (cov * centres[None, :, None]).sum(axis=(1, 2)) / area,
    }


def test_meets_contract_and_registry(ds, rng):
    loaded = load_dataset("synthetic")
    assert isinstance(loaded, SyntheticCausalDataset)
    assert check_dataset(ds) is ds
    spec = get_spec("synthetic")
    assert spec.sources == ("procedural",) and spec.files == ()
    assert spec.factor_sizes == ds.factor_sizes == (3, 5, 4, 4, 10, 10)
    assert spec.n_images == len(ds) == 24000
    assert ds.image_shape == (1, 64, 64) and ds.pixel_max == 255
    for f, size in enumerate(ds.factor_sizes):
        assert ds.factor_values[f].shape == (size,)
    factors = ds.sample_factors(32, rng)
    raw = ds.uint8_images(factors)
    img = ds.images(factors)
    assert raw.dtype == np.uint8 and raw.shape == (32, 1, 64, 64)
    assert img.dtype == np.float32 and img.shape == (32, 1, 64, 64)
    assert img.min() >= 0.0 and img.max() <= 1.0
    np.testing.assert_array_equal(img, raw.astype(np.float32) / 255)
    # the 8-bit images are the exact SCM output rounded
    assert np.abs(img - render_float(factors)).max() <= 0.5 / 255 + 1e-6
    # flat indices address the same images (last factor fastest)
    np.testing.assert_array_equal(
        ds.uint8_at(np.array([0, 1, 10])),
        ds.uint8_images(np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 1, 0]])),
    )


def test_measured_attributes_follow_the_structural_equations(ds, rng):
    factors = ds.sample_factors(200, rng)
    got = measure(ds.images(factors))
    want = endogenous(factors)
    shape, size_lv, bg_lv, con_lv = (
        factors[:, SHAPE],
        factors[:, SIZE],
        factors[:, BG],
        factors[:, CON],
    )
    np.testing.assert_allclose(want["size"], SIZE_LEVELS[size_lv] * SHAPE_GAINS[shape])
    np.testing.assert_allclose(
        want["contrast"], CONTRAST_LEVELS[con_lv] * (1 - BACKGROUND_LEVELS[bg_lv])
    )
    np.testing.assert_allclose(got["background"], want["background"], atol=0.5 / 255 + 1e-6)
    np.testing.assert_allclose(got["contrast"], want["contrast"], atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(got["size"], want["size"], rtol=0.03)
    np.testing.assert_allclose(got["posX"], want["posX"], atol=0.15)
    np.testing.assert_allclose(got["posY"], want["posY"], atol=0.3)


def test_shape_intervention_changes_rendered_size_by_the_shape_gain(ds, rng):
    base = ds.do(ds.sample_factors(40, rng), contrast=3, background=0)
    sizes = np.stack([measure(ds.images(ds.do(base, shape=k)))["size"] for k in range(3)])
    # square < circle < triangle for every held combination of the other factors
    assert np.all(np.diff(sizes, axis=0) > 0)
    for k in (1, 2):
        np.testing.assert_allclose(sizes[k] / sizes[0], SHAPE_GAINS[k] / SHAPE_GAINS[0], rtol=0.03)


def test_size_intervention_changes_only_size(ds, rng):
    base = ds.do(ds.sample_factors(30, rng), contrast=3)
    per_level = [measure(ds.images(ds.do(base, size=k))) for k in range(len(SIZE_LEVELS))]
    sizes = np.stack([m["size"] for m in per_level])
    assert np.all(np.diff(sizes, axis=0) > 0)
    np.testing.assert_allclose(
        sizes / sizes[0], (SIZE_LEVELS / SIZE_LEVELS[0])[:, None] * np.ones_like(sizes), rtol=0.03
    )
    for m in per_level[1:]:
        for key in ("background", "contrast"):
            np.testing.assert_array_equal(m[key], per_level[0][key])
        np.testing.assert_allclose(m["posX"], per_level[0]["posX"], atol=0.2)
        np.testing.assert_allclose(m["posY"], per_level[0]["posY"], atol=0.3)


def test_background_intervention_changes_contrast_as_the_equation_says(ds, rng):
    base = ds.sample_factors(30, rng)
    per_level = [
        measure(ds.images(ds.do(base, background=k))) for k in range(len(BACKGROUND_LEVELS))
    ]
    contrast = np.stack([m["contrast"] for m in per_level])
    bg = np.stack([m["background"] for m in per_level])
    # brighter background -> lower contrast, contrast = g * (1 - b)
    assert np.all(np.diff(bg, axis=0) > 0) and np.all(np.diff(contrast, axis=0) < 0)
    want = CONTRAST_LEVELS[base[:, CON]][None, :] * (1 - BACKGROUND_LEVELS)[:, None]
    np.testing.assert_allclose(contrast, want, atol=1 / 255 + 1e-6)
    # the shape is untouched
    for m in per_level[1:]:
        np.testing.assert_allclose(m["size"], per_level[0]["size"], rtol=0.03)


def test_contrast_intervention_leaves_background(ds, rng):
    base = ds.sample_factors(30, rng)
    per_level = [measure(ds.images(ds.do(base, contrast=k))) for k in range(len(CONTRAST_LEVELS))]
    contrast = np.stack([m["contrast"] for m in per_level])
    assert np.all(np.diff(contrast, axis=0) > 0)
    for m in per_level[1:]:
        np.testing.assert_array_equal(m["background"], per_level[0]["background"])


@pytest.mark.parametrize("axis", [X, Y])
def test_position_intervention_translates_the_image_and_nothing_else(ds, rng, axis):
    base = ds.sample_factors(30, rng)
    base[:, axis] = rng.integers(0, 5, size=30)
    changed = base.copy()
    changed[:, axis] += rng.integers(1, 5, size=30)
    a, b = ds.uint8_images(base), ds.uint8_images(changed)
    shift_px = POSITION_LEVELS[changed[:, axis]] - POSITION_LEVELS[base[:, axis]]
    key = "posX" if axis == X else "posY"
    other = "posY" if axis == X else "posX"
    ma, mb = measure(a / 255.0), measure(b / 255.0)
    np.testing.assert_allclose(mb[key] - ma[key], shift_px, atol=1e-6)
    np.testing.assert_allclose(mb[other], ma[other], atol=1e-6)
    for i in range(30):  # an exact translation by an integer number of pixels
        np.testing.assert_array_equal(
            np.roll(a[i], int(shift_px[i]), axis=2 if axis == X else 1), b[i]
        )
    for name in ("background", "contrast", "area"):
        np.testing.assert_allclose(mb[name], ma[name], atol=1e-9)


def test_adjacency_matches_graph_and_interventions(ds, rng):
    adj = ds.adjacency()
    names = ds.factor_names
    assert adj.shape == (6, 6) and set(np.unique(adj)) <= {0, 1}
    edges = {(names[i], names[j]) for i, j in zip(*np.nonzero(adj), strict=True)}
    assert edges == {("shape", "size"), ("background", "contrast")}
    assert edges == {(p, c) for c, ps in CAUSAL_GRAPH.items() for p in ps}
    # A[i, j] = 1 iff resampling exogenous factor i changes a *different* rendered attribute j
    empirical = np.zeros_like(adj)
    for i in range(6):
        base, changed = intervention_pairs(ds, i, 50, rng)
        e0, e1 = endogenous(base), endogenous(changed)
        for j, name in enumerate(names):
            if j != i and not np.allclose(e0[name], e1[name]):
                empirical[i, j] = 1
    np.testing.assert_array_equal(empirical, adj)
    with pytest.raises(DatasetError, match="'hue'"):
        causal_adjacency(FACTOR_NAMES, {"hue": ("shape",)})


def test_deterministic_and_batch_independent(ds):
    a = ds.sample_factors(16, np.random.default_rng(7))
    b = ds.sample_factors(16, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, ds.sample_factors(16, np.random.default_rng(8)))
    batch = ds.uint8_images(a)
    np.testing.assert_array_equal(batch, ds.uint8_images(a))
    np.testing.assert_array_equal(batch[3:4], ds.uint8_images(a[3]))
    np.testing.assert_array_equal(batch[::-1], ds.uint8_images(a[::-1]))


def test_bad_input_raises_dataset_error_naming_the_argument(ds, rng):
    good = ds.sample_factors(2, rng)
    bad = good.copy()
    bad[1, X] = 10
    with pytest.raises(DatasetError, match=r"factors: factor 4 index 10 .*\[0, 9\]"):
        ds.images(bad)
    with pytest.raises(DatasetError, match="factors: expected shape"):
        ds.uint8_images(good[:, :5])
    with pytest.raises(DatasetError, match="factors"):
        endogenous(np.full((1, 6), -1))
    with pytest.raises(DatasetError, match="size: expected a level index in \\[0, 4\\]"):
        ds.do(good, size=5)
    with pytest.raises(DatasetError, match="'colour'"):
        ds.do(good, colour=0)
    with pytest.raises(DatasetError, match="rng"):
        ds.sample_factors(3, 0)
    with pytest.raises(DatasetError, match="source"):
        load_dataset("synthetic", source="file")
    with pytest.raises(DatasetError, match="no options"):
        load_dataset("synthetic", variant="toy")
