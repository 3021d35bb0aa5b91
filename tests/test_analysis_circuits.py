"""vaelens.analyze finds the circuits of a hand-built model whose wiring is known.

Images 8x8: the left half has intensity ``left``, the right half ``right``; the first factor
``nuisance`` does not change the image (factor order: nuisance, left, right, so that a
transposed latent/factor matrix cannot pass). The (plain nn.Module, non-vaelens) model:

- encoder unit 0 reads the left half only, unit 1 reads both halves, unit 2 the right half;
- ``z0 = u0`` (left), ``z1 = u1 - u0`` (right, carried by the polysemantic unit 1), ``z2 = 0``
  (a dead latent: zero weights in and out);
- the decoder writes ``z0`` to the left half and ``z1`` to the right half of the output.
"""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from vaelens.analysis import SCHEMA_VERSION, AnalysisResult, analyze, load_analysis, random_baseline
from vaelens.analysis.core import baseline_seed
from vaelens.errors import ConfigError, ModelContractError

LEVELS = 4


class HalvesDataset:
    name = "halves"
    factor_names = ("nuisance", "left", "right")
    factor_sizes = (3, LEVELS, LEVELS)
    factor_values: ClassVar[list[np.ndarray]] = [
        np.arange(3.0),
        np.linspace(0.2, 0.8, LEVELS),
        np.linspace(0.2, 0.8, LEVELS),
    ]
    image_shape = (1, 8, 8)

    def images(self, factors: np.ndarray) -> np.ndarray:
        f = np.asarray(factors)
        out = np.zeros((f.shape[0], 1, 8, 8), dtype=np.float32)
        out[:, 0, :, :4] = self.factor_values[1][f[:, 1]][:, None, None]
        out[:, 0, :, 4:] = self.factor_values[2][f[:, 2]][:, None, None]
        return out

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], axis=1)


class HalvesModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        left = torch.zeros(8, 8)
        left[:, :4] = 1 / 32
        right = torch.zeros(8, 8)
        right[:, 4:] = 1 / 32
        self.enc = nn.Sequential(nn.Linear(64, 3), nn.ReLU())
        self.mu = nn.Linear(3, 3)
        self.logvar = nn.Linear(3, 3)
        self.dec = nn.Linear(3, 64)
        with torch.no_grad():
            self.enc[0].weight.copy_(torch.stack([left, left + right, right]).reshape(3, 64))
            self.enc[0].bias.zero_()
            self.mu.weight.copy_(torch.tensor([[1.0, 0, 0], [-1.0, 1, 0], [0, 0, 0]]))
            self.mu.bias.zero_()
            self.logvar.weight.zero_()
            self.logvar.bias.zero_()
            w = torch.zeros(64, 3)
            w[:, 0] = left.reshape(-1) * 32
            w[:, 1] = right.reshape(-1) * 32
            self.dec.weight.copy_(w)
            self.dec.bias.zero_()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(x.flatten(1))
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z).view(-1, 1, 8, 8)


@pytest.fixture(scope="module")
def result() -> AnalysisResult:
    torch.manual_seed(0)
    return analyze(
        HalvesModel(), HalvesDataset(), n_samples=24, seed=1, n_boot=200, circuits=True,
        alignment=True, alignment_steps=60,
    )  # fmt: skip


def _leaves(tree: object) -> list:
    if isinstance(tree, dict):
        return [(k, *rest) for k, v in tree.items() for rest in _leaves(v)]
    if isinstance(tree, list) and tree and isinstance(tree[0], list | dict):
        return [(i, *rest) for i, v in enumerate(tree) for rest in _leaves(v)]
    return [(tree,)]


def test_json_round_trip_is_exact(result: AnalysisResult, tmp_path) -> None:
    text = json.dumps(result.to_json(), allow_nan=False)  # strict JSON: NaN became null
    back = AnalysisResult.from_json(json.loads(text))
    assert back.to_json() == result.to_json()
    assert back.scalars().keys() == result.scalars().keys()
    for k, v in result.scalars().items():
        assert v == back.scalars()[k] or (np.isnan(v) and np.isnan(back.scalars()[k])), k
    np.testing.assert_array_equal(back.trained.layers["enc"].responses,
                                  result.trained.layers["enc"].responses)  # fmt: skip
    assert np.isnan(back.trained.latent.specificity[2])  # null read back as NaN
    assert back.meta.settings == result.meta.settings
    path = result.save(tmp_path / "analysis.json")
    assert load_analysis(path).to_json() == result.to_json()
    # every leaf of the JSON is a plain number, string, bool or null
    assert all(isinstance(leaf[-1], int | float | str | bool | type(None) | list)
               for leaf in _leaves(result.to_json()))  # fmt: skip


def test_schema_version_and_bad_files_are_one_line_errors(result: AnalysisResult, tmp_path) -> None:
    data = result.to_json()
    assert data["schema_version"] == SCHEMA_VERSION
    old = dict(data, schema_version=2)
    with pytest.raises(ConfigError, match="schema version 2"):
        AnalysisResult.from_json(old, source="run/analysis.json")
    broken = json.loads(json.dumps(data))
    broken["trained"]["latent"]["n_samples"] = "many"
    with pytest.raises(ConfigError, match=r"trained\.latent\.n_samples") as exc:
        AnalysisResult.from_json(broken)
    assert "\n" not in str(exc.value)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json"):
        load_analysis(tmp_path / "bad.json")


def test_meta(result: AnalysisResult) -> None:
    meta = result.meta
    assert meta.factor_names == ["nuisance", "left", "right"]
    assert meta.latent_dim == 3
    assert meta.layers == ["enc", "mu", "logvar", "dec"]
    assert meta.encoder_layers == ["enc", "mu", "logvar"]
    assert meta.channel_layers == ["enc"]
    assert meta.settings.n_samples == 24 and meta.settings.seed == 1
    assert result.trained.vq is None
    assert result.baseline is not None and set(result.baseline.layers) == set(meta.layers)


def test_causal_graph_edges(result: AnalysisResult) -> None:
    cg = result.trained.causal_graph
    assert sorted(map(tuple, cg.edges.tolist())) == [(0, 1), (1, 2)]  # (latent, factor)
    l2f = cg.latent_to_factor
    assert l2f[2].tolist() == [0.0, 0.0, 0.0]  # the dead latent moves nothing
    # the nuisance factor is not in the pixels: its probe fails and gates its edges off
    assert cg.probe_r2[0] < 0.2 < min(cg.probe_r2[1:])
    f2l = cg.factor_to_latent
    assert f2l.shape == (3, 3)  # (factor, latent)
    assert f2l[1, 0] > 0.2 and f2l[2, 1] > 0.2  # |delta| ~ 0.3, spread ~ 1 (logvar 0)
    np.testing.assert_allclose(f2l[1, 1:], 0.0, atol=1e-6)
    np.testing.assert_allclose(f2l[2, [0, 2]], 0.0, atol=1e-6)
    np.testing.assert_allclose(f2l[0], 0.0, atol=1e-12)  # nuisance changes nothing


def test_dead_latent_has_zero_effect(result: AnalysisResult) -> None:
    lat = result.trained.latent
    assert lat.ces[2] == 0.0 and lat.ces[0] > 0 and lat.ces[1] > 0
    assert np.isnan(lat.specificity[2])
    assert lat.null_fraction[2] == 1.0
    assert lat.null_fraction[0] == 0.0
    # z0 changes exactly half of the pixels uniformly: H = log 32
    np.testing.assert_allclose(lat.specificity[0], 1 / np.log(32), rtol=1e-6)
    assert lat.specificity_mean == pytest.approx(np.nanmean(lat.specificity))


def test_monosemantic_and_polysemantic_units(result: AnalysisResult) -> None:
    enc = result.trained.layers["enc"]
    R = enc.responses
    assert R.shape == (3, 3)
    np.testing.assert_allclose(R[:, 0], 0.0)  # nuisance: no response
    assert R[0, 1] > 0 and R[0, 2] == 0 and R[2, 1] == 0 and R[2, 2] > 0
    pr = enc.polysemanticity.participation
    assert pr[0] == pytest.approx(1.0) and pr[2] == pytest.approx(1.0)
    assert pr[1] > 1.5  # reads both halves
    mono = enc.monosemantic
    assert (mono.n_monosemantic, mono.n_live, mono.n_units) == (2, 3, 3)
    # logvar is wired to nothing: every unit dead
    logvar = result.trained.layers["logvar"]
    assert logvar.monosemantic.n_live == 0
    assert np.isnan(logvar.polysemanticity.participation).all()
    assert np.isnan(result.scalars()["polysemanticity.logvar"])


def test_mediating_channel(result: AnalysisResult) -> None:
    med = result.trained.mediation
    ch = med.by_channel
    np.testing.assert_allclose(ch["right"]["enc"], [0.0, 1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(ch["left"]["enc"], [1.0, 0.0, 0.0], atol=1e-5)
    assert np.isnan(ch["nuisance"]["enc"]).all()  # no effect to mediate
    # the network is linear on these inputs: the first-order estimate is exact
    att = med.by_channel_attribution
    np.testing.assert_allclose(att["right"]["enc"], [0.0, 1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(att["left"]["mu"], [1.0, 0.0, 0.0], atol=1e-5)
    by = med.by_layer
    assert by["left"]["enc"] == pytest.approx(1.0)
    assert by["left"]["logvar"] == pytest.approx(0.0)
    assert result.scalars()["mediation.left.enc"] == pytest.approx(1.0)


def test_random_baseline_reinitialises_and_is_seeded() -> None:
    m = HalvesModel()
    a, b = random_baseline(m, 3), random_baseline(m, 3)
    c = random_baseline(m, 4)
    assert not torch.equal(a.mu.weight, m.mu.weight)
    assert torch.equal(a.mu.weight, b.mu.weight)
    assert not torch.equal(a.mu.weight, c.mu.weight)
    assert torch.equal(m.mu.bias, torch.zeros(3))  # original untouched

    class NoReset(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))

    with pytest.raises(ModelContractError, match="reset_parameters"):
        random_baseline(NoReset(), 0)


def test_collapsed_latent_is_reported_and_not_a_live_unit() -> None:
    """z2 = 0.05 u0 with sigma = 1: it leaks 5% of the left half (above dead_rtol) into the
    mu layer, but its KL to the prior is 0.5 E[(0.05 u0)^2] ~ 3e-4 nats: collapsed."""
    model = HalvesModel()
    with torch.no_grad():
        model.mu.weight[2] = torch.tensor([0.05, 0.0, 0.0])
    res = analyze(model, HalvesDataset(), n_samples=24, seed=1, n_boot=50, baseline=False)
    post = res.trained.posterior
    assert post is not None and post.rule == "kl" and post.threshold == 0.01
    assert post.collapsed.tolist() == [False, False, True]
    # KL_2 = 0.5 E[z2^2] = 0.5 (0.05)^2 E[u0^2], E[u0^2] = mean_0^2 + Var(mu_0)
    e_u0_sq = post.mean[0] ** 2 + post.mean_variance[0]
    np.testing.assert_allclose(post.kl[2], 0.5 * 0.05**2 * e_u0_sq, rtol=1e-4)
    assert post.kl[2] < 0.01
    assert post.kl[0] > 0.1 and post.kl[1] > 0.1
    np.testing.assert_allclose(post.posterior_variance, 1.0)
    assert res.meta.latent_layer == "mu"
    mu = res.trained.layers["mu"]
    assert mu.responses[2, 1] == pytest.approx(0.05 * mu.responses[0, 1])  # leaks, not dead
    assert mu.dead.tolist() == [False, False, False]
    assert mu.collapsed.tolist() == [False, False, True]
    assert mu.live.tolist() == [True, True, False]
    assert (mu.monosemantic.n_live, mu.monosemantic.n_units) == (2, 3)
    assert np.isnan(mu.polysemanticity.participation[2]) and mu.clusters.labels[2] == -1
    assert not res.trained.layers["enc"].collapsed.any()  # only the latent layer collapses
    flat = res.scalars()
    assert flat["latent.n_collapsed"] == 1.0 and flat["n_collapsed.mu"] == 1.0
    assert flat["n_dead.logvar"] == 3.0 and flat["n_dead.mu"] == 0.0


class ScaledHalves(HalvesModel):
    """HalvesModel reparametrised ``z -> c z`` (mean and sigma scaled, decoder divided by c)."""

    def __init__(self, c: float) -> None:
        super().__init__()
        with torch.no_grad():
            self.mu.weight.mul_(c)
            self.logvar.bias.fill_(2 * np.log(c))
            self.dec.weight.div_(c)


def test_posterior_sweep_is_invariant_to_the_latent_scale() -> None:
    kw = {"n_samples": 24, "seed": 1, "n_boot": 50, "baseline": False}
    ref = analyze(ScaledHalves(1.0), HalvesDataset(), **kw)
    big = analyze(ScaledHalves(4.0), HalvesDataset(), **kw)
    for res in (ref, big):
        lat, post = res.trained.latent_posterior, res.trained.posterior
        assert res.trained.latent.sweep == "absolute" and lat.sweep == "posterior"
        a = np.asarray(res.meta.settings.latent_values)
        np.testing.assert_allclose(lat.values, post.mean[:, None] + post.spread[:, None] * a)
        np.testing.assert_allclose(res.trained.latent.values, np.broadcast_to(a, (3, 7)))
    # the same model in other units: same posterior-sweep effects, not the same absolute ones
    np.testing.assert_allclose(big.trained.latent_posterior.ces, ref.trained.latent_posterior.ces,
                               rtol=1e-5)  # fmt: skip
    assert big.trained.latent.ces[0] < 0.5 * ref.trained.latent.ces[0]
    flat = ref.scalars()
    assert flat["ces_posterior.mean"] == ref.trained.latent_posterior.ces_mean
    assert flat["ces.mean"] == ref.trained.latent.ces_mean


def test_latent_sweep_setting_chooses_the_blocks() -> None:
    kw = {"n_samples": 12, "seed": 1, "n_boot": 20, "baseline": False}
    both = analyze(HalvesModel(), HalvesDataset(), **kw)
    absolute = analyze(HalvesModel(), HalvesDataset(), latent_sweep="absolute", **kw)
    post = analyze(HalvesModel(), HalvesDataset(), latent_sweep="posterior", **kw)
    assert (
        absolute.trained.latent_posterior is None and "ces_posterior.mean" not in absolute.scalars()
    )
    np.testing.assert_array_equal(absolute.trained.latent.ces, both.trained.latent.ces)
    assert post.trained.latent.sweep == "posterior" and post.trained.latent_posterior is None
    np.testing.assert_array_equal(post.trained.latent.ces, both.trained.latent_posterior.ces)
    assert "ces.mean" not in post.scalars() and "ces_posterior.mean" in post.scalars()
    with pytest.raises(ConfigError, match="latent_sweep"):
        analyze(HalvesModel(), HalvesDataset(), latent_sweep="relative", **kw)
    with pytest.raises(ConfigError, match="dead_rtol"):
        analyze(HalvesModel(), HalvesDataset(), dead_rtol=1.0, **kw)
    with pytest.raises(ConfigError, match="collapse_kl"):
        analyze(HalvesModel(), HalvesDataset(), collapse_kl=-0.1, **kw)


class OwnInit(nn.Module):
    """disentangling-vae style: the root's reset_parameters re-initialises its children."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(64, 64)
        self.b = nn.Linear(64, 64)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in (self.a, self.b):
            nn.init.normal_(m.weight, std=0.5)
            nn.init.zeros_(m.bias)


def test_random_twin_keeps_a_root_init_and_is_not_the_initial_weights() -> None:
    twin = random_baseline(OwnInit(), 0)
    # the root's scheme wins over the children's default (std 1/sqrt(3 * 64) = 0.072)
    for w in (twin.a.weight, twin.b.weight):
        assert 0.45 < float(w.detach().std()) < 0.55
    assert twin.a.bias.abs().max() == 0
    # a model initialised under the study seed s: its twin is seeded baseline_seed(s) != s
    s = 5
    assert baseline_seed(s) != s
    torch.manual_seed(s)
    model = OwnInit()
    init = [p.detach().clone() for p in model.parameters()]
    # re-initialising under s itself replays the construction: the twin would be the init
    same_seed = random_baseline(model, s)
    assert all(torch.equal(p, q) for p, q in zip(same_seed.parameters(), init, strict=True))
    twin = random_baseline(model, baseline_seed(s))
    assert not torch.equal(twin.a.weight, init[0]) and not torch.equal(twin.b.weight, init[2])
    assert 0.45 < float(twin.a.weight.detach().std()) < 0.55


def test_analyze_records_the_twin_seed() -> None:
    res = analyze(HalvesModel(), HalvesDataset(), n_samples=12, seed=3, n_boot=20)
    assert res.meta.baseline_seed == baseline_seed(3) == 3 + 1_000_003
    assert analyze(HalvesModel(), HalvesDataset(), n_samples=12, seed=3, n_boot=20,
                   baseline=False).meta.baseline_seed is None  # fmt: skip


def test_unit_circuits_in_the_analysis(result: AnalysisResult) -> None:
    circ = result.trained.circuits
    assert circ is not None and result.baseline is not None
    assert result.baseline.circuits is not None  # the twin is measured the same way
    assert circ.layers == ["enc"]  # the analysed encoder layer (mu and logvar are heads)
    j = 0
    f_left, f_right = circ.factor_names.index("left"), circ.factor_names.index("right")
    # left moves u0 and u1, but z reads left from u0 alone; right reaches z only through u1
    assert circ.sets[f_left][j] == [0] and circ.sets[f_right][j] == [1]
    assert circ.latent_sets[f_left] == [0] and circ.latent_sets[f_right] == [1]
    assert circ.path_share[f_right, j] == pytest.approx(1.0, abs=1e-6)
    scalars = result.trained.scalars()
    assert scalars["circuits.set_size.right.enc"] == 1.0


def test_alignment_in_the_analysis(result: AnalysisResult) -> None:
    al = result.trained.alignment
    assert al is not None and al.k == 1
    for name, unit in (("left", 0), ("right", 1)):
        f = al.factor_names.index(name)
        assert al.axis_units[f] == [unit]
        assert al.axis_share[f] == pytest.approx(1.0, abs=1e-6)
        assert al.share[f] > 0.95  # the learned rotation finds the same axis
    assert np.isnan(al.share[al.factor_names.index("nuisance")])
    assert result.trained.scalars()["alignment.axis_share.left"] == pytest.approx(1.0)


def test_progress_callback_hears_each_stage() -> None:
    heard: list[tuple[str, int, int]] = []
    analyze(
        HalvesModel(), HalvesDataset(), n_samples=8, n_boot=20, interchange=False,
        progress=lambda *a: heard.append(a),
    )  # fmt: skip
    assert heard == [("trained model", 0, 2), ("random twin", 1, 2), ("done", 2, 2)]
