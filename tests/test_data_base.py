"""The dataset contract's index arithmetic, ArrayDataset and validation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vaelens.data import (
    ArrayDataset,
    check_dataset,
    factor_strides,
    factors_to_index,
    index_to_factors,
    intervention_pairs,
    resample_factor,
    sample_factors_uniform,
    validate_factors,
)
from vaelens.errors import DatasetError

SIZES = (3, 4, 5)


def test_strides_are_last_factor_fastest() -> None:
    assert factor_strides(SIZES).tolist() == [20, 5, 1]
    assert factor_strides((7,)).tolist() == [1]


def test_flat_index_matches_itertools_product_order() -> None:
    grid = np.array(list(itertools.product(*[range(s) for s in SIZES])))
    idx = factors_to_index(grid, SIZES)
    assert idx.tolist() == list(range(len(grid)))
    np.testing.assert_array_equal(index_to_factors(idx, SIZES), grid)


def test_dsprites_index_formula() -> None:
    # datasets.md: index = classes . [737280, 245760, 40960, 1024, 32, 1] over the file's 6 factors
    assert factor_strides((1, 3, 6, 40, 32, 32)).tolist() == [737280, 245760, 40960, 1024, 32, 1]


@pytest.mark.parametrize(
    ("factors", "needle"),
    [
        (np.array([[0, 0, 5]]), "factor 2 index 5"),
        (np.array([[-1, 0, 0]]), "factor 0 index -1"),
        (np.zeros((2, 2), dtype=int), "expected shape (N, 3)"),
        (np.array([[0.5, 0, 0]]), "non-integer"),
        (np.array([["a", "b", "c"]]), "integer factor indices"),
    ],
)
def test_validate_factors_names_the_problem(factors: np.ndarray, needle: str) -> None:
    with pytest.raises(DatasetError, match="my_arg") as info:
        validate_factors(factors, SIZES, argument="my_arg")
    assert needle in str(info.value)


def test_validate_accepts_a_single_vector_and_integral_floats() -> None:
    out = validate_factors(np.array([1.0, 2.0, 3.0]), SIZES)
    assert out.dtype == np.int64 and out.shape == (1, 3)


def test_bad_factor_sizes_and_index() -> None:
    with pytest.raises(DatasetError, match="factor_sizes"):
        factor_strides((3, 0))
    with pytest.raises(DatasetError, match=r"index: expected values in \[0, 59\]"):
        index_to_factors(np.array([60]), SIZES)


def test_sampling_is_seeded_and_in_range() -> None:
    a = sample_factors_uniform(500, SIZES, np.random.default_rng(1))
    b = sample_factors_uniform(500, SIZES, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (500, 3)
    for f, s in enumerate(SIZES):
        assert set(np.unique(a[:, f])) == set(range(s))


def test_resample_factor_changes_only_that_factor() -> None:
    rng = np.random.default_rng(2)
    base = sample_factors_uniform(1000, SIZES, rng)
    changed = resample_factor(base, 1, SIZES, rng)
    assert np.all(changed[:, 1] != base[:, 1])
    np.testing.assert_array_equal(np.delete(changed, 1, axis=1), np.delete(base, 1, axis=1))
    # every other level is reachable
    assert set(np.unique(changed[:, 1])) == set(range(SIZES[1]))


def test_resample_rejects_single_level_and_bad_factor() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(DatasetError, match="single level"):
        resample_factor(np.zeros((2, 2), dtype=int), 0, (1, 3), rng)
    with pytest.raises(DatasetError, match="factor: expected an index"):
        resample_factor(np.zeros((2, 2), dtype=int), 5, (2, 3), rng)


def _tiny_array_dataset(channels_last: bool = True) -> ArrayDataset:
    n = int(np.prod(SIZES))
    # each image encodes its own flat index in pixel (0, 0)
    arr = np.zeros((n, 4, 4, 2), dtype=np.uint8)
    arr[:, 0, 0, 0] = np.arange(n)
    if not channels_last:
        arr = arr.transpose(0, 3, 1, 2).copy()
    values = [np.linspace(0, 1, s) for s in SIZES]
    return ArrayDataset("tiny", arr, ("a", "b", "c"), SIZES, values, channels_last=channels_last)


@pytest.mark.parametrize("channels_last", [True, False])
def test_array_dataset_reads_by_factor_index(channels_last: bool) -> None:
    ds = _tiny_array_dataset(channels_last)
    assert ds.image_shape == (2, 4, 4)
    factors = np.array([[2, 3, 4], [0, 0, 0], [1, 2, 3]])
    raw = ds.uint8_images(factors)
    assert raw.shape == (3, 2, 4, 4) and raw.dtype == np.uint8
    assert raw[:, 0, 0, 0].tolist() == factors_to_index(factors, SIZES).tolist()
    imgs = ds.images(factors)
    assert imgs.dtype == np.float32
    np.testing.assert_allclose(imgs[:, 0, 0, 0], raw[:, 0, 0, 0] / 255.0)


def test_array_dataset_validates_the_array() -> None:
    values = [np.arange(s) for s in SIZES]
    with pytest.raises(DatasetError, match="rows, expected 60"):
        ArrayDataset("bad", np.zeros((59, 4, 4, 1), np.uint8), "abc", SIZES, values)
    with pytest.raises(DatasetError, match="must be uint8"):
        ArrayDataset("bad", np.zeros((60, 4, 4, 1), np.float32), "abc", SIZES, values)


def test_intervention_pairs_uses_the_contract_and_names() -> None:
    ds = _tiny_array_dataset()
    base, changed = intervention_pairs(ds, "b", 50, np.random.default_rng(0))
    assert np.all(base[:, 1] != changed[:, 1])
    np.testing.assert_array_equal(base[:, [0, 2]], changed[:, [0, 2]])
    with pytest.raises(DatasetError, match="not a factor of tiny"):
        intervention_pairs(ds, "zzz", 5, np.random.default_rng(0))


def test_check_dataset_reports_missing_members() -> None:
    class Half:
        name = "half"
        factor_names = ("a",)

    with pytest.raises(DatasetError, match="lacks factor_sizes"):
        check_dataset(Half())
