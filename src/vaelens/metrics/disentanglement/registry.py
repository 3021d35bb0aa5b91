"""Registry of the disentanglement metrics and :func:`compute_metrics`, their one entry point.

Every metric is registered by name with its kind and two presets of keyword arguments:

* ``"faithful"``: disentanglement_lib's estimators and sample sizes (10,000 train / 5,000
  test points for the array metrics, batches of 64 and 10,000 / 5,000 votes for the
  intervention metrics, GradientBoostingClassifier for DCI).
* ``"fast"``: smaller samples and DCI's ``"gbt-hist"`` estimator (sklearn's boosting on
  LightGBM's histogram trees), for smoke runs and sweeps.

Array metrics (``dci``, ``mig``, ``sap``, ``irs``, ``modularity``) take codes and factors;
given a representation function and a dataset instead, :func:`compute_metrics` samples
one i.i.d. train set (and one test set) of the preset's size and gives it to all of them.
Intervention metrics (``factor_vae``, ``beta_vae``) need the representation function and
the dataset, as they encode batches that share a factor.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from vaelens.errors import ConfigError
from vaelens.metrics.disentanglement._utils import (
    RandomState,
    ReprFn,
    check_codes_factors,
    resolve_test_split,
    sample_codes,
)
from vaelens.metrics.disentanglement.beta_vae import beta_vae_score
from vaelens.metrics.disentanglement.dci import dci
from vaelens.metrics.disentanglement.factor_vae import factor_vae_score
from vaelens.metrics.disentanglement.irs import irs
from vaelens.metrics.disentanglement.mig import mig
from vaelens.metrics.disentanglement.modularity import modularity_explicitness
from vaelens.metrics.disentanglement.sap import sap
from vaelens.progress import Progress

__all__ = ["METRICS", "PRESETS", "SAMPLE_SIZES", "MetricSpec", "compute_metrics"]

PRESETS = ("faithful", "fast")

#: Points sampled for the array metrics when a representation function and a dataset are given.
SAMPLE_SIZES: dict[str, dict[str, int]] = {
    "faithful": {"num_train": 10_000, "num_test": 5_000, "batch_size": 64},
    "fast": {"num_train": 2_000, "num_test": 1_000, "batch_size": 64},
}


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: the function, its kind and its preset keyword arguments.

    ``kind="arrays"``: ``fn(codes, factors, [codes_test, factors_test,] **kwargs)``;
    ``kind="intervention"``: ``fn(repr_fn, dataset, **kwargs)``. ``uses_test`` says whether
    the function takes a test split; ``random`` whether it takes ``random_state``.
    """

    fn: Callable[..., dict[str, float]]
    kind: Literal["arrays", "intervention"]
    uses_test: bool
    random: bool
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)


def _plain_arrays(fn: Callable[..., dict[str, float]]) -> MetricSpec:
    """An array metric with no test split, no random state and no preset arguments."""
    return MetricSpec(
        fn, "arrays", uses_test=False, random=False, presets={"faithful": {}, "fast": {}}
    )


METRICS: dict[str, MetricSpec] = {
    "dci": MetricSpec(
        dci,
        "arrays",
        uses_test=True,
        random=True,
        presets={"faithful": {"estimator": "gbt"}, "fast": {"estimator": "gbt-hist"}},
    ),
    "mig": _plain_arrays(mig),
    "sap": MetricSpec(
        sap,
        "arrays",
        uses_test=True,
        random=True,
        presets={"faithful": {"continuous": False}, "fast": {"continuous": False}},
    ),
    "irs": _plain_arrays(irs),
    "modularity": MetricSpec(
        modularity_explicitness,
        "arrays",
        uses_test=True,
        random=True,
        presets={"faithful": {}, "fast": {}},
    ),
    "factor_vae": MetricSpec(
        factor_vae_score,
        "intervention",
        uses_test=False,
        random=True,
        presets={
            "faithful": {
                "batch_size": 64,
                "num_train": 10_000,
                "num_eval": 5_000,
                "num_variance_estimate": 10_000,
                "prune_threshold": 0.05,
            },
            "fast": {
                "batch_size": 64,
                "num_train": 1_000,
                "num_eval": 500,
                "num_variance_estimate": 2_000,
                "prune_threshold": 0.05,
            },
        },
    ),
    "beta_vae": MetricSpec(
        beta_vae_score,
        "intervention",
        uses_test=False,
        random=True,
        presets={
            "faithful": {"batch_size": 64, "num_train": 10_000, "num_eval": 5_000},
            "fast": {"batch_size": 64, "num_train": 1_000, "num_eval": 500},
        },
    ),
}


def _base_seed(random_state: RandomState) -> int:
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    if random_state is None:
        return int(np.random.default_rng().integers(0, 2**31 - 1))
    if isinstance(random_state, int | np.integer):
        return int(random_state)
    raise ConfigError(
        f"random_state: expected None, an int or a numpy Generator, got {type(random_state).__name__}"
    )


def _metric_rng(base: int, key: str) -> np.random.Generator:
    """Independent stream per metric, so a score does not depend on which others ran."""
    return np.random.default_rng([base, zlib.crc32(key.encode())])


def _requested(
    names: str | Sequence[str], overrides: dict[str, dict[str, Any]] | None
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The metric names (``"all"`` expanded) and the overrides, both checked."""
    if isinstance(names, str):
        names = list(METRICS) if names == "all" else [names]
    names = list(names)
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ConfigError(f"names: unknown metric(s) {unknown}; expected some of {sorted(METRICS)}")
    overrides = dict(overrides or {})
    bad = [n for n in overrides if n not in names]
    if bad:
        raise ConfigError(f"overrides: {bad} are not among the requested metrics {names}")
    return names, overrides


def _check_inputs(
    names: list[str],
    codes: np.ndarray | None,
    factors: np.ndarray | None,
    repr_fn: ReprFn | None,
    dataset: Any,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
) -> bool:
    """Check that either arrays or a model and dataset were given; True for the latter.

    The arrays (and a test split, if given) are validated here, at the entry point, even
    for metrics that would not read them.
    """
    have_test = codes_test is not None or factors_test is not None
    have_arrays = codes is not None or factors is not None
    have_model = repr_fn is not None or dataset is not None
    if have_arrays and have_model:
        raise ConfigError("give either codes/factors or repr_fn/dataset, not both")
    if have_model and (repr_fn is None or dataset is None):
        raise ConfigError("repr_fn and dataset: give both")
    if not have_arrays and not have_model:
        raise ConfigError("give codes and factors, or repr_fn and dataset")
    if have_arrays:
        if codes is None or factors is None:
            raise ConfigError("codes and factors: give both")
        needs_model = [n for n in names if METRICS[n].kind == "intervention"]
        if needs_model:
            raise ConfigError(
                f"{needs_model} need repr_fn and dataset (they encode batches that share a factor)"
            )
        c, f = check_codes_factors(codes, factors)
        if have_test:
            resolve_test_split(c, f, codes_test, factors_test, np.random.default_rng(0))
    elif have_test:
        raise ConfigError(
            "codes_test and factors_test: give them only with codes and factors; with repr_fn "
            "and dataset the test set is sampled"
        )
    return have_model


def _sample_sizes(preset: str, num_train: int | None, num_test: int | None) -> dict[str, int]:
    """The preset's :data:`SAMPLE_SIZES` with ``num_train``/``num_test`` replaced if given."""
    sizes = dict(SAMPLE_SIZES[preset])
    for key, value in (("num_train", num_train), ("num_test", num_test)):
        if value is not None:
            if not isinstance(value, int | np.integer) or value < 2:
                raise ConfigError(f"{key}: expected an int >= 2, got {value!r}")
            sizes[key] = int(value)
    return sizes


def _sample_arrays(
    names: list[str], repr_fn: ReprFn, dataset: Any, sizes: dict[str, int], base: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One train set (and one test set, if an array metric takes one) for every array metric."""
    rng = _metric_rng(base, "__samples__")
    codes, factors = sample_codes(repr_fn, dataset, sizes["num_train"], rng, sizes["batch_size"])
    if any(METRICS[n].kind == "arrays" and METRICS[n].uses_test for n in names):
        codes_test, factors_test = sample_codes(
            repr_fn, dataset, sizes["num_test"], rng, sizes["batch_size"]
        )
        return codes, factors, codes_test, factors_test
    return codes, factors, None, None


def _run_metric(
    spec: MetricSpec,
    kwargs: dict[str, Any],
    arrays: tuple[np.ndarray | None, ...],
    repr_fn: ReprFn | None,
    dataset: Any,
) -> dict[str, float]:
    """Call ``spec.fn`` on the model and dataset or on ``arrays`` (codes, factors, test split)."""
    if spec.kind == "intervention":
        return spec.fn(repr_fn, dataset, **kwargs)
    if spec.uses_test:
        return spec.fn(*arrays, **kwargs)
    return spec.fn(*arrays[:2], **kwargs)


def compute_metrics(
    names: str | Sequence[str],
    codes: np.ndarray | None = None,
    factors: np.ndarray | None = None,
    *,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    repr_fn: ReprFn | None = None,
    dataset: Any = None,
    preset: str = "faithful",
    random_state: RandomState = 0,
    overrides: dict[str, dict[str, Any]] | None = None,
    num_train: int | None = None,
    num_test: int | None = None,
    progress: Progress | None = None,
) -> dict[str, dict[str, float]]:
    """Compute the named metrics; returns ``{name: {score: value}}``.

    Give either ``codes`` ``(N, D)`` and integer ``factors`` ``(N, F)`` (optionally a test
    split; otherwise metrics that need one hold out a random 1/3), or ``repr_fn`` (float32
    images ``(N,C,H,W)`` -> codes ``(N,D)``) and a ground-truth ``dataset``; the
    intervention metrics need the latter. ``names`` may be ``"all"``. ``overrides`` maps a
    metric name to keyword arguments that replace its preset's; ``num_train``/``num_test``
    replace the preset's sample sizes (:data:`SAMPLE_SIZES`) of the array metrics when
    sampling from a dataset. Each metric draws from its own random stream derived from
    ``random_state`` and its name. ``progress(stage, done, total)`` hears ``"codes"``
    (sampling the representation), each metric's name as it starts, and ``"done"``.

    Example::

        compute_metrics(["dci", "mig"], codes, factors, preset="fast", random_state=0)
    """
    if preset not in PRESETS:
        raise ConfigError(f"preset: expected one of {PRESETS}, got {preset!r}")
    names, overrides = _requested(names, overrides)
    have_model = _check_inputs(names, codes, factors, repr_fn, dataset, codes_test, factors_test)
    base = _base_seed(random_state)
    arrays = (codes, factors, codes_test, factors_test)
    tell = progress or (lambda *_: None)
    total = len(names) + 1
    if have_model and any(METRICS[n].kind == "arrays" for n in names):
        tell("codes", 0, total)
        sizes = _sample_sizes(preset, num_train, num_test)
        arrays = _sample_arrays(names, repr_fn, dataset, sizes, base)

    results: dict[str, dict[str, float]] = {}
    for i, name in enumerate(names):
        tell(name, i + 1, total)
        spec = METRICS[name]
        kwargs = {**spec.presets[preset], **overrides.get(name, {})}
        if spec.random:
            kwargs["random_state"] = _metric_rng(base, name)
        try:
            results[name] = _run_metric(spec, kwargs, arrays, repr_fn, dataset)
        except TypeError as exc:
            if name in overrides:
                raise ConfigError(f"overrides[{name!r}]: {exc}") from exc
            raise
    tell("done", total, total)
    return results
