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
    disjoint = np.eye(4)[:, :2]  # two factors read by different units
    # Pearson rho of (1,0,0,0) and (0,1,0,0) is -1/3
    assert circuit_modularity(disjoint) == pytest.approx(1 - 1 / 3)
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
