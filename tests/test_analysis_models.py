"""vaelens.analyze on every vaelens variant (tiny widths), the VQ path, and analyze_run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelens.analysis import AnalysisResult, analyze, analyze_run, load_analysis, random_baseline
from vaelens.data import load_dataset
from vaelens.errors import ConfigError, DatasetError
from vaelens.models import build_model, list_models
from vaelens.train import TrainConfig, train

FAST = {"n_samples": 6, "n_boot": 20, "n_probe": 40, "n_show": 1}


@pytest.fixture(scope="module")
def dsprites():
    return load_dataset("dsprites", source="procedural")


def _check_common(res: AnalysisResult, n_units: int) -> None:
    json.dumps(res.to_json(), allow_nan=False)
    lat = res.trained.latent
    assert len(lat.ces) == n_units == res.meta.latent_dim
    assert len(lat.specificity) == n_units
    assert res.trained.causal_graph.latent_to_factor.shape == (n_units, 5)
    assert res.trained.causal_graph.factor_to_latent.shape == (5, n_units)
    for layer in res.meta.layers:
        assert res.trained.layers[layer].responses.shape[1] == 5
    lo, hi = lat.ces_mean_ci
    assert lo <= lat.ces_mean <= hi
    assert res.baseline is not None and res.baseline.latent.ces_mean > 0
    assert res.trained.recon_error > 0 and res.baseline.recon_error > 0


@pytest.mark.parametrize("variant", [v for v in list_models() if v != "vq_vae"])
def test_analyze_every_continuous_variant(variant: str, dsprites) -> None:
    torch.manual_seed(0)
    model = build_model(variant, width=0.125, latent_dim=3)
    res = analyze(model, dsprites, seed=0, **FAST)
    _check_common(res, 3)
    assert res.trained.vq is None
    assert res.meta.channel_layers == ["encoder.conv_2"]
    assert "encoder.mu" in res.meta.encoder_layers
    assert res.meta.latent_layer == "encoder.mu"
    post = res.trained.posterior
    assert post is not None and post.rule == "kl" and post.collapsed.shape == (3,)
    assert res.trained.layers["encoder.mu"].collapsed.tolist() == post.collapsed.tolist()
    assert res.trained.latent_posterior is not None
    assert res.trained.latent_posterior.values.shape == (3, 7)
    assert len(res.trained.mediation.by_channel["shape"]["encoder.conv_2"]) == 16
    # a FactorVAE discriminator never fires in encode/decode: it is not analysed
    assert not any("discriminator" in n for n in res.meta.layers)


def test_analyze_vq_vae_uses_code_swaps(dsprites) -> None:
    torch.manual_seed(0)
    model = build_model("vq_vae", width=0.125, code_dim=4, num_codes=16)
    res = analyze(model, dsprites, seed=0, vq_swaps=2, **FAST)
    _check_common(res, 64)  # 8 x 8 code positions, not 4 * 64 z_e dims
    assert res.meta.vq is True and res.meta.latent_dim_raw == 256
    vq = res.trained.vq
    assert vq is not None and vq.n_positions == 64
    # a code swap always changes the decoded image of an untrained VQ-VAE
    assert vq.code_swap_effect_mean > 0 and res.trained.latent.ces.min() > 0
    assert 0.0 <= vq.continuous_zero_fraction <= 1.0
    assert res.trained.latent.units == "code positions"
    assert res.trained.latent.sweep == "code swaps" and res.trained.latent.values is None
    assert res.trained.posterior is None and res.trained.latent_posterior is None
    assert res.meta.latent_layer is None
    assert "ces_posterior.mean" not in res.scalars()
    assert res.scalars()["vq.n_positions"] == 64
    assert res.traversals.shape[:3] == (1, 10, 2)


def test_analyze_rejects_bad_input(dsprites) -> None:
    model = build_model("vae", width=0.125, latent_dim=2)
    with pytest.raises(ConfigError, match="n_samples"):
        analyze(model, dsprites, n_samples=1)
    with pytest.raises(DatasetError, match="contract"):
        analyze(model, object())
    with pytest.raises(ConfigError, match="image_shape"):
        analyze(build_model("vae", width=0.125, in_channels=3), dsprites, **FAST)
    with pytest.raises(ConfigError, match="channel_layers"):
        analyze(model, dsprites, channel_layers=["decoder.conv_0"], **FAST)


def test_baseline_differs_from_model_and_is_deterministic(dsprites) -> None:
    model = build_model("vae", width=0.125, latent_dim=2)
    twin = random_baseline(model, 5)
    assert not torch.equal(twin.encoder.mu.weight, model.encoder.mu.weight)
    a = analyze(model, dsprites, seed=2, **FAST).to_json()
    b = analyze(model, dsprites, seed=2, **FAST).to_json()
    a["meta"].pop("seconds"), b["meta"].pop("seconds")
    assert a == b


def test_analyze_run_writes_json_and_figures(tmp_path: Path) -> None:
    cfg = TrainConfig(
        model="beta_vae", dataset="dsprites", dataset_source="procedural", steps=2,
        batch_size=8, out=tmp_path / "run", model_params={"width": 0.125, "latent_dim": 2},
        checkpoint_every=0, device="cpu", channels_last=False, n_train=64,
    )  # fmt: skip
    train(cfg, progress=False)
    path = analyze_run(tmp_path / "run", n_samples=6, seed=0)
    assert path == tmp_path / "run" / "analysis.json"
    res = load_analysis(path)
    assert res.meta.model == "BetaVAE" and res.meta.settings.n_samples == 6
    figs = {p.name for p in (tmp_path / "run" / "figures").iterdir()}
    assert {
        "traversals.png", "ces_specificity.png", "causal_graph.png", "mediation_layers.png",
        "mediation_channels_encoder.conv_2.png", "unit_responses_encoder.conv_0.png",
    } <= figs  # fmt: skip


def test_factor_graph_from_dataset_adjacency_and_scalars() -> None:
    ds = load_dataset("synthetic")
    model = build_model("vae", width=0.125, latent_dim=2)
    res = analyze(model, ds, seed=0, baseline=False, **FAST)
    fg = res.trained.causal_graph.factor_graph
    assert fg is not None and fg.names == list(ds.factor_names)
    np.testing.assert_array_equal(fg.adjacency, np.asarray(ds.adjacency()))
    assert res.baseline is None
    flat = res.scalars()
    assert np.isnan(flat["recon.baseline"])
    assert flat["ces.mean"] == res.trained.latent.ces_mean
    mod = res.trained.layers["encoder.conv_2"].modularity
    assert flat["modularity.encoder.conv_2"] == mod.roy2025
    assert flat["modularity_signed.encoder.conv_2"] == mod.signed
    assert f"mediation.shape.{res.meta.encoder_layers[0]}" in flat
    assert not any(k.startswith("baseline.") for k in flat)


def test_settings_are_one_schema_for_every_entry_point(dsprites) -> None:
    from vaelens.analysis import AnalysisSettings, settings_from

    model = build_model("vae", width=0.125, latent_dim=2)
    with pytest.raises(ConfigError, match="unknown setting 'n_sample'"):
        analyze(model, dsprites, n_sample=8)
    with pytest.raises(ConfigError, match="latent_values"):
        settings_from(latent_values=[float("nan")])
    base = AnalysisSettings(n_samples=6, n_boot=20)
    s = settings_from(base, n_probe=40)
    assert (s.n_samples, s.n_boot, s.n_probe) == (6, 20, 40)
    assert s.probe_size() == 40 and AnalysisSettings(n_samples=100).probe_size() == 400
    a = analyze(model, dsprites, s, n_show=1, baseline=False)
    b = analyze(model, dsprites, n_samples=6, n_boot=20, n_probe=40, n_show=1, baseline=False)
    a_json, b_json = a.to_json(), b.to_json()
    a_json["meta"].pop("seconds"), b_json["meta"].pop("seconds")
    assert a_json == b_json
