"""Known answers and edge cases of the array disentanglement metrics (DCI, MIG, SAP, IRS,
modularity/explicitness)."""

from __future__ import annotations

import numpy as np
import pytest

from vaelens.errors import ConfigError
from vaelens.metrics.disentanglement import (
    completeness,
    dci,
    disentanglement,
    histogram_discretize,
    importance_matrix,
    irs,
    mig,
    modularity_explicitness,
    modularity_score,
    sap,
)

SIZES = np.array([4, 5, 6, 4])
# Orthogonal, every entry +-1/2: each latent mixes all four factors equally.
HADAMARD = 0.5 * np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])


def make(n: int, seed: int = 0, noise: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = rng.integers(0, SIZES, size=(n, SIZES.size))
    z = (f + 0.5) / SIZES - 0.5 + noise * rng.normal(size=f.shape)
    return z, f


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make(900)


# --------------------------------------------------------------------------- DCI


def test_dci_formulas_on_hand_made_importance_matrices():
    assert disentanglement(np.eye(3)) == pytest.approx(1.0)
    assert completeness(np.eye(3)) == pytest.approx(1.0)
    assert disentanglement(np.ones((3, 3))) == pytest.approx(0.0, abs=1e-9)
    # one code shared by two factors, one dedicated code: D = 0.5 * (1 - H_2(1/2,1/2)) + 0.5 * 1
    r = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert disentanglement(r) == pytest.approx(0.5, abs=1e-6)
    # duplicated code: D stays 1, C = 1 - H_2(1/2, 1/2) for that factor
    dup = np.array([[0.5, 0.0], [0.5, 0.0], [0.0, 1.0]])
    assert disentanglement(dup) == pytest.approx(1.0)
    expected_c = 0.5 * (1 - np.log(2) / np.log(3)) + 0.5 * 1.0
    assert completeness(dup) == pytest.approx(expected_c, abs=1e-6)
    assert disentanglement(np.zeros((2, 2))) == 0.0
    with pytest.raises(ConfigError, match="r:"):
        disentanglement(np.array([[-1.0, 2.0]]))


@pytest.mark.parametrize("estimator", ["gbt-hist", "lightgbm", "gbt"])
def test_dci_oracle_scores_one_and_rotation_much_lower(data, estimator):
    z, f = data
    n = 300 if estimator == "gbt" else 900  # keep the faithful estimator cheap
    ora = dci(z[:n], f[:n], estimator=estimator, random_state=0)
    rot = dci(z[:n] @ HADAMARD, f[:n], estimator=estimator, random_state=0)
    assert ora["disentanglement"] > 0.95
    assert ora["completeness"] > 0.95
    assert ora["informativeness_test"] > 0.95
    assert rot["disentanglement"] < ora["disentanglement"] - 0.4
    assert rot["completeness"] < ora["completeness"] - 0.4


@pytest.mark.parametrize("estimator", ["gbt-hist", "lightgbm"])
def test_dci_fast_matches_faithful_on_small_bank(data, estimator):
    z, f = data
    z, f = z[:300], f[:300]
    for rep in (z, z @ HADAMARD, np.concatenate([z, z[:, :1]], axis=1)):
        a = dci(rep, f, estimator="gbt", random_state=0)
        b = dci(rep, f, estimator=estimator, random_state=0)
        assert abs(a["disentanglement"] - b["disentanglement"]) < 0.05


@pytest.mark.parametrize(("n_classes", "seed"), [(2, 2), (4, 0)])
def test_gbt_hist_is_sklearns_boosting_on_histogram_trees(n_classes, seed):
    """With a bin per distinct value the trees partition the training points as sklearn's
    do, so the raw scores agree to rounding. (Where two splits tie to float32 precision,
    LightGBM's float32 gradients may pick the other one and the fits drift apart; these
    data have no such tie. Importances differ only by splits of tied codes.)"""
    from sklearn.ensemble import GradientBoostingClassifier

    from vaelens.metrics.disentanglement.dci import _HistGBT

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(240, 5))
    latent = x[:, 0] + 0.6 * x[:, 1] + 0.4 * rng.normal(size=240)
    y = np.searchsorted(np.quantile(latent, np.linspace(0, 1, n_classes + 1)[1:-1]), latent)
    ref = GradientBoostingClassifier(random_state=0).fit(x, y)
    ours = _HistGBT(seed=0).fit(x, y)  # 240 points: one bin per distinct value
    ref_raw = ref.decision_function(x).reshape(len(x), -1)
    np.testing.assert_allclose(ours.raw_predict(x), ref_raw, atol=1e-8)
    np.testing.assert_array_equal(ours.predict(x), ref.predict(x))
    np.testing.assert_allclose(ours.feature_importances_, ref.feature_importances_, atol=0.02)
    assert ours.feature_importances_.sum() == pytest.approx(1.0)
    # coarse bins move the split candidates but not the picture
    binned = _HistGBT(seed=0, max_bin=32).fit(x, y)
    np.testing.assert_allclose(binned.feature_importances_, ref.feature_importances_, atol=0.05)


def test_dci_directions_dead_noise_duplicate(data):
    z, f = data
    rng = np.random.default_rng(1)
    base = dci(z, f, estimator="gbt-hist")
    dead = dci(np.concatenate([z, np.zeros((len(z), 1))], axis=1), f, estimator="gbt-hist")
    noisy_codes = np.concatenate([z, rng.normal(size=(len(z), 2))], axis=1)
    noisy = dci(noisy_codes, f, estimator="gbt-hist")
    # duplicated factor code: the copies tie, sklearn breaks ties in a random code order
    # at every node and gbt-hist in a random one at every stage, so both split the credit
    # between the copies and C drops
    zd = np.concatenate([z, z[:, :1] + 0.01 * rng.normal(size=(len(z), 1))], axis=1)[:300]
    dups = {e: dci(zd, f[:300], estimator=e) for e in ("gbt", "gbt-hist")}
    base_300 = {e: dci(z[:300], f[:300], estimator=e) for e in ("gbt", "gbt-hist")}
    assert dead["disentanglement"] == pytest.approx(base["disentanglement"], abs=1e-9)
    # a dead latent gets no importance; C changes only through its entropy base log(D)
    expected_c = 1 - (1 - base["completeness"]) * np.log(4) / np.log(5)
    assert dead["completeness"] == pytest.approx(expected_c, abs=1e-9)
    # noise latents take a little importance (overfitting splits) and move D only slightly
    assert noisy["disentanglement"] == pytest.approx(base["disentanglement"], abs=0.03)
    r, _, _ = importance_matrix(noisy_codes, f, estimator="gbt-hist")
    assert r[4:].sum() < 0.1 * r.sum()
    for e, dup in dups.items():
        assert dup["completeness"] < base_300[e]["completeness"] - 0.05, e
        assert dup["disentanglement"] > 0.9, e


def test_dci_single_level_factor_is_skipped_and_constant_codes_score_zero(data):
    z, f = data
    f1 = f.copy()
    f1[:, 3] = 2
    out = dci(z, f1, estimator="gbt-hist")
    assert out["num_skipped_factors"] == 1
    assert out["disentanglement"] > 0.9  # latent 3 carries nothing now, others are dedicated
    const = dci(np.ones_like(z), f, estimator="gbt-hist")
    assert const["disentanglement"] == 0.0 and const["completeness"] == 0.0


def test_dci_more_and_fewer_latents_and_one_factor(data):
    z, f = data
    full = dci(z, f, estimator="gbt-hist")
    fewer = dci(z[:, :2], f, estimator="gbt-hist")
    # the classifiers of the two unrepresented factors spread their importance over the
    # two codes, so D drops; informativeness drops as two factors cannot be predicted
    assert fewer["disentanglement"] < full["disentanglement"] - 0.3
    assert fewer["informativeness_test"] < full["informativeness_test"] - 0.3
    one = dci(z, f[:, :1], estimator="gbt-hist")
    assert one["disentanglement"] == pytest.approx(1.0)  # every code serves the only factor
    assert one["completeness"] > 0.9


# --------------------------------------------------------------------------- MIG


def test_histogram_discretize_matches_reference_rule():
    x = np.array([[0.0], [0.49], [0.5], [1.0]])
    assert histogram_discretize(x, 2)[:, 0].tolist() == [1, 1, 2, 2]
    assert np.unique(histogram_discretize(np.zeros((3, 1)), 20)).size == 1


def test_mig_oracle_rotation_and_directions(data):
    z, f = data
    base = mig(z, f)["mig"]
    assert base > 0.9
    assert mig(z @ HADAMARD, f)["mig"] < 0.3
    dead = mig(np.concatenate([z, np.zeros((len(z), 1))], axis=1), f)["mig"]
    assert dead == pytest.approx(base)
    noise = np.random.default_rng(2).normal(size=(len(z), 1))
    assert mig(np.concatenate([z, noise], axis=1), f)["mig"] == pytest.approx(base, abs=0.02)
    dup = mig(np.concatenate([z, z[:, :1]], axis=1), f)["mig"]
    assert dup == pytest.approx(base * 3 / 4, abs=0.02)  # factor 0's gap drops to 0


def test_mig_edge_cases(data):
    z, f = data
    assert mig(np.ones_like(z), f)["mig"] == 0.0
    f1 = f.copy()
    f1[:, 0] = 0
    assert mig(z, f1)["num_skipped_factors"] == 1
    assert mig(z[:, :1], f[:, :1])["mig"] > 0.9  # one latent: the runner-up MI is 0


# --------------------------------------------------------------------------- SAP


def test_sap_discrete_and_continuous(data):
    z, f = data
    d = sap(z, f, random_state=0)["sap"]
    c = sap(z, f, continuous=True)["sap"]
    assert 0.15 < d <= 1.0  # an oracle scores low with many classes, but well above a rotation
    assert c > 0.9
    assert sap(z @ HADAMARD, f, continuous=True)["sap"] < 0.1
    assert sap(z @ HADAMARD, f, random_state=0)["sap"] < d - 0.1
    dup = sap(np.concatenate([z, z[:, :1]], axis=1), f, continuous=True)["sap"]
    assert dup == pytest.approx(c * 3 / 4, abs=0.02)
    dead = sap(np.concatenate([z, np.zeros((len(z), 1))], axis=1), f, continuous=True)["sap"]
    assert dead == pytest.approx(c)


# --------------------------------------------------------------------------- IRS


def test_irs_oracle_rotation_and_directions(data):
    z, f = data
    base = irs(z, f)
    assert base["irs"] > 0.9 and base["num_active_dims"] == 4
    assert irs(z @ HADAMARD, f)["irs"] < base["irs"] - 0.3
    dead = irs(np.concatenate([z, np.zeros((len(z), 1))], axis=1), f)
    assert dead["irs"] == pytest.approx(base["irs"]) and dead["num_active_dims"] == 4
    noise = np.random.default_rng(3).uniform(-0.5, 0.5, size=(len(z), 1))
    assert irs(np.concatenate([z, noise], axis=1), f)["irs"] < base["irs"] - 0.1
    assert irs(np.ones_like(z), f) == {"irs": 0.0, "num_active_dims": 0}


# --------------------------------------------------------------------------- modularity


def test_modularity_formula_and_directions(data):
    assert modularity_score(np.eye(3)) == pytest.approx(1.0)
    # two factors with equal MI: delta = 1, modularity 0; a zero row scores 0
    assert modularity_score(np.array([[1.0, 1.0], [0.0, 0.0]])) == pytest.approx(0.0)
    z, f = data
    base = modularity_explicitness(z, f, random_state=0)
    assert base["modularity"] > 0.95
    assert base["explicitness_test"] > 0.95
    rot = modularity_explicitness(z @ HADAMARD, f, random_state=0)
    assert rot["modularity"] < base["modularity"] - 0.2
    dead = modularity_explicitness(np.concatenate([z, np.zeros((len(z), 1))], axis=1), f)
    assert dead["modularity"] == pytest.approx(base["modularity"] * 4 / 5, abs=1e-6)
    assert dead["explicitness_test"] == pytest.approx(base["explicitness_test"], abs=0.01)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "fn",
    [
        lambda z, f: dci(z, f, estimator="gbt-hist"),
        mig,
        sap,
        irs,
        modularity_explicitness,
    ],
)
def test_bad_inputs_raise_clear_errors(data, fn):
    z, f = data
    bad = z.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"codes: expected finite values.*row 5, latent 1"):
        fn(bad, f)
    with pytest.raises(ConfigError, match="rows"):
        fn(z[:-1], f)
    with pytest.raises(ConfigError, match="factors: expected integer"):
        fn(z, f + 0.5)
    with pytest.raises(ConfigError, match="codes: expected a 2-D"):
        fn(z[:, 0], f)
