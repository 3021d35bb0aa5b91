"""Distributed alignment search on hand-built models whose answer is known.

Latent cases reuse tests/test_interchange.py: ``rotation_model`` has ``z = R45 (left, right)``
(``z0 = (a + b) / sqrt 2``, ``z1 = (a - b) / sqrt 2``) decoded back, so each factor lives on
the direction ``(1, +-1) / sqrt 2``: every single latent carries half of it (axis share 0.5),
the learned 1-d subspace all of it. ``HalvesModel`` is axis-aligned (``z0 = left``, ``z1 =
right``, ``z2`` dead): both ~1.

Layer case (``RotChannels`` on ``TwoChannels``): images ``(2, 4, 4)`` with channel 0 of
intensity ``a`` and channel 1 of intensity ``b``; the encoder's 1x1 conv ``enc.0`` rotates the
channels by R45 at every pixel (``h = R45 (a, b)``), ``enc.1`` rotates them back, ``z`` = the
channel means; the decoder's ``dec.0`` rotates the two latents again (features ``(N, 2)``) and
``dec.1`` writes ``R45 dec.0`` back to the two channels. At ``enc.0`` and ``dec.0`` each
factor is spread over two units in a rotated way.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from test_analysis_circuits import HalvesDataset, HalvesModel
from test_interchange import rotation_model
from vaelens.analysis.alignment import alignment_search
from vaelens.analysis.result import Alignment
from vaelens.errors import ArgumentError
from vaelens.lens import (
    Lens,
    factor_pairs,
    fit_alignment,
    interchange,
    rotated_interchange,
    subspace_interchange,
)

R2 = math.sqrt(2)
R45 = torch.tensor([[1.0, 1.0], [1.0, -1.0]]) / R2  # symmetric: its own inverse
KW = {"n_pairs": 32, "n_train": 64, "steps": 120, "n_boot": 100}


class TwoChannels:
    name = "two_channels"
    factor_names = ("a", "b")
    factor_sizes = (4, 4)
    factor_values: ClassVar[list[np.ndarray]] = [np.linspace(0.2, 0.8, 4)] * 2
    image_shape = (2, 4, 4)

    def images(self, factors: np.ndarray) -> np.ndarray:
        f = np.asarray(factors)
        out = np.zeros((len(f), 2, 4, 4), dtype=np.float32)
        out[:, 0] = self.factor_values[0][f[:, 0]][:, None, None]
        out[:, 1] = self.factor_values[1][f[:, 1]][:, None, None]
        return out

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], axis=1)


class RotChannels(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.Conv2d(2, 2, 1, bias=False))
        self.mu = nn.Linear(32, 2, bias=False)
        self.logvar = nn.Linear(32, 2)
        self.dec = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 32, bias=False))
        with torch.no_grad():
            self.enc[0].weight.copy_(R45.reshape(2, 2, 1, 1))
            self.enc[1].weight.copy_(R45.reshape(2, 2, 1, 1))
            self.mu.weight.copy_(torch.kron(torch.eye(2), torch.full((1, 16), 1 / 16)))
            self.logvar.weight.zero_()
            self.logvar.bias.zero_()
            self.dec[0].weight.copy_(R45)
            self.dec[1].weight.copy_(torch.kron(torch.eye(2), torch.ones(16, 1)) @ R45)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(x).flatten(1)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z).view(-1, 2, 4, 4)


def _search(model: nn.Module, ds, **kw) -> Alignment:
    return alignment_search(Lens(model), ds, **{**KW, **kw})


def test_rotated_latents_are_found_but_not_axis_aligned() -> None:
    a = _search(rotation_model(), HalvesDataset())
    assert a.factor_names == ["nuisance", "left", "right"] and a.layer == "latent"
    assert a.k == 1 and a.width == 2 and a.basis.shape == (3, 2, 1)
    assert np.isnan(a.share[0]) and np.isnan(a.axis_share[0]) and a.axis_units[0] == []
    np.testing.assert_allclose(a.axis_share[1:], 0.5, atol=1e-5)  # every single latent: half
    np.testing.assert_allclose(a.axis_accuracy[1:], 0.5, atol=1e-5)
    assert (a.share[1:] >= 0.95).all() and (a.share_ci[1:, 0] >= 0.95).all()
    assert (a.accuracy[1:] >= 0.95).all() and (a.train_share[1:] >= 0.95).all()
    # the learned direction is the factor's: (1, 1) / sqrt 2 for left, (1, -1) / sqrt 2 right
    assert abs(a.basis[1, :, 0] @ np.array([1, 1]) / R2) > 0.99
    assert abs(a.basis[2, :, 0] @ np.array([1, -1]) / R2) > 0.99
    sc = a.scalars()
    assert sc["alignment.axis_share.left"] == pytest.approx(0.5, abs=1e-5)
    assert np.isnan(sc["alignment.share.nuisance"])
    back = Alignment.model_validate_json(a.model_dump_json())
    np.testing.assert_array_equal(back.basis, a.basis)


def test_axis_aligned_model_scores_one_both_ways() -> None:
    a = _search(HalvesModel(), HalvesDataset(), factors=["left", "right"])
    assert a.factor_names == ["left", "right"]
    assert a.axis_units == [[0], [1]]
    np.testing.assert_allclose(a.axis_share, 1.0, atol=1e-5)
    assert (a.share >= 0.97).all()
    # k = the whole latent: every rotation spans it, both are exact
    b = _search(rotation_model(), HalvesDataset(), factors="left", k=2, steps=5)
    assert b.axis_units == [[0, 1]]
    np.testing.assert_allclose([b.share[0], b.axis_share[0]], 1.0, atol=1e-5)


@pytest.mark.parametrize("layer", ["enc.0", "dec.0"])
def test_layer_rotation_of_channels(layer: str) -> None:
    lens = Lens(RotChannels())
    a = alignment_search(lens, TwoChannels(), layer=layer, **KW)
    assert a.layer == layer and a.width == 2
    np.testing.assert_allclose(a.axis_share, 0.5, atol=1e-5)  # one channel: half the change
    assert (a.share >= 0.95).all() and (a.accuracy >= 0.95).all()
    for f, sign in ((0, 1), (1, -1)):  # a lives on (1, 1) / sqrt 2, b on (1, -1) / sqrt 2
        assert abs(a.basis[f, :, 0] @ np.array([1, sign]) / R2) > 0.99


def test_axis_basis_equals_the_unit_interchange_and_batched_equals_a_loop() -> None:
    lens = Lens(RotChannels())
    x, xp, _, _ = factor_pairs(TwoChannels(), "a", 10, seed=1)
    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(2, 1))[0]
    for layer in ("enc.0", None):
        name = layer or "latent"
        axis = rotated_interchange(lens, x, xp, torch.eye(2)[:, [1]], layer=layer, max_batch=3)
        ref = interchange(lens, x, xp, [(name, [1])])
        torch.testing.assert_close(axis.patched, ref.patched)
        res = rotated_interchange(lens, x, xp, basis, layer=layer, max_batch=4)
        rows = []
        with torch.no_grad():
            for n in range(len(x)):  # one pair at a time, through hooks
                _, c1 = lens.run_with_cache(x[n : n + 1], [name])
                _, c2 = lens.run_with_cache(xp[n : n + 1], [name])
                new = subspace_interchange(c1[name], c2[name], basis)
                rows.append(lens.run_with_hooks(x[n : n + 1], [(name, lambda a, _, v=new: v)]))
        torch.testing.assert_close(res.patched[0], torch.cat(rows), rtol=1e-5, atol=1e-6)


def test_seeded_and_deterministic() -> None:
    lens = Lens(rotation_model())
    x, xp, _, _ = factor_pairs(HalvesDataset(), "left", 40, seed=0)
    kw = {"steps": 30, "batch_size": 16, "seed": 4}
    one, two = fit_alignment(lens, x, xp, **kw), fit_alignment(lens, x, xp, **kw)
    torch.testing.assert_close(one.rotation, two.rotation, rtol=0, atol=0)
    np.testing.assert_array_equal(one.losses, two.losses)
    eye = one.rotation.T @ one.rotation
    torch.testing.assert_close(eye, torch.eye(2), atol=1e-5, rtol=0)  # stays orthogonal
    other = fit_alignment(lens, x, xp, **{**kw, "seed": 5})
    assert not torch.equal(one.rotation, other.rotation)
    s1 = _search(rotation_model(), HalvesDataset(), steps=20, seed=3, factors="left")
    s2 = _search(rotation_model(), HalvesDataset(), steps=20, seed=3, factors="left")
    assert s1.model_dump_json() == s2.model_dump_json()


class NoFactors(TwoChannels):
    factor_names = ()
    factor_sizes = ()


def test_bad_arguments_are_one_line_errors() -> None:
    lens = Lens(RotChannels())
    ds = TwoChannels()
    cases = [
        ({"layer": "nope"}, r"^layer: 'nope' is not a hook point of RotChannels; expected None"),
        ({"k": 0}, r"^k: expected an int in \[1, 2\] \(the width of latent\), got 0"),
        ({"k": 3, "layer": "enc.0"}, r"^k: expected an int in \[1, 2\] \(the width of enc\.0\)"),
        ({"n_pairs": 1}, r"^n_pairs: expected an int >= 2"),
        ({"n_train": 0}, r"^n_train: expected an int >= 2"),
        ({"steps": 0}, r"^steps: expected an int >= 1"),
        ({"lr": 0.0}, r"^lr: expected a finite number > 0"),
        ({"lr": float("nan")}, r"^lr: expected a finite number > 0"),
        ({"factors": ["a", "zz"]}, r"^factors: 'zz' is not a factor of two_channels"),
        ({"factors": []}, r"^factors: expected factor names or indices"),
    ]
    for kw, match in cases:
        with pytest.raises(ArgumentError, match=match) as exc:
            alignment_search(lens, ds, **kw)
        assert "\n" not in str(exc.value)
    with pytest.raises(ArgumentError, match=r"^dataset: two_channels has no factors") as exc:
        alignment_search(lens, NoFactors())
    with pytest.raises(ArgumentError, match=r"'enc\.0', 'enc\.1'"):  # lists valid hooks
        alignment_search(lens, ds, layer="x")
    x, xp, _, _ = factor_pairs(ds, "a", 4, seed=0)
    with pytest.raises(ArgumentError, match=r"^k: expected an int in \[1, 2\]"):
        fit_alignment(lens, x, xp, k=5)
    with pytest.raises(ArgumentError, match=r"^basis: expected a tensor \(2, k\)"):
        rotated_interchange(lens, x, xp, torch.eye(3))


class OneLevel(TwoChannels):
    factor_sizes = (1, 4)
    factor_values: ClassVar[list[np.ndarray]] = [np.array([0.5]), np.linspace(0.2, 0.8, 4)]


def test_single_level_factor_is_nan_and_alone_an_error() -> None:
    lens = Lens(RotChannels())
    a = alignment_search(lens, OneLevel(), **{**KW, "steps": 10})
    assert np.isnan(a.share[0]) and np.isnan(a.basis[0]).all() and a.axis_units[0] == []
    assert np.isfinite(a.share[1])
    with pytest.raises(ArgumentError, match=r"^factors: every chosen factor .* single level"):
        alignment_search(lens, OneLevel(), factors="a")


def test_search_starts_from_the_best_axes() -> None:
    # one tiny step: a random start would land anywhere; the warm start stays at the best
    # axis (share 0.5 on the 45-degree model), so learning can only add to it
    a = _search(rotation_model(), HalvesDataset(), factors=["left"], steps=1, lr=1e-6)
    assert a.share[0] == pytest.approx(a.axis_share[0], abs=1e-4)
    assert a.axis_units[0] in ([0], [1]) and abs(a.basis[0, a.axis_units[0][0], 0]) > 0.999
    with pytest.raises(ArgumentError, match="init_units"):
        x, xp, _, _ = factor_pairs(HalvesDataset(), "left", 8, seed=0)
        fit_alignment(Lens(rotation_model()), x, xp, init_units=[0, 0])
