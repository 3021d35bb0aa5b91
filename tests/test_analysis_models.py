"""vaelens.analyze on every vaelens variant (tiny widths), the VQ path, and analyze_run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vaelens.analysis import analyze, analyze_run, random_baseline
from vaelens.data import load_dataset
from vaelens.errors import ConfigError, DatasetError
from vaelens.models import build_model, list_models
from vaelens.train import TrainConfig, train

FAST = {"n_samples": 6, "n_boot": 20, "n_probe": 40, "n_show": 1}


@pytest.fixture(scope="module")
def dsprites():
    return load_dataset("dsprites", source="procedural")


def _check_common(d: dict, n_units: int) -> None:
    json.dumps(d, allow_nan=False)
    assert len(d["ces"]["per_dim"]) == n_units == d["meta"]["latent_dim"]
    assert len(d["specificity"]["per_dim"]) == n_units
    assert np.array(d["causal_graph"]["latent_to_factor"]).shape == (n_units, 5)
    assert np.array(d["causal_graph"]["factor_to_latent"]).shape == (5, n_units)
    for layer in d["meta"]["layers"]:
        assert len(d["unit_responses"][layer][0]) == 5
    lo, hi = d["ces"]["mean_ci"]
    assert lo <= d["ces"]["mean"] <= hi
    assert d["baseline"]["ces"]["mean"] > 0
    assert d["meta"]["recon_error"] > 0 and d["meta"]["recon_error_baseline"] > 0


@pytest.mark.parametrize("variant", [v for v in list_models() if v != "vq_vae"])
def test_analyze_every_continuous_variant(variant: str, dsprites) -> None:
    torch.manual_seed(0)
    model = build_model(variant, width=0.125, latent_dim=3)
    d = analyze(model, dsprites, seed=0, **FAST).to_dict()
    _check_common(d, 3)
    assert d["vq"] is None
    assert d["meta"]["channel_layers"] == ["encoder.conv_2"]
    assert "encoder.mu" in d["meta"]["encoder_layers"]
    assert len(d["mediation"]["by_channel"]["shape"]["encoder.conv_2"]) == 16
    # a FactorVAE discriminator never fires in encode/decode: it is not analysed
    assert not any("discriminator" in n for n in d["meta"]["layers"])


def test_analyze_vq_vae_uses_code_swaps(dsprites) -> None:
    torch.manual_seed(0)
    model = build_model("vq_vae", width=0.125, code_dim=4, num_codes=16)
    res = analyze(model, dsprites, seed=0, vq_swaps=2, **FAST)
    d = res.to_dict()
    _check_common(d, 64)  # 8 x 8 code positions, not 4 * 64 z_e dims
    assert d["meta"]["vq"] is True and d["meta"]["latent_dim_raw"] == 256
    vq = d["vq"]
    assert vq["n_positions"] == 64
    # a code swap always changes the decoded image of an untrained VQ-VAE
    assert vq["code_swap_effect_mean"] > 0 and min(d["ces"]["per_dim"]) > 0
    assert 0.0 <= vq["continuous_zero_fraction"] <= 1.0
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
    a = analyze(model, dsprites, seed=2, **FAST).to_dict()
    b = analyze(model, dsprites, seed=2, **FAST).to_dict()
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
    d = json.loads(path.read_text())
    assert d["meta"]["model"] == "BetaVAE" and d["meta"]["n_samples"] == 6
    figs = {p.name for p in (tmp_path / "run" / "figures").iterdir()}
    assert {
        "traversals.png", "ces_specificity.png", "causal_graph.png", "mediation_layers.png",
        "mediation_channels_encoder.conv_2.png", "unit_responses_encoder.conv_0.png",
    } <= figs  # fmt: skip


def test_factor_graph_from_dataset_adjacency_and_scalars() -> None:
    ds = load_dataset("synthetic")
    model = build_model("vae", width=0.125, latent_dim=2)
    res = analyze(model, ds, seed=0, baseline=False, **FAST)
    d = res.to_dict()
    fg = d["causal_graph"]["factor_graph"]
    assert fg["names"] == list(ds.factor_names)
    assert fg["adjacency"] == np.asarray(ds.adjacency()).tolist()
    assert d["baseline"] is None and d["meta"]["recon_error_baseline"] is None
    flat = res.scalars()
    assert flat["ces.mean"] == d["ces"]["mean"]
    assert flat["modularity.encoder.conv_2"] == d["modularity"]["encoder.conv_2"]["seeds"]
    assert f"mediation.shape.{d['meta']['encoder_layers'][0]}" in flat
    assert not any(k.startswith("baseline.") for k in flat)
