"""The referee's controls (``controls=True``) on hand-built models whose answers are known.

``HalvesModel`` (tests/test_analysis_circuits.py) has a linear decoder ``D(z) = W z`` whose
column ``w_0`` writes 1 on the left 32 pixels, ``w_1`` on the right 32, ``w_2 = 0``; its
encoder gives ``z0 = left``, ``z1 = right``, ``z2 = 0`` and it reconstructs exactly. For a
linear decoder ``CES_i = ||w_i|| E_{n,v} |v - z_{n,i}| = sqrt(32) E|v - z_i|`` for any codes
``z``: the formula every source is checked against.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from test_analysis_circuits import HalvesDataset, HalvesModel
from vaelens.analysis import (
    AnalysisResult,
    AnalysisSettings,
    analyze,
    draw_latents,
    posterior_source_control,
    recon_normalised_ces,
)
from vaelens.analysis.controls import decoder_modules, spearman
from vaelens.analysis.levels import Inputs
from vaelens.errors import ConfigError
from vaelens.lens import DEFAULT_VALUES, Lens

N, SEED = 24, 1
RUN = {"n_samples": N, "seed": SEED, "n_boot": 20, "baseline": False, "controls": True}
BUDGET = {"control_steps": 400, "control_lr": 0.05, "control_n_train": 256}


def _x() -> torch.Tensor:
    """The analysis samples ``analyze`` draws for ``seed=SEED`` (the first draw of its stream)."""
    ds = HalvesDataset()
    f = ds.sample_factors(N, np.random.default_rng(SEED))
    return torch.from_numpy(ds.images(f))


def _linear_ces(z: torch.Tensor) -> np.ndarray:
    """``sqrt(32) E_{n,v} |v - z_{n,i}|`` for latents 0 and 1, 0 for the dead latent 2."""
    v = np.asarray(DEFAULT_VALUES)
    zz = z.detach().double().numpy()
    out = np.sqrt(32) * np.abs(v[None, None, :] - zz[:, :, None]).mean(axis=(0, 2))
    out[2] = 0.0
    return out


class IgnoringHalves(HalvesModel):
    """Halves whose decoder ignores ``z1`` (the encoder still puts the right half there)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.no_grad():
            self.dec.weight[:, 1] = 0.0


class BiasedHalves(HalvesModel):
    """Halves whose decoder adds 0.1 to every pixel: reconstruction distance sqrt(64 * 0.01)."""

    def __init__(self) -> None:
        super().__init__()
        with torch.no_grad():
            self.dec.bias.fill_(0.1)


@pytest.fixture(scope="module")
def result() -> AnalysisResult:
    torch.manual_seed(0)
    return analyze(HalvesModel(), HalvesDataset(), **RUN, **BUDGET)


def test_controls_are_off_by_default_and_bounded() -> None:
    s = AnalysisSettings()
    assert s.controls is False and s.control_steps == 500 and s.control_aggregate == "shuffle"
    for bad in ({"control_steps": 0}, {"control_lr": 0.0}, {"control_batch_size": 0},
                {"control_n_train": 1}, {"control_aggregate": "marginal"}):  # fmt: skip
        with pytest.raises(ConfigError, match=next(iter(bad))):
            analyze(HalvesModel(), HalvesDataset(), **bad)
    r = analyze(HalvesModel(), HalvesDataset(), n_samples=4, n_boot=5, baseline=False, n_probe=8)
    assert r.controls is None
    assert not any(k.startswith("controls.") for k in r.scalars())


def test_retrained_decoder_recovers_the_ces_of_a_linear_decoder(result: AnalysisResult) -> None:
    rt = result.controls.decoder_retrain
    assert rt.reset_modules == ["dec"] and rt.kept_modules == []
    assert rt.unidentified == [2]  # z2 never varies: read at its training value
    np.testing.assert_allclose(rt.ces_original, _linear_ces(HalvesModel().encode(_x())[0]))
    np.testing.assert_allclose(rt.ces_retrained, rt.ces_original, rtol=5e-3)
    assert rt.ces_retrained[2] == 0.0
    assert rt.ces_spearman == 1.0
    assert rt.edge_jaccard == 1.0
    assert rt.recon_error < 1e-3 < rt.initial_loss  # the fresh decoder learnt the inverse
    assert rt.recon_error_original == result.trained.recon_error
    np.testing.assert_allclose(rt.latent.specificity[:2], 1 / np.log(32), rtol=1e-3)
    np.testing.assert_allclose(rt.causal_graph.factor_to_latent,
                               result.trained.causal_graph.factor_to_latent)  # fmt: skip
    s = result.scalars()
    assert s["controls.retrained_ces_spearman"] == 1.0
    assert s["controls.retrained_recon_error"] == rt.recon_error


def test_retraining_detects_a_decoder_artifact() -> None:
    """The decoder ignores z1 (CES 0) though the encoder uses it: a fresh decoder does not."""
    r = analyze(IgnoringHalves(), HalvesDataset(), **RUN, **BUDGET)
    rt = r.controls.decoder_retrain
    assert r.trained.causal_graph.factor_to_latent[2, 1] > 0.2  # the encoder uses z1
    assert rt.ces_original[1] == 0.0
    np.testing.assert_allclose(rt.ces_retrained[:2], _linear_ces(HalvesModel().encode(_x())[0])[:2],
                               rtol=5e-3)  # fmt: skip
    # ranks (3, 1.5, 1.5) against (2, 3, 1): rank correlation 0
    assert rt.ces_spearman == pytest.approx(0.0, abs=1e-12)
    assert sorted(map(tuple, rt.causal_graph.edges.tolist())) == [(0, 1), (1, 2)]
    assert sorted(map(tuple, r.trained.causal_graph.edges.tolist())) == [(0, 1)]
    assert rt.edge_jaccard == 0.5


def test_posterior_sources_match_the_linear_formula(result: AnalysisResult) -> None:
    ps = result.controls.posterior_sources
    z = HalvesModel().encode(_x())[0]
    assert ps.aggregate_method == "shuffle"
    np.testing.assert_array_equal(ps.ces_encoder, result.trained.latent.ces)
    # the shuffle keeps each latent's marginal: for a linear decoder, the encoder's CES
    np.testing.assert_allclose(ps.aggregate.ces, ps.ces_encoder, rtol=1e-12)
    prior = draw_latents(z, "prior", seed=SEED + 2)
    np.testing.assert_allclose(ps.prior.ces, _linear_ces(prior), rtol=1e-6)
    assert abs(ps.prior.ces[0] - ps.ces_encoder[0]) > 0.1  # the prior's z0 spreads wider
    assert ps.prior.ces[2] == 0.0 and np.isnan(ps.prior.specificity[2])
    s = result.scalars()
    assert s["controls.ces_prior.mean"] == pytest.approx(ps.prior.ces.mean())
    assert s["controls.ces_aggregate.mean"] == pytest.approx(result.trained.latent.ces_mean)


def test_gaussian_aggregate_and_draws(result: AnalysisResult) -> None:
    x = _x()
    model = HalvesModel()
    z = model.encode(x)[0].detach()
    sh = draw_latents(z, "shuffle", seed=5)
    np.testing.assert_array_equal(sh.sort(0).values, z.sort(0).values)  # same marginals
    assert not torch.equal(sh, z)
    # each column has its own permutation: the left/right pairing of the data is broken
    assert not torch.equal(torch.argsort(sh[:, 0]), torch.argsort(sh[:, 1]))
    g = draw_latents(z, "gaussian", seed=5)
    assert torch.all(g[:, 2] == 0)  # zero variance: the dead latent stays at its mean
    assert g[:, 0].std() > 0
    s = AnalysisSettings(n_samples=N, seed=SEED, n_boot=20, control_aggregate="gaussian")
    inp = Inputs(x=x, pairs=[], factor_names=[], probe=None)
    ps = posterior_source_control(Lens(model, example=x[:2]), inp, s, result.trained, max_batch=64)
    assert ps.aggregate_method == "gaussian"
    np.testing.assert_allclose(
        ps.aggregate.ces, _linear_ces(draw_latents(z, "gaussian", seed=SEED + 1)), rtol=1e-6
    )
    with pytest.raises(Exception, match="source"):
        draw_latents(z, "uniform", seed=0)


def test_recon_normalised_ces(result: AnalysisResult) -> None:
    rn = result.controls.recon_normalised
    x = _x().double()
    # Halves reconstructs exactly: the reconstruction normaliser is undefined
    assert rn.recon_distance < 1e-5 and np.isnan(rn.ces_recon_normalised).all()
    spread = float((x - x.mean(0)).flatten(1).norm(dim=1).mean())
    assert rn.output_spread == pytest.approx(spread, rel=1e-5)
    np.testing.assert_allclose(rn.ces_spread_normalised, result.trained.latent.ces / spread,
                               rtol=1e-5)  # fmt: skip
    # a decoder adding 0.1 everywhere: distance sqrt(64) * 0.1 per image, CES unchanged
    ces = result.trained.latent.ces
    biased = recon_normalised_ces(Lens(BiasedHalves(), example=_x()[:2]), _x(), ces)
    assert biased.recon_distance == pytest.approx(0.8, rel=1e-5)
    np.testing.assert_allclose(biased.ces_recon_normalised, ces / 0.8, rtol=1e-5)
    assert result.scalars()["controls.ces_spread_normalised.mean"] == pytest.approx(
        float(np.mean(ces / rn.output_spread))
    )


def test_json_round_trip_with_controls(result: AnalysisResult) -> None:
    text = json.dumps(result.to_json(), allow_nan=False)
    back = AnalysisResult.from_json(json.loads(text))
    assert back.to_json() == result.to_json()
    assert back.controls.decoder_retrain.unidentified == [2]
    assert np.isnan(back.controls.recon_normalised.ces_recon_normalised).all()
    keys = [k for k in result.scalars() if k.startswith("controls.")]
    assert len(keys) == 9
    for k in keys:
        a, b = result.scalars()[k], back.scalars()[k]
        assert a == b or (np.isnan(a) and np.isnan(b)), k


def test_spearman() -> None:
    assert spearman(np.array([1.0, 2, 3]), np.array([10.0, 30, 20])) == pytest.approx(0.5)
    assert np.isnan(spearman(np.zeros(3), np.arange(3.0)))


def test_controls_on_a_vaelens_vae_and_the_vq_decoder() -> None:
    from vaelens.data import load_dataset
    from vaelens.models import build_model

    torch.manual_seed(0)
    model = build_model("beta_vae", width=0.125, latent_dim=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = analyze(model, load_dataset("dsprites", source="procedural"), n_samples=6, n_boot=5,
                n_probe=20, n_show=1, baseline=False, controls=True, control_steps=25, control_lr=0.01,
                control_n_train=32, control_batch_size=16)  # fmt: skip
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    rt = r.controls.decoder_retrain
    assert rt.reset_modules and all(n.startswith("decoder.") for n in rt.reset_modules)
    assert rt.final_loss < 0.5 * rt.initial_loss  # BCE on logits, summed per image
    assert len(rt.ces_retrained) == 3 and np.isfinite(rt.recon_error)
    assert len(r.controls.posterior_sources.prior.ces) == 3
    # VQ: the quantiser fires in encode and decode: shared, not re-initialised
    vq = build_model("vq_vae", width=0.125, code_dim=4, num_codes=16)
    names = decoder_modules(Lens(vq))
    assert names and all(n.startswith("decoder") for n in names)
    assert not any("quantizer" in n or n.startswith("encoder") for n in names)
