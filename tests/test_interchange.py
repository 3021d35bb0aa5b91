"""Interchange interventions on hand-built models whose answer is known.

HalvesModel (tests/test_analysis_circuits.py): images 8x8, left half ``left``, right half
``right``, ``nuisance`` not in the image; ``z0 = u0`` (left), ``z1 = u1 - u0`` (right, via
the polysemantic encoder unit ``u1 = left + right``), ``z2`` dead; the decoder writes ``z0``
to the left half and ``z1`` to the right half, so it reconstructs every image exactly.

``Wired(mu_w, dec_w)`` keeps HalvesModel's encoder units ``(u0, u1, u2) = (a, a + b, b)``
(``a`` = left, ``b`` = right intensity) and sets ``z = mu_w @ u`` and ``out = dec_w @ z``
with ``dec_w`` given as the weights of ``z`` on the (left, right) halves.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from test_analysis_circuits import HalvesDataset, HalvesModel
from vaelens.analysis import AnalysisResult, Interchange, analyze, interchange_matrix, settings_from
from vaelens.errors import ArgumentError, ConfigError, DatasetError
from vaelens.lens import (
    Lens,
    counterfactual_accuracy,
    factor_direction,
    factor_pairs,
    interchange,
    interchange_share,
    isolation,
    mean_share,
    share_and_accuracy,
)

N = 24
R2 = math.sqrt(2)


class Wired(HalvesModel):
    def __init__(self, mu_w: list[list[float]], dec_w: list[list[float]]) -> None:
        super().__init__()
        latent = len(mu_w)
        left = torch.zeros(8, 8)
        left[:, :4] = 1
        right = 1 - left
        self.mu = torch.nn.Linear(3, latent)
        self.logvar = torch.nn.Linear(3, latent)
        self.dec = torch.nn.Linear(latent, 64)
        with torch.no_grad():
            self.mu.weight.copy_(torch.tensor(mu_w))
            self.mu.bias.zero_()
            self.logvar.weight.zero_()
            self.logvar.bias.zero_()
            halves = torch.stack([left.reshape(-1), right.reshape(-1)], 1)  # (64, 2)
            self.dec.weight.copy_(halves @ torch.tensor(dec_w).T)
            self.dec.bias.zero_()


def rotation_model() -> Wired:
    """``z0 = (a + b) / sqrt 2``, ``z1 = (a - b) / sqrt 2``; the decoder rotates back."""
    mu = [[0, 1 / R2, 0], [2 / R2, -1 / R2, 0]]  # from (u0, u1, u2) = (a, a + b, b)
    dec = [[1 / R2, 1 / R2], [1 / R2, -1 / R2]]  # (left, right) weights of z0 and z1
    return Wired(mu, dec)


def spread_model() -> Wired:
    """``right`` spread over z1 and z2 (weights 0.3 and 0.7 in the decoder), z3 dead."""
    mu = [[1, 0, 0], [-1, 1, 0], [-1, 1, 0], [0, 0, 0]]
    dec = [[1, 0], [0, 0.3], [0, 0.7], [0, 0]]
    return Wired(mu, dec)


@pytest.fixture(scope="module")
def pairs() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    ds = HalvesDataset()
    out = {}
    for f in ds.factor_names:
        x, xp, _, _ = factor_pairs(ds, f, N, seed=3)
        out[f] = (x, xp)
    return out


def _shares(lens: Lens, pair, variables) -> np.ndarray:
    res = interchange(lens, *pair, variables, target_images=pair[1])
    return interchange_share(res.patched, res.base, res.source, n_boot=100)[:, 0]


def _direction(lens: Lens, pair) -> torch.Tensor | None:
    res = interchange(lens, *pair, [0])
    return factor_direction(res.base, res.source)


def test_latent_shares_and_accuracy_of_halves(pairs) -> None:
    lens = Lens(HalvesModel())
    variables = [0, 1, 2]
    left = interchange(lens, *pairs["left"], variables, target_images=pairs["left"][1])
    assert left.patched.shape == (3, N, 1, 8, 8)
    share = interchange_share(left.patched, left.base, left.source, n_boot=200)
    np.testing.assert_allclose(share[:, 0], [1.0, 0.0, 0.0], atol=1e-6)
    assert share[0, 1] == pytest.approx(1.0) and share[0, 2] == pytest.approx(1.0)
    acc = counterfactual_accuracy(left.patched, left.base, left.source, left.target, n_boot=200)
    np.testing.assert_allclose(acc[:, 0], [1.0, 0.0, 0.0], atol=1e-6)
    both = share_and_accuracy(left, n_boot=200)
    np.testing.assert_array_equal(both[0], share)
    np.testing.assert_array_equal(both[1], acc)
    np.testing.assert_allclose(mean_share(left.share), share[:, 0], rtol=1e-12)
    no_target = interchange(lens, *pairs["left"], variables)
    with pytest.raises(ArgumentError, match=r"^res: the interchange was run without target_images"):
        share_and_accuracy(no_target)
    np.testing.assert_allclose(_shares(lens, pairs["right"], variables), [0, 1, 0], atol=1e-6)
    nuisance = _shares(lens, pairs["nuisance"], variables)
    assert np.isnan(nuisance).all()  # the nuisance factor does not change the image
    res = interchange(lens, *pairs["nuisance"], variables, target_images=pairs["nuisance"][1])
    acc = counterfactual_accuracy(res.patched, res.base, res.source, res.target)
    assert np.isnan(acc).all()


def test_isolation_of_halves(pairs) -> None:
    lens = Lens(HalvesModel())
    u = {f: _direction(lens, p) for f, p in pairs.items()}
    assert u["nuisance"] is None
    # the left factor's direction: the left half, uniformly (up to sign)
    expected = torch.zeros(1, 8, 8)
    expected[..., :4] = 1 / math.sqrt(32)
    assert abs(float(u["left"] @ expected.reshape(-1).double())) == pytest.approx(1.0)
    res = interchange(lens, *pairs["left"], [0, 1, 2], other_directions=u["right"][None])
    iso = isolation(res.patched, res.base, u["right"][None], n_boot=100)
    assert iso[0, 0] == pytest.approx(1.0)  # z0 moves nothing on the right
    assert np.isnan(iso[1:, 0]).all()  # z1 and z2 do not move the output on left pairs
    np.testing.assert_allclose(res.isolation[0], 1.0)


def test_unit_interchange_matches_the_wiring(pairs) -> None:
    lens = Lens(HalvesModel())
    variables = [("enc", 0), ("enc", 1), ("enc", 2), ("enc", [0, 1])]
    x, xp = pairs["left"]
    res = interchange(lens, x, xp, variables, target_images=xp)
    share = interchange_share(res.patched, res.base, res.source, n_boot=100)[:, 0]
    # u0 moves z0 by da and z1 = u1 - u0 by -da: the whole left change, and a wrong right one
    np.testing.assert_allclose(share, [1.0, 0.0, 0.0, 1.0], atol=1e-6)
    acc = counterfactual_accuracy(res.patched, res.base, res.source, res.target, n_boot=100)
    # u0 alone: left right, right half off by the same amount -> no closer to x' than x;
    # u1 alone: only the right half moves, by da: twice as far; u0 and u1: exact
    np.testing.assert_allclose(acc[:, 0], [0.0, -1.0, 0.0, 1.0], atol=1e-6)
    u_right = _direction(lens, pairs["right"])
    iso = isolation(res.patched, res.base, u_right[None], n_boot=100)[:, 0]
    assert iso[0] == pytest.approx(1 - 1 / R2)  # (da, -da) has cosine 1/sqrt(2) with right
    assert iso[1] == pytest.approx(0.0)  # all of it along the right half
    assert np.isnan(iso[2]) and iso[3] == pytest.approx(1.0)
    right = interchange(lens, *pairs["right"], variables)
    share = interchange_share(right.patched, right.base, right.source, n_boot=100)[:, 0]
    np.testing.assert_allclose(share, [0.0, 1.0, 0.0, 1.0], atol=1e-6)


def test_rotation_splits_each_share_in_half(pairs) -> None:
    lens = Lens(rotation_model())
    for f in ("left", "right"):
        np.testing.assert_allclose(
            _shares(lens, pairs[f], [0, 1, [0, 1]]), [0.5, 0.5, 1.0], atol=1e-6
        )


def test_spread_factor_shares(pairs) -> None:
    lens = Lens(spread_model())
    shares = _shares(lens, pairs["right"], [0, 1, 2, 3, [1, 2]])
    np.testing.assert_allclose(shares, [0.0, 0.3, 0.7, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(_shares(lens, pairs["left"], [0, 1, 2, 3]), [1, 0, 0, 0], atol=1e-6)


def _naive(lens: Lens, x, xp, variables) -> torch.Tensor:
    """One forward per (variable, pair): the reference for the batched implementation."""
    out = []
    for layer, units in variables:
        rows = []
        for n in range(x.shape[0]):
            if layer == "latent":
                z = lens.encode_mean(x[n : n + 1]).clone()
                z[:, list(units)] = lens.encode_mean(xp[n : n + 1])[:, list(units)]
                rows.append(lens.decode_output(z))
            else:
                _, src = lens.run_with_cache(xp[n : n + 1], [layer])

                def put(a, _, src=src[layer], units=units):
                    a = a.clone()
                    a[:, list(units)] = src[:, list(units)]
                    return a

                rows.append(lens.run_with_hooks(x[n : n + 1], [(layer, put)]))
        out.append(torch.cat(rows))
    return torch.stack(out)


def test_batched_equals_naive_loop(pairs) -> None:
    torch.manual_seed(5)
    model = HalvesModel()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.5)
    lens = Lens(model)
    x, xp = pairs["left"][0], pairs["right"][1]  # any pairs
    variables = [0, [1, 2], ("enc", [0, 2]), ("enc", 1), ("mu", 2), "enc"]
    res = interchange(lens, x, xp, variables, max_batch=7)  # chunks that split the pairs
    with torch.no_grad():
        ref = _naive(lens, x, xp, res.variables)
    assert res.variables[-1] == ("enc", (0, 1, 2))
    torch.testing.assert_close(res.patched, ref, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(res.patched[0], res.base)  # the patches do something


def test_bad_variables_are_one_line_errors(pairs) -> None:
    lens = Lens(HalvesModel())
    x, xp = pairs["left"]
    cases = [
        ([("nope", 0)], r"variables\[0\]: 'nope' is not a hook point"),
        ([0, ("enc", 3)], r"variables\[1\]: unit 3 out of range \[0, 3\)"),
        ([5], r"variables\[0\]: unit 5 out of range \[0, 3\)"),
        ([("enc", "a")], r"variables\[0\]: expected an int or a sequence of ints"),
        ([], "variables: expected at least one variable"),
    ]
    for variables, match in cases:
        with pytest.raises(ArgumentError, match=match) as exc:
            interchange(lens, x, xp, variables)
        assert "\n" not in str(exc.value)
    with pytest.raises(ArgumentError, match="x_prime: expected the shape of x"):
        interchange(lens, x, xp[:3], [0])
    with pytest.raises(ArgumentError, match="target_images: expected 24 rows"):
        interchange(lens, x, xp, [0], target_images=xp[:3])


# --------------------------------------------------------------------------- part 2: the matrix


def _matrix(model, **kw) -> Interchange:
    return interchange_matrix(Lens(model), HalvesDataset(), n_pairs=N, seed=2, n_boot=200, **kw)


def test_matrix_of_halves() -> None:
    m = _matrix(HalvesModel())
    assert m.share.shape == (3, 3) and m.share_ci.shape == (3, 3, 2)
    assert np.isnan(m.share[:, 0]).all() and np.isnan(m.accuracy[:, 0]).all()  # nuisance
    np.testing.assert_allclose(m.share[:, 1:], [[1, 0], [0, 1], [0, 0]], atol=1e-6)
    np.testing.assert_allclose(m.accuracy[:, 1:], [[1, 0], [0, 1], [0, 0]], atol=1e-6)
    np.testing.assert_allclose(m.isolation[0, 1], 1.0)  # z0 moves nothing on the right
    np.testing.assert_allclose(m.full_share[1:], 1.0, atol=1e-6)
    assert sorted(map(tuple, m.edges.tolist())) == [(0, 1), (1, 2)]  # (latent, factor)
    assert m.min_sets == [[], [0], [1]]
    assert np.isnan(m.min_set_size[0]) and m.min_set_size[1:].tolist() == [1.0, 1.0]
    np.testing.assert_allclose(m.min_set_share[1:], 1.0, atol=1e-6)
    np.testing.assert_allclose(m.min_set_accuracy[1:], 1.0, atol=1e-6)
    sc = m.scalars()
    assert sc["interchange.edges"] == 2.0
    assert sc["interchange.min_set_size.left"] == 1.0
    assert np.isnan(sc["interchange.min_set_size.nuisance"])
    assert sc["interchange.share_max.right"] == pytest.approx(1.0)
    assert np.isnan(sc["interchange.share_max.nuisance"])
    assert sc["interchange.mean_min_set_size"] == 1.0  # the nuisance factor has no set
    assert sc["interchange.mean_share_max"] == pytest.approx(1.0)


def test_matrix_of_rotation_needs_both_latents() -> None:
    m = _matrix(rotation_model())
    np.testing.assert_allclose(m.share[:, 1:], 0.5, atol=1e-6)
    assert m.min_sets == [[], [0, 1], [0, 1]]
    np.testing.assert_allclose(m.min_set_share[1:], 1.0, atol=1e-6)
    np.testing.assert_allclose(m.min_set_accuracy[1:], 1.0, atol=1e-5)
    # each latent alone: d/2 on both halves; error 2 * 32 (d/2)^2 = 16 d^2 of 32 d^2 -> 0.5
    np.testing.assert_allclose(m.accuracy[:, 1:], 0.5, atol=1e-6)


def test_matrix_of_spread_factor_finds_the_two_latents() -> None:
    m = _matrix(spread_model())
    assert m.min_sets == [[], [0], [1, 2]]
    np.testing.assert_allclose(m.share[:, 2], [0, 0.3, 0.7, 0], atol=1e-6)
    # a lower coverage is met by the 0.7 latent alone
    assert _matrix(spread_model(), coverage=0.6).min_sets[2] == [2]
    assert sorted(map(tuple, m.edges.tolist())) == [(0, 1), (1, 2), (2, 2)]


def test_matrix_bad_arguments() -> None:
    lens = Lens(HalvesModel())
    with pytest.raises(DatasetError, match=r"^dataset: object lacks") as exc:
        interchange_matrix(lens, object())
    assert "\n" not in str(exc.value)
    for kw, match in [
        ({"n_pairs": 1}, "n_pairs: expected an int >= 2"),
        ({"threshold": float("nan")}, "threshold: expected a finite number"),
        ({"coverage": 0}, r"coverage: expected a number in \(0, 1\]"),
    ]:
        with pytest.raises(ArgumentError, match=match):
            interchange_matrix(lens, HalvesDataset(), **kw)
    with pytest.raises(ConfigError, match="'interchange_pairs'"):
        settings_from(interchange_pairs=1)


def test_analyze_carries_the_block_for_model_and_twin() -> None:
    torch.manual_seed(0)
    kw = {"n_samples": 8, "seed": 1, "n_boot": 50, "interchange_pairs": 16}
    res = analyze(HalvesModel(), HalvesDataset(), **kw)
    block = res.trained.interchange
    assert block is not None and res.baseline is not None
    assert res.baseline.interchange is not None
    assert block.min_sets == [[], [0], [1]] and block.n_pairs == 16
    sc = res.scalars()
    assert sc["interchange.edges"] == 2.0 and "baseline.interchange.edges" in sc
    text = json.dumps(res.to_json(), allow_nan=False)
    back = AnalysisResult.from_json(json.loads(text))
    assert back.to_json() == res.to_json()
    np.testing.assert_array_equal(back.trained.interchange.share_ci, block.share_ci)
    off = analyze(HalvesModel(), HalvesDataset(), interchange=False, baseline=False, **kw)
    assert off.trained.interchange is None
    assert not any(k.startswith("interchange.") for k in off.scalars())


def test_report_graph_is_the_interchange_graph_when_the_run_has_one() -> None:
    from report_fixtures import make_analysis
    from vaelens.report.figures import graph_weights

    probe_run = make_analysis(np.random.default_rng(0), "beta_vae", "synthetic", 0, latent=3)
    w, mask, source = graph_weights(probe_run)
    assert source == "probe" and w.shape == mask.shape
    m = _matrix(HalvesModel())  # 3 latents x (nuisance, left, right); edges (0, 1) and (1, 2)
    trained = probe_run.trained.model_copy(update={"interchange": m})
    run = probe_run.model_copy(update={"trained": trained})
    w, mask, source = graph_weights(run)
    assert source == "interchange"
    assert sorted(zip(*np.nonzero(mask), strict=True)) == [(0, 1), (1, 2)]
    np.testing.assert_allclose(w[:, 0], 0.0)  # NaN (the nuisance moves nothing) drawn as 0
    np.testing.assert_allclose(w[0, 1], 1.0, atol=1e-6)


def test_traversal_rows_are_labelled_with_their_factor_or_collapse() -> None:
    from report_fixtures import make_analysis
    from vaelens.analysis.figures import traversal_labels

    base = make_analysis(np.random.default_rng(0), "beta_vae", "synthetic", 0, latent=3)
    m = _matrix(HalvesModel())  # edges (z0, left) and (z1, right); z2 carries nothing
    trained = base.trained.model_copy(update={"interchange": m})
    run = base.model_copy(update={"trained": trained})
    run._traversal_rows = ["z0", "z1", "z2"]
    assert traversal_labels(run) == ["z0 left 1.00", "z1 right 1.00", "z2"]
    from vaelens.analysis.result import LatentPosterior

    z = np.zeros(3)
    post = LatentPosterior(
        rule="kl", threshold=0.01, mean=z, mean_variance=z, posterior_variance=z, spread=z,
        kl=np.array([1.0, 0.0, 1.0]), collapsed=np.array([False, True, False]),
    )  # fmt: skip
    run = run.model_copy(update={"trained": trained.model_copy(update={"posterior": post})})
    run._traversal_rows = ["z0", "z1", "z2"]
    assert traversal_labels(run) == ["z0 left 1.00", "z1 collapsed", "z2"]
