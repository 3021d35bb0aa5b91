"""Shared helpers of the disentanglement metrics: validation, sampling, discretisation, MI.

Conventions (the same for every metric in this package):

* ``codes`` is a float array ``(N, D)``, one row a point, one column a latent; NaN or
  infinite values raise :class:`vaelens.errors.ConfigError` (a ``ValueError``) naming the
  argument.
* ``factors`` is an integer array ``(N, F)`` of factor level indices (integer-valued floats
  are accepted). Levels need not be contiguous.
* ``random_state`` is ``None``, an ``int`` seed or a :class:`numpy.random.Generator`.
* A *representation function* maps float32 images ``(N, C, H, W)`` to codes ``(N, D)``.

disentanglement_lib stores arrays transposed (``(D, N)``); this package never does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import mutual_info_score

from vaelens.errors import ConfigError, DatasetError

__all__ = [
    "RandomState",
    "ReprFn",
    "as_generator",
    "check_codes",
    "check_codes_factors",
    "check_factors",
    "discrete_entropy",
    "discrete_mutual_info",
    "encode",
    "histogram_discretize",
    "resolve_test_split",
    "sample_codes",
    "varying_factors",
]

RandomState = int | np.random.Generator | None
ReprFn = Callable[[np.ndarray], Any]


def as_generator(random_state: RandomState) -> np.random.Generator:
    """A :class:`numpy.random.Generator` from ``None``, an int seed or a Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or isinstance(random_state, int | np.integer):
        return np.random.default_rng(random_state)
    raise ConfigError(
        f"random_state: expected None, an int or a numpy Generator, got {type(random_state).__name__}"
    )


def seed_from(rng: np.random.Generator) -> int:
    """An int seed for estimators that take one (sklearn, LightGBM), drawn from ``rng``."""
    return int(rng.integers(0, 2**31 - 1))


def _as_array(value: Any, name: str) -> np.ndarray:
    """``np.asarray(value)``, a ragged nested list or a tensor that needs grad raising ConfigError."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"{name}: expected a rectangular numeric array, got a {type(value).__name__} "
            f"numpy cannot stack ({reason})"
        ) from exc


def check_codes(codes: Any, name: str = "codes", *, min_rows: int = 2) -> np.ndarray:
    """Validate a code matrix ``(N, D)``; return it as float64.

    Raises :class:`ConfigError` naming ``name`` for a ragged input, a wrong rank, too few
    rows, no columns, a non-numeric dtype or any NaN/infinite value.
    """
    arr = _as_array(codes, name)
    if arr.ndim != 2:
        raise ConfigError(
            f"{name}: expected a 2-D array (N points, D latents), got shape {arr.shape}"
        )
    if arr.dtype.kind not in "biuf":
        raise ConfigError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    if arr.shape[0] < min_rows or arr.shape[1] < 1:
        raise ConfigError(
            f"{name}: expected at least {min_rows} points and 1 latent, got shape {arr.shape}"
        )
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise ConfigError(
            f"{name}: expected finite values, found {int(bad.sum())} NaN/infinite "
            f"(first at row {row}, latent {col})"
        )
    return arr


def check_factors(factors: Any, name: str = "factors", *, min_rows: int = 2) -> np.ndarray:
    """Validate a factor matrix ``(N, F)`` of integer level indices; return it as int64."""
    arr = _as_array(factors, name)
    if arr.ndim != 2:
        raise ConfigError(
            f"{name}: expected a 2-D array (N points, F factors), got shape {arr.shape}"
        )
    if arr.shape[0] < min_rows or arr.shape[1] < 1:
        raise ConfigError(
            f"{name}: expected at least {min_rows} points and 1 factor, got shape {arr.shape}"
        )
    if arr.dtype.kind == "f":
        bad = ~np.isfinite(arr)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise ConfigError(
                f"{name}: expected integer factor indices, found {int(bad.sum())} NaN/infinite "
                f"(first at row {row}, factor {col})"
            )
        if not np.all(arr == np.round(arr)):
            raise ConfigError(f"{name}: expected integer factor indices, got non-integer floats")
    elif arr.dtype.kind not in "biu":
        raise ConfigError(f"{name}: expected integer factor indices, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def check_codes_factors(
    codes: Any, factors: Any, codes_name: str = "codes", factors_name: str = "factors"
) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``codes`` and ``factors`` together (same number of rows)."""
    c = check_codes(codes, codes_name)
    f = check_factors(factors, factors_name)
    if c.shape[0] != f.shape[0]:
        raise ConfigError(
            f"{codes_name} has {c.shape[0]} rows but {factors_name} has {f.shape[0]}: "
            "expected one factor vector per code"
        )
    return c, f


def resolve_test_split(
    codes: Any,
    factors: Any,
    codes_test: Any,
    factors_test: Any,
    rng: np.random.Generator,
    test_fraction: float = 1.0 / 3.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``(codes, factors, codes_test, factors_test)``.

    If both test arrays are ``None`` the points are split at random, ``test_fraction``
    of them held out (1/3 matches the reference 10,000 train / 5,000 test proportions).
    """
    c, f = check_codes_factors(codes, factors)
    if codes_test is None and factors_test is None:
        n = c.shape[0]
        n_test = round(n * test_fraction)
        if n_test < 1 or n - n_test < 2:
            raise ConfigError(f"codes: {n} points are too few to split into train and test")
        perm = rng.permutation(n)
        te, tr = perm[:n_test], perm[n_test:]
        return c[tr], f[tr], c[te], f[te]
    if codes_test is None or factors_test is None:
        raise ConfigError("codes_test and factors_test: give both or neither")
    ct = check_codes(codes_test, "codes_test", min_rows=1)
    ft = check_factors(factors_test, "factors_test", min_rows=1)
    if ct.shape[0] != ft.shape[0]:
        raise ConfigError(f"codes_test has {ct.shape[0]} rows but factors_test has {ft.shape[0]}")
    if ct.shape[1] != c.shape[1]:
        raise ConfigError(
            f"codes_test: expected {c.shape[1]} latents like codes, got {ct.shape[1]}"
        )
    if ft.shape[1] != f.shape[1]:
        raise ConfigError(
            f"factors_test: expected {f.shape[1]} factors like factors, got {ft.shape[1]}"
        )
    return c, f, ct, ft


def varying_factors(factors: np.ndarray) -> np.ndarray:
    """Boolean mask ``(F,)`` of the factors that take at least two levels in ``factors``."""
    return np.array([np.unique(factors[:, j]).size > 1 for j in range(factors.shape[1])])


def histogram_discretize(codes: np.ndarray, num_bins: int = 20) -> np.ndarray:
    """Equal-width discretisation of each column into ``num_bins`` bins over its observed range.

    Column ``j`` maps to ``np.digitize(x, np.histogram(x, num_bins)[1][:-1])`` (bin numbers
    1..num_bins), exactly as disentanglement_lib's ``_histogram_discretize``. A constant
    column falls into a single bin.
    """
    if not isinstance(num_bins, int | np.integer) or num_bins < 1:
        raise ConfigError(f"num_bins: expected a positive int, got {num_bins!r}")
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram(codes[:, j], num_bins)[1][:-1]
        out[:, j] = np.digitize(codes[:, j], edges)
    return out


def discrete_mutual_info(discrete_codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Matrix ``(D, F)`` of ``I(code_i; factor_j)`` in nats (``sklearn.metrics.mutual_info_score``)."""
    d, f = discrete_codes.shape[1], factors.shape[1]
    m = np.zeros((d, f))
    for i in range(d):
        for j in range(f):
            m[i, j] = mutual_info_score(factors[:, j], discrete_codes[:, i])
    return m


def discrete_entropy(factors: np.ndarray) -> np.ndarray:
    """Entropy ``H(factor_j)`` in nats of each column ``(F,)``."""
    return np.array(
        [mutual_info_score(factors[:, j], factors[:, j]) for j in range(factors.shape[1])]
    )


def encode(
    repr_fn: ReprFn, images: np.ndarray, batch_size: int = 64, name: str = "repr_fn"
) -> np.ndarray:
    """Apply a representation function in batches; validate its output ``(N, D)`` float64."""
    if not callable(repr_fn):
        raise ConfigError(f"{name}: expected a callable mapping images (N,C,H,W) to codes (N,D)")
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ConfigError(f"batch_size: expected a positive int, got {batch_size!r}")
    parts = []
    for start in range(0, images.shape[0], batch_size):
        batch = np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32)
        out = repr_fn(batch)
        if hasattr(out, "detach"):  # a torch tensor
            out = out.detach().cpu().numpy()
        out = np.asarray(out)
        if out.ndim != 2 or out.shape[0] != batch.shape[0]:
            raise ConfigError(
                f"{name}: expected codes of shape ({batch.shape[0]}, D) for {batch.shape[0]} images, "
                f"got {out.shape}"
            )
        parts.append(out)
    codes = np.concatenate(parts, axis=0)
    return check_codes(codes, f"{name} output", min_rows=1)


def sample_codes(
    repr_fn: ReprFn,
    dataset: Any,
    n: int,
    rng: np.random.Generator,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` i.i.d. points ``(codes (n, D), factors (n, F))`` from ``dataset`` through ``repr_fn``.

    Factors come from ``dataset.sample_factors(n, rng)`` and images from
    ``dataset.images(factors)``; images are encoded ``batch_size`` at a time.
    """
    if not isinstance(n, int | np.integer) or n < 1:
        raise ConfigError(f"n: expected a positive int, got {n!r}")
    sampled = np.asarray(dataset.sample_factors(int(n), rng))
    sizes = getattr(dataset, "factor_sizes", None)
    n_factors = len(sizes) if sizes is not None else (sampled.shape[-1] if sampled.ndim else 0)
    integral = sampled.dtype.kind in "iu" or (
        sampled.dtype.kind == "f"
        and bool(np.all(np.isfinite(sampled) & (sampled == np.round(sampled))))
    )
    if sampled.shape != (n, n_factors) or n_factors < 1 or not integral:
        raise DatasetError(
            f"dataset.sample_factors({n}) returned shape {sampled.shape} and dtype "
            f"{sampled.dtype}; expected integer factor indices of shape ({n}, {n_factors or 'F'})"
        )
    factors = sampled.astype(np.int64, copy=False)
    codes = []
    chunk = max(batch_size, 1024 // batch_size * batch_size)  # limit image memory
    for start in range(0, n, chunk):
        rows = factors[start : start + chunk]
        imgs = np.asarray(dataset.images(rows))
        if imgs.ndim != 4 or imgs.shape[0] != rows.shape[0]:
            raise DatasetError(
                f"dataset.images(factors) returned shape {imgs.shape} for {rows.shape[0]} factor "
                f"rows; expected images ({rows.shape[0]}, C, H, W)"
            )
        codes.append(encode(repr_fn, imgs, batch_size))
    return np.concatenate(codes, axis=0), factors
