"""The causal metrics of Roy (2025) on arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelens.errors import ArgumentError, VaelensError
from vaelens.metrics.causal import (
    causal_effect_strength,
    circuit_clusters,
    circuit_modularity,
    collapsed_latents,
    dead_units,
    intervention_specificity,
    monosemantic_fraction,
    polysemanticity,
    primary_factor,
    unit_responses,
)


def test_ces_is_the_mean_l2_norm_of_the_change() -> None:
    rng = np.random.default_rng(0)
    base = rng.random((5, 1, 4, 4))
    pert = rng.random((3, 2, 5, 1, 4, 4))
    expected = np.array(
        [
            np.mean([np.linalg.norm(pert[i, v, n] - base[n]) for v in range(2) for n in range(5)])
            for i in range(3)
        ]
    )
    np.testing.assert_allclose(causal_effect_strength(base, pert), expected)
    np.testing.assert_allclose(causal_effect_strength(base, pert, normalise=True), expected / 4.0)
    # torch tensors are accepted
    np.testing.assert_allclose(
        causal_effect_strength(torch.tensor(base), torch.tensor(pert)), expected
    )


def test_ces_rejects_mismatched_shapes_and_nan() -> None:
    with pytest.raises(ValueError, match="perturbed: expected shape"):
        causal_effect_strength(np.zeros((2, 3)), np.zeros((1, 1, 2, 4)))
    with pytest.raises(ValueError, match="base: contains NaN"):
        causal_effect_strength(np.full((2, 3), np.nan), np.zeros((1, 1, 2, 3)))


def test_specificity_extremes_and_null_interventions() -> None:
    base = np.zeros((2, 16))
    pert = np.zeros((3, 1, 2, 16))
    pert[0, 0, :, 5] = 1.0  # one pixel changes: maximally specific
    pert[1, 0] = 0.5  # every pixel changes equally: least specific
    # dimension 2: nothing changes (a dead latent)
    s_norm, null = intervention_specificity(base, pert, form="normalised")
    np.testing.assert_allclose(s_norm[:2], [1.0, 0.0], atol=1e-12)
    assert np.isnan(s_norm[2])
    np.testing.assert_allclose(null, [0.0, 0.0, 1.0])
    s_roy, _ = intervention_specificity(base, pert, form="roy2025", eps=1e-3)
    np.testing.assert_allclose(s_roy[:2], [1e3, 1.0 / (np.log(16) + 1e-3)])
    assert np.isnan(s_roy[2])
    with pytest.raises(ValueError, match="form"):
        intervention_specificity(base, pert, form="bogus")


def test_unit_responses_average_over_samples_and_positions() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=(6, 3, 2, 2))
    b = rng.normal(size=(6, 3, 2, 2))
    np.testing.assert_allclose(unit_responses(a, b), np.abs(a - b).mean(axis=(0, 2, 3)))
    # the difference alone, or its per-example mean |.| over positions, gives the same
    np.testing.assert_allclose(unit_responses(b - a), unit_responses(a, b))
    per_example = np.abs(b - a).mean(axis=(2, 3))
    np.testing.assert_allclose(unit_responses(per_example), unit_responses(a, b))
    with pytest.raises(ValueError, match="acts_changed"):
        unit_responses(a, b[:, :2])


R_KNOWN = np.array(
    [
        [2.0, 0.0, 0.0],  # monosemantic on factor 0
        [0.0, 3.0, 0.0],  # monosemantic on factor 1
        [1.0, 1.0, 1.0],  # uniformly polysemantic
        [0.0, 0.0, 0.0],  # dead
    ]
)


def test_polysemanticity_both_forms_and_dead_units() -> None:
    pr = polysemanticity(R_KNOWN)
    np.testing.assert_allclose(pr[:3], [1.0, 1.0, 3.0])
    assert np.isnan(pr[3])
    ps = polysemanticity(R_KNOWN, form="roy2025")
    np.testing.assert_allclose(ps[:3], [3.0, 3.0, 1.0])  # eq. (11) as printed: inverse reading
    assert dead_units(R_KNOWN).tolist() == [False, False, False, True]
    assert primary_factor(R_KNOWN).tolist() == [0, 1, 0, -1]
    frac, n_mono, n_live = monosemantic_fraction(R_KNOWN)
    assert (n_mono, n_live) == (2, 3)
    assert frac == pytest.approx(2 / 3)


def test_modularity_known_values() -> None:
    disjoint = np.eye(4)[:, :2]  # two factors read by different units; rows 2, 3 are dead
    # over the live rows (1,0) and (0,1): rho = -1, so Roy's |rho| form gives 0
    assert circuit_modularity(disjoint) == pytest.approx(0.0)
    assert circuit_modularity(disjoint, form="signed") == pytest.approx(1.0)
    shared = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])  # same circuit for both factors
    assert circuit_modularity(shared) == pytest.approx(0.0)
    # a constant column has no correlation: left out, so no valid pair remains
    assert np.isnan(circuit_modularity(np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])))
    assert np.isnan(circuit_modularity(np.ones((1, 3))))


def test_clusters_recover_two_groups() -> None:
    rng = np.random.default_rng(0)
    g0 = np.abs(rng.normal([1.0, 0.05, 0.05], 0.02, size=(5, 3)))
    g1 = np.abs(rng.normal([0.05, 0.05, 1.0], 0.02, size=(4, 3)))
    R = np.vstack([g0, g1, np.zeros((1, 3))])
    res = circuit_clusters(R, n_clusters=2)
    assert res.labels[-1] == -1
    assert len(set(res.labels[:5])) == 1 and len(set(res.labels[5:9])) == 1
    assert res.labels[0] != res.labels[5]
    assert res.coherence == pytest.approx(1.0)
    assert sorted(res.sizes.tolist()) == [4, 5]
    assert sorted(res.majority_factor.tolist()) == [0, 2]


def test_bad_arguments_raise_argument_error() -> None:
    base, pert = np.zeros((2, 4)), np.zeros((1, 1, 2, 4))
    with pytest.raises(ArgumentError, match="form: expected 'roy2025' or 'normalised'") as info:
        intervention_specificity(base, pert, form="roy")
    assert isinstance(info.value, ValueError) and isinstance(info.value, VaelensError)
    with pytest.raises(ArgumentError, match="form"):
        polysemanticity(np.ones((2, 2)), form="entropy")
    with pytest.raises(ArgumentError, match="n_clusters"):
        circuit_clusters(np.eye(3), n_clusters=0)


def test_bootstrap_ci_lives_in_stats_only() -> None:
    import vaelens.metrics.causal as causal

    assert not hasattr(causal, "bootstrap_ci")


def test_modularity_ignores_dead_rows() -> None:
    # a perfectly modular one-hot layer: K = 4 units, each reading one factor.
    # rho(e_i, e_j) over K entries is -1/(K-1), so M = 1 - 1/3 = 2/3 (signed form: 1)
    one_hot = np.eye(4)
    assert circuit_modularity(one_hot) == pytest.approx(2 / 3)
    # six rows dead_units itself flags must not change it (all rows: rho = -1/9, M = 0.889)
    padded = np.vstack([one_hot, np.zeros((6, 4))])
    assert dead_units(padded)[4:].all()
    assert circuit_modularity(padded) == pytest.approx(2 / 3)
    assert circuit_modularity(padded, form="signed") == pytest.approx(1.0)
    # a live mask drops rows too: leaking rows above rtol masked as collapsed
    leaky = np.vstack([one_hot, 0.05 * np.ones((6, 4))])
    live = np.array([True] * 4 + [False] * 6)
    assert circuit_modularity(leaky, live=live) == pytest.approx(2 / 3)


def test_collapsed_latents_do_not_read_as_monosemantic() -> None:
    poly = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    # six collapsed latents leaking 1e-3 of one factor each: dead at the default rtol
    leak = 1e-3 * np.eye(3)[[0, 1, 2, 0, 1, 2]]
    R = np.vstack([poly, leak])
    assert dead_units(R).tolist() == [False] * 4 + [True] * 6
    frac, n_mono, n_live = monosemantic_fraction(R)
    assert (frac, n_mono, n_live) == (0.0, 0, 4)  # not 0.6
    assert np.isnan(polysemanticity(R)[4:]).all()
    assert primary_factor(R)[4:].tolist() == [-1] * 6
    # a larger leak (5%) passes rtol; the collapse mask removes it
    R5 = np.vstack([poly, 50 * leak])
    assert monosemantic_fraction(R5)[0] == pytest.approx(0.6)
    live = np.array([True] * 4 + [False] * 6)
    assert monosemantic_fraction(R5, live=live) == (0.0, 0, 4)
    assert (circuit_clusters(R5, live=live).labels[4:] == -1).all()
    with pytest.raises(ArgumentError, match="live"):
        monosemantic_fraction(R5, live=np.ones(3, bool))


def test_collapsed_latents_by_kl_and_by_mean_variance() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    mu = np.stack(
        [rng.normal(0, 1, n), np.full(n, 1.0), np.zeros(n), 0.01 * rng.normal(0, 1, n)], 1
    )
    logvar = np.stack([np.zeros(n), np.zeros(n), np.full(n, np.log(4.0)), np.zeros(n)], 1)
    collapsed, kl, var = collapsed_latents(mu, logvar, kl_threshold=0.01)
    # KL_i = E[0.5 (mu^2 + sigma^2 - log sigma^2 - 1)]
    np.testing.assert_allclose(kl[1], 0.5)  # mu = 1, sigma = 1
    np.testing.assert_allclose(kl[2], 0.5 * (4 - np.log(4) - 1))  # mu = 0, sigma = 2
    np.testing.assert_allclose(kl[0], 0.5 * (mu[:, 0] ** 2).mean())
    assert kl[3] == pytest.approx(0.5e-4, rel=0.1)
    assert collapsed.tolist() == [False, False, False, True]
    np.testing.assert_allclose(var, mu.var(0))
    # no log-variance: Var_x(mu_i) below the threshold (the constant latents collapse)
    c2, kl2, _ = collapsed_latents(mu, var_threshold=0.01)
    assert c2.tolist() == [False, True, True, True] and np.isnan(kl2).all()
    with pytest.raises(ArgumentError, match="logvar"):
        collapsed_latents(mu, logvar[:, :2])
