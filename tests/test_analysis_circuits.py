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

from vaelens.analysis import analyze, random_baseline
from vaelens.errors import ModelContractError

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
def result() -> dict:
    torch.manual_seed(0)
    res = analyze(HalvesModel(), HalvesDataset(), n_samples=24, seed=1, n_boot=200)
    return res.to_dict()


def test_json_round_trip_and_schema(result: dict) -> None:
    text = json.dumps(result, allow_nan=False)
    back = json.loads(text)
    for key in (
        "meta", "ces", "specificity", "modularity", "polysemanticity", "monosemantic_fraction",
        "unit_responses", "clusters", "mediation", "causal_graph", "vq", "baseline",
    ):  # fmt: skip
        assert key in back
    assert back["meta"]["factor_names"] == ["nuisance", "left", "right"]
    assert back["meta"]["latent_dim"] == 3
    assert back["meta"]["layers"] == ["enc", "mu", "logvar", "dec"]
    assert back["meta"]["encoder_layers"] == ["enc", "mu", "logvar"]
    assert back["meta"]["channel_layers"] == ["enc"]
    assert back["vq"] is None
    assert set(back["baseline"]) >= {"ces", "specificity", "causal_graph", "mediation"}


def test_causal_graph_edges(result: dict) -> None:
    cg = result["causal_graph"]
    assert sorted(map(tuple, cg["edges"])) == [(0, 1), (1, 2)]  # (latent, factor)
    l2f = np.array(cg["latent_to_factor"])
    assert l2f[2].tolist() == [0.0, 0.0, 0.0]  # the dead latent moves nothing
    # the nuisance factor is not in the pixels: its probe fails and gates its edges off
    assert cg["probe_r2"][0] < 0.2 < min(cg["probe_r2"][1:])
    f2l = np.array(cg["factor_to_latent"])
    assert f2l.shape == (3, 3)  # (factor, latent)
    assert f2l[1, 0] > 0.2 and f2l[2, 1] > 0.2  # |delta| ~ 0.3, spread ~ 1 (logvar 0)
    np.testing.assert_allclose(f2l[1, 1:], 0.0, atol=1e-6)
    np.testing.assert_allclose(f2l[2, [0, 2]], 0.0, atol=1e-6)
    np.testing.assert_allclose(f2l[0], 0.0, atol=1e-12)  # nuisance changes nothing


def test_dead_latent_has_zero_effect(result: dict) -> None:
    ces = result["ces"]["per_dim"]
    assert ces[2] == 0.0 and ces[0] > 0 and ces[1] > 0
    assert result["specificity"]["per_dim"][2] is None
    assert result["specificity"]["null_fraction"][2] == 1.0
    assert result["specificity"]["null_fraction"][0] == 0.0
    # z0 changes exactly half of the pixels uniformly: H = log 32
    np.testing.assert_allclose(result["specificity"]["per_dim"][0], 1 / np.log(32), rtol=1e-6)


def test_monosemantic_and_polysemantic_units(result: dict) -> None:
    R = np.array(result["unit_responses"]["enc"])
    assert R.shape == (3, 3)
    np.testing.assert_allclose(R[:, 0], 0.0)  # nuisance: no response
    assert R[0, 1] > 0 and R[0, 2] == 0 and R[2, 1] == 0 and R[2, 2] > 0
    pr = result["polysemanticity"]["enc"]["participation"]
    assert pr[0] == pytest.approx(1.0) and pr[2] == pytest.approx(1.0)
    assert pr[1] > 1.5  # reads both halves
    mono = result["monosemantic_fraction"]["enc"]
    assert (mono["n_monosemantic"], mono["n_live"], mono["n_units"]) == (2, 3, 3)
    # logvar is wired to nothing: every unit dead
    assert result["monosemantic_fraction"]["logvar"]["n_live"] == 0
    assert all(v is None for v in result["polysemanticity"]["logvar"]["participation"])


def test_mediating_channel(result: dict) -> None:
    ch = result["mediation"]["by_channel"]
    np.testing.assert_allclose(ch["right"]["enc"], [0.0, 1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(ch["left"]["enc"], [1.0, 0.0, 0.0], atol=1e-5)
    assert all(v is None for v in ch["nuisance"]["enc"])  # no effect to mediate
    # the network is linear on these inputs: the first-order estimate is exact
    att = result["mediation"]["by_channel_attribution"]
    np.testing.assert_allclose(att["right"]["enc"], [0.0, 1.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(att["left"]["mu"], [1.0, 0.0, 0.0], atol=1e-5)
    by = result["mediation"]["by_layer"]
    assert by["left"]["enc"] == pytest.approx(1.0)
    assert by["left"]["logvar"] == pytest.approx(0.0)


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
