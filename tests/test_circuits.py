"""Unit-level circuits and path patching on hand-built models whose answer is known.

HalvesDataset (tests/test_analysis_circuits.py): 8x8 images, left half ``a`` (factor
``left``), right half ``b`` (``right``), ``nuisance`` not in the image. ``Planted(mu_w,
dec_w)``: layer ``l1`` (a conv over the whole image, ``(N, 4, 1, 1)``) and ``act`` (its ReLU)
hold channels ``(c0, c1, c2, c3) = (a, b, b, 0)`` (``c3`` dead: bias -1 under the ReLU); the
latent mean is ``mu_w @ c`` and the output ``dec_w`` (weights of each latent on the
(left, right) halves) applied to it.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from test_analysis_circuits import HalvesDataset
from vaelens.analysis import interchange_matrix
from vaelens.analysis.circuits import unit_circuits
from vaelens.analysis.result import Circuits
from vaelens.errors import ArgumentError
from vaelens.lens import EncoderInterchange, Lens, encoder_interchange, factor_pairs, pair_shares

N = 16


class Planted(nn.Module):
    def __init__(self, mu_w: list[list[float]], dec_w: list[list[float]]) -> None:
        super().__init__()
        left = torch.zeros(8, 8)
        left[:, :4] = 1
        right = 1 - left
        latent = len(mu_w)
        self.l1 = nn.Conv2d(1, 4, 8)
        self.act = nn.ReLU()
        self.mu = nn.Linear(4, latent)
        self.logvar = nn.Linear(4, latent)
        self.dec = nn.Linear(latent, 64)
        with torch.no_grad():
            w = torch.stack([left / 32, right / 32, right / 32, torch.zeros(8, 8)])
            self.l1.weight.copy_(w[:, None])
            self.l1.bias.copy_(torch.tensor([0.0, 0, 0, -1]))
            self.mu.weight.copy_(torch.tensor(mu_w, dtype=torch.float32))
            self.mu.bias.zero_()
            self.logvar.weight.zero_()
            self.logvar.bias.zero_()
            halves = torch.stack([left.reshape(-1), right.reshape(-1)], 1)  # (64, 2)
            self.dec.weight.copy_(halves @ torch.tensor(dec_w, dtype=torch.float32).T)
            self.dec.bias.zero_()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.l1(x)).flatten(1)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z).view(-1, 1, 8, 8)


def planted() -> Planted:
    """``left`` through c0 -> z0; ``right`` through c1 and c2 jointly (half each) -> z1."""
    return Planted([[1, 0, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0, 0]], [[1, 0], [0, 1], [0, 0]])


def bypass() -> Planted:
    """``right``: c1 -> z1 (decoded with weight 1), c2 -> z2 = 10 b (decoded with 0.01).

    The latent shift of ``right`` is ``(0, d, 10 d)``: c2 carries 100/101 of it, so the
    channel set is {2}; the output shift is ``1.1 d`` on the right half, 1/1.1 of it through
    z1, so the minimal latent set is {1}: the channel circuit bypasses it.
    """
    return Planted([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 10, 0]], [[1, 0], [0, 1], [0, 0.01]])


class Skip(Planted):
    """``z1 = 0.5 c1 + 0.5 b``, the second half by a skip path around ``l1`` (``skip``)."""

    def __init__(self) -> None:
        super().__init__([[1, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 0, 0]], [[1, 0], [0, 1], [0, 0]])
        self.skip = nn.Linear(64, 3, bias=False)
        with torch.no_grad():
            self.skip.weight.zero_()
            self.skip.weight[1, :].copy_(self.l1.weight[1].reshape(-1) * 0.5)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.l1(x)).flatten(1)
        return self.mu(h) + self.skip(x.flatten(1)), self.logvar(h)


def _circuits(model: nn.Module, **kw) -> Circuits:
    kw = {"n_pairs": N, "seed": 2, "n_boot": 100, **kw}
    return unit_circuits(Lens(model), HalvesDataset(), **kw)


@pytest.fixture(scope="module")
def planted_result() -> Circuits:
    return _circuits(planted(), layers=["l1", "act", "mu", "logvar"])


def test_planted_channel_sets(planted_result: Circuits) -> None:
    c = planted_result
    assert c.factor_names == ["nuisance", "left", "right"]
    assert c.layers == ["l1", "act", "mu", "logvar"]
    assert c.width.tolist() == [4, 4, 3, 3]
    # nuisance never moves the latent: no set anywhere
    assert c.sets[0] == [[], [], [], []] and np.isnan(c.latent_share[0]).all()
    assert c.sets[1][:3] == [[0], [0], [0]]
    assert c.sets[2][:3] == [[1, 2], [1, 2], [1]]
    assert c.sets[1][3] == [] and c.sets[2][3] == []  # logvar carries nothing
    assert c.n_live[1].tolist() == [1, 1, 1, 0] and c.n_live[2].tolist() == [2, 2, 1, 0]
    np.testing.assert_allclose(c.full_share[1:, :3], 1.0, atol=1e-6)
    np.testing.assert_allclose(c.latent_share[1:, :3], 1.0, atol=1e-6)
    np.testing.assert_allclose(c.latent_share_ci[1:, :3], 1.0, atol=1e-6)
    np.testing.assert_allclose(c.output_share[1:, :3], 1.0, atol=1e-6)
    assert c.covered[1:, :3].all() and not c.covered[:, 3].any()
    np.testing.assert_array_equal(c.set_size[1:, :3], [[1, 1, 1], [2, 2, 1]])
    assert np.isnan(c.set_size[:, 3]).all() and np.isnan(c.set_size[0]).all()
    assert c.latent_sets == [[], [0], [1]]


def test_each_planted_channel_alone_carries_half() -> None:
    ds = HalvesDataset()
    lens = Lens(planted())
    x, xp, _, _ = factor_pairs(ds, "right", N, seed=0)
    mu_t = encoder_interchange(lens, x, xp, "l1", [[1], [2], [1, 2], [0], [3]])
    enc = EncoderInterchange(lens, x, xp, ["l1"])
    s = pair_shares(mu_t, enc.base, enc.source).nanmean(1).numpy()
    np.testing.assert_allclose(s, [0.5, 0.5, 1.0, 0.0, 0.0], atol=1e-6)
    assert enc.live_units("l1") == [1, 2]
    # a lower coverage is met by one channel alone
    c = _circuits(planted(), layers=["l1"], coverage=0.5)
    assert c.sets[2] == [[1]]
    c = _circuits(planted(), layers=["l1"], max_set=1)
    assert c.sets[2] == [[1]] and not c.covered[2, 0]
    assert c.latent_share[2, 0] == pytest.approx(0.5)


def test_encoder_interchange_matches_one_pair_at_a_time() -> None:
    ds = HalvesDataset()
    lens = Lens(bypass())
    x, xp, _, _ = factor_pairs(ds, "right", 6, seed=1)
    sets = [[0], [2], [1, 2]]
    got = encoder_interchange(lens, x, xp, "act", sets, max_batch=4)
    for k, u in enumerate(sets):
        for n in range(len(x)):
            _, src = lens.run_with_cache(xp[n : n + 1], ["act"])

            def patch(a, _, u=u, src=src):
                a = a.clone()
                a[:, u] = src["act"][:, u]
                return a

            want = lens.run_with_hooks(x[n : n + 1], [("act", patch)], target="latent")
            torch.testing.assert_close(got[k, n : n + 1], want)


def test_path_share_through_the_minimal_latent_set(planted_result: Circuits) -> None:
    # the planted circuits feed only the minimal latents: the path carries everything
    np.testing.assert_allclose(planted_result.path_share[1:, :3], 1.0, atol=1e-6)
    np.testing.assert_allclose(
        planted_result.path_share[1:, :3], planted_result.output_share[1:, :3], atol=1e-9
    )
    c = _circuits(bypass(), layers=["act"])
    assert c.latent_sets == [[], [0], [1]]
    assert c.sets[2] == [[2]]
    assert c.latent_share[2, 0] == pytest.approx(100 / 101, abs=1e-6)
    assert c.output_share[2, 0] == pytest.approx(1 / 11, abs=1e-6)
    assert abs(c.path_share[2, 0]) < 1e-6  # S -> z2 bypasses M = {z1}
    assert c.path_share[1, 0] == pytest.approx(1.0, abs=1e-6)
    # a given Interchange block supplies M; the pairs line up with interchange_matrix's
    block = interchange_matrix(Lens(bypass()), HalvesDataset(), n_pairs=N, seed=2, n_boot=50)
    assert block.min_sets == c.latent_sets
    via = _circuits(bypass(), layers=["act"], interchange=block)
    assert via.model_dump_json() == c.model_dump_json()
    forced = block.model_copy(update={"min_sets": [[], [0], [2]]})
    c2 = _circuits(bypass(), layers=["act"], interchange=forced)
    assert c2.path_share[2, 0] == pytest.approx(c2.output_share[2, 0], abs=1e-9)


def test_a_skip_path_lowers_the_full_share() -> None:
    c = _circuits(Skip(), layers=["l1", "skip"])
    np.testing.assert_allclose(c.full_share[2], [0.5, 0.5], atol=1e-6)
    assert c.sets[2] == [[1], [1]] and c.covered[2].all()  # relative to the full share
    np.testing.assert_allclose(c.latent_share[2], 0.5, atol=1e-6)
    np.testing.assert_allclose(c.output_share[2], 0.5, atol=1e-6)
    np.testing.assert_allclose(c.path_share[2], 0.5, atol=1e-6)  # M = {z1}
    np.testing.assert_allclose(c.full_share[1], [1.0, 0.0], atol=1e-6)
    assert c.n_live[1].tolist() == [1, 0]  # the skip does not carry left


def test_json_round_trip_is_exact(planted_result: Circuits) -> None:
    text = json.dumps(planted_result.model_dump(mode="json"), allow_nan=False)
    back = Circuits.model_validate(json.loads(text))
    assert back.model_dump_json() == planted_result.model_dump_json()
    np.testing.assert_array_equal(back.latent_share_ci, planted_result.latent_share_ci)
    np.testing.assert_array_equal(back.covered, planted_result.covered)
    assert back.sets == planted_result.sets and back.covered.dtype == bool
    sc = planted_result.scalars()
    assert sc["circuits.set_size.right.l1"] == 2.0
    assert math.isnan(sc["circuits.set_size.nuisance.l1"])
    assert sc.keys() == back.scalars().keys()


def test_deterministic_given_the_seed() -> None:
    a = _circuits(bypass(), layers=["l1"], seed=5)
    b = _circuits(bypass(), layers=["l1"], seed=5)
    assert a.model_dump_json() == b.model_dump_json()


def test_bad_inputs_are_one_line_errors() -> None:
    lens = Lens(planted())
    ds = HalvesDataset()
    cases = [
        ({"dataset": object()}, r"^dataset: "),
        ({"layers": ["nope"]}, r"^layers\[0\]: 'nope' is not a hook point"),
        ({"layers": ["l1", "dec"]}, r"^layers\[1\]: 'dec' is not on the encoder side"),
        ({"layers": []}, r"^layers: expected a non-empty list"),
        ({"coverage": 0}, r"^coverage: expected a number in \(0, 1\]"),
        ({"coverage": 1.5}, r"^coverage: expected a number in \(0, 1\]"),
        ({"n_pairs": 1}, r"^n_pairs: expected an int >= 2"),
        ({"n_pairs": "many"}, r"^n_pairs: expected an int >= 2"),
        ({"max_set": 0}, r"^max_set: expected a positive int"),
        ({"interchange": "x"}, r"^interchange: expected an Interchange block"),
        ({"max_batch": 0}, r"^max_batch: expected a positive int"),
    ]
    for kw, match in cases:
        data = kw.pop("dataset", ds)
        with pytest.raises(ArgumentError, match=match) as exc:
            unit_circuits(lens, data, n_pairs=kw.pop("n_pairs", 4), n_boot=10, **kw)
        assert "\n" not in str(exc.value)


def test_a_greedy_step_is_one_stacked_run() -> None:
    model = Planted([[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]], [[1, 0], [0, 1], [0, 0]])
    ds = HalvesDataset()
    x, xp, _, _ = factor_pairs(ds, "right", N, seed=0)
    lens = Lens(model)
    enc = EncoderInterchange(lens, x, xp, ["l1"], max_batch=10_000)
    rows: list[int] = []
    handle = model.mu.register_forward_hook(lambda m, a, o: rows.append(int(a[0].shape[0])))
    try:
        candidates = [[0], [1], [2], [3], [0, 1], [1, 2]]
        enc.latents("l1", candidates)
        assert rows == [len(candidates) * N]  # C * N rows, one forward
        rows.clear()
        enc.max_batch = 2 * N
        enc.latents("l1", candidates)
        assert rows == [2 * N] * 3  # chunked, still stacked
        rows.clear()
        unit_circuits(lens, ds, layers=["l1"], n_pairs=N, n_boot=10, max_batch=10_000)
    finally:
        handle.remove()
    live = 2  # c1, c2 for right; c0 for left
    assert len(rows) < 30 < live * N * 3
    assert (live + 1) * N in rows  # the first step: every live channel and the full patch
