"""The metric registry and compute_metrics: presets, both input modes, reproducibility, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vaelens.data.base import ArrayDataset
from vaelens.errors import ConfigError
from vaelens.metrics import METRICS, compute_metrics
from vaelens.metrics.disentanglement import PRESETS, mig

SIZES = (3, 4, 5)


@pytest.fixture(scope="module")
def ds() -> ArrayDataset:
    grid = np.array(list(itertools.product(*[range(s) for s in SIZES])), dtype=np.uint8)
    return ArrayDataset(
        "grid", grid.reshape(-1, 1, 3, 1), ["a", "b", "c"], SIZES, [np.arange(s) for s in SIZES]
    )


def oracle(images: np.ndarray) -> np.ndarray:
    return images.reshape(images.shape[0], -1).astype(np.float64) * 255.0 / np.array(SIZES)


def test_registry_has_every_metric_with_both_presets():
    expected = {"dci", "mig", "sap", "irs", "modularity", "factor_vae", "beta_vae"}
    assert set(METRICS) == expected
    for spec in METRICS.values():
        assert set(spec.presets) == set(PRESETS)
    assert METRICS["dci"].presets["faithful"]["estimator"] == "gbt"
    assert METRICS["dci"].presets["fast"]["estimator"] == "gbt-hist"
    assert METRICS["factor_vae"].presets["faithful"]["num_train"] == 10_000
    assert METRICS["factor_vae"].presets["faithful"]["prune_threshold"] == 0.05


def test_compute_all_from_dataset_fast_preset_oracle(ds):
    small = {"num_train": 200, "num_eval": 100}
    out = compute_metrics(
        "all",
        repr_fn=oracle,
        dataset=ds,
        preset="fast",
        random_state=0,
        num_train=600,
        num_test=300,
        overrides={"factor_vae": {**small, "num_variance_estimate": 300}, "beta_vae": small},
    )
    assert set(out) == set(METRICS)
    assert out["dci"]["disentanglement"] > 0.95
    assert out["mig"]["mig"] > 0.9
    assert out["factor_vae"]["eval_accuracy"] == 1.0
    assert out["beta_vae"]["eval_accuracy"] == 1.0
    assert out["irs"]["irs"] > 0.9
    assert out["modularity"]["modularity"] > 0.95


def test_compute_from_arrays_matches_direct_call_and_is_reproducible():
    rng = np.random.default_rng(0)
    f = rng.integers(0, SIZES, size=(300, 3))
    z = f + 0.1 * rng.normal(size=f.shape)
    a = compute_metrics(["mig", "dci", "sap"], z, f, preset="fast", random_state=5)
    b = compute_metrics(["dci"], z, f, preset="fast", random_state=5)
    assert a["mig"] == mig(z, f)
    assert a["dci"] == b["dci"]  # a metric's stream does not depend on the others requested


def test_compute_metrics_errors(ds):
    z = np.zeros((10, 2))
    f = np.zeros((10, 1), dtype=int)
    with pytest.raises(ConfigError, match="unknown metric"):
        compute_metrics(["nope"], z, f)
    with pytest.raises(ConfigError, match="preset"):
        compute_metrics("mig", z, f, preset="slow")
    with pytest.raises(ConfigError, match="need repr_fn and dataset"):
        compute_metrics(["factor_vae"], z, f)
    with pytest.raises(ConfigError, match="not both"):
        compute_metrics("mig", z, f, repr_fn=oracle, dataset=ds)
    with pytest.raises(ConfigError, match="codes has 10 rows but factors has 9"):
        compute_metrics("mig", z, f[:9])
    with pytest.raises(ConfigError, match=r"overrides\['mig'\]"):
        compute_metrics("mig", z, f, overrides={"mig": {"bogus": 1}})


def test_progress_hears_each_metric(ds) -> None:
    heard: list[tuple[str, int, int]] = []
    compute_metrics(
        ["mig", "sap"], repr_fn=oracle, dataset=ds, preset="fast", num_train=60, num_test=30,
        progress=lambda *a: heard.append(a),
    )  # fmt: skip
    assert heard == [("codes", 0, 3), ("mig", 1, 3), ("sap", 2, 3), ("done", 3, 3)]
