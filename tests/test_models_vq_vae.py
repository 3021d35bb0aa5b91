"""VQ-VAE: quantiser, straight-through gradient, EMA update, dead-code restarts, lens interface."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaelens.errors import ConfigError
from vaelens.models import build_model
from vaelens.models.vq_vae import VectorQuantizer, perplexity

TINY = {"width": 0.125, "num_codes": 16, "code_dim": 4}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 4, c: int = 1) -> torch.Tensor:
    return (torch.rand(n, c, 64, 64, generator=_gen(1)) > 0.7).float()


def test_nearest_code_matches_brute_force():
    q = VectorQuantizer(10, 3)
    flat = torch.randn(50, 3, generator=_gen(0))
    expected = torch.cdist(flat, q.embedding).argmin(1)
    assert torch.equal(q.nearest(flat), expected)


def test_straight_through_gradient_is_identity_and_reaches_the_encoder():
    q = VectorQuantizer(8, 3)
    z_e = torch.randn(2, 3, 4, 4, generator=_gen(0), requires_grad=True)
    z_q, codes = q(z_e)
    torch.testing.assert_close(z_q, q.lookup(codes))  # forward value: the code vectors
    w = torch.randn(z_q.shape, generator=_gen(1))
    (z_q * w).sum().backward()
    torch.testing.assert_close(z_e.grad, w)

    torch.manual_seed(0)
    m = build_model("vq_vae", **TINY)
    m.training_losses(_images(), generator=_gen(2))["loss"].backward()
    for name in ("encoder.conv_0.0.weight", "encoder.pre_quant.weight"):
        g = dict(m.named_parameters())[name].grad
        assert g is not None and float(g.abs().sum()) > 0, name


def test_ema_update_matches_hand_computation():
    q = VectorQuantizer(3, 2, decay=0.9, eps=0.1)
    q.embedding.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    q.ema_w.copy_(torch.tensor([[0.0, 0.0], [2.0, 2.0], [5.0, 5.0]]))
    q.ema_cluster_size.copy_(torch.tensor([1.0, 2.0, 1.0]))
    flat = torch.tensor([[1.0, 0.0], [3.0, 1.0], [0.0, 2.0]])
    codes = torch.tensor([0, 0, 1])
    q.ema_update(flat, codes)
    # by hand: counts n = [2, 1, 0]; sums s = [[4, 1], [0, 2], [0, 0]]
    n_k = np.array([0.9 * 1 + 0.1 * 2, 0.9 * 2 + 0.1 * 1, 0.9 * 1 + 0.1 * 0])  # 1.1, 1.9, 0.9
    m_k = np.array([[0.1 * 4, 0.1 * 1], [1.8 + 0.0, 1.8 + 0.2], [4.5, 4.5]])
    total = n_k.sum()
    smooth = (n_k + 0.1) / (total + 3 * 0.1) * total
    np.testing.assert_allclose(q.ema_cluster_size.numpy(), n_k, rtol=1e-6)
    np.testing.assert_allclose(q.ema_w.numpy(), m_k, rtol=1e-6)
    np.testing.assert_allclose(q.embedding.numpy(), m_k / smooth[:, None], rtol=1e-6)
    assert q.usage_counts.tolist() == [2, 1, 0]


def test_loss_codebook_tracks_usage_but_keeps_its_parameters():
    q = VectorQuantizer(3, 2, codebook="loss")
    before = q.embedding.detach().clone()
    q.ema_update(torch.ones(4, 2), torch.tensor([1, 1, 1, 2]))
    assert torch.equal(q.embedding.detach(), before)
    np.testing.assert_allclose(q.ema_cluster_size.numpy(), [0.99, 0.99 + 0.03, 0.99 + 0.01])


def test_dead_code_restart_replaces_unused_codes():
    q = VectorQuantizer(4, 2)
    keep = q.embedding.clone()
    q.ema_cluster_size.copy_(torch.tensor([5.0, 0.001, 3.0, 0.0]))
    flat = torch.arange(20.0).view(10, 2)
    assert q.restart_dead_codes(flat, threshold=0.01, generator=_gen(0)) == 2
    rows = {tuple(r) for r in flat.tolist()}
    for k in (1, 3):
        assert tuple(q.embedding[k].tolist()) in rows
        torch.testing.assert_close(q.ema_w[k], q.embedding[k])
    torch.testing.assert_close(q.embedding[[0, 2]], keep[[0, 2]])
    assert q.ema_cluster_size.tolist() == [5.0, 1.0, 3.0, 1.0]
    assert q.restart_dead_codes(flat, threshold=0.01) == 0

    # in a model: codes that no encoder output picks decay and get restarted
    torch.manual_seed(0)
    m = build_model("vq_vae", restart_threshold=0.9, **TINY)
    m.train()
    m.training_losses(_images(), generator=_gen(1))  # data-dependent init
    m.quantizer.ema_cluster_size[:4] = 0.5
    out = m.training_losses(_images(), generator=_gen(2))
    assert float(out["restarted"]) >= 4
    assert float(m.quantizer.ema_cluster_size.min()) >= 0.9 * 0.99


def test_perplexity_of_uniform_and_collapsed_assignments():
    k = 16
    assert float(perplexity(torch.arange(k).repeat(5), k)) == pytest.approx(k, rel=1e-5)
    assert float(perplexity(torch.zeros(40, dtype=torch.long), k)) == pytest.approx(1.0)
    codes = torch.tensor([0, 0, 1, 2])
    p = np.array([0.5, 0.25, 0.25])
    assert float(perplexity(codes, k)) == pytest.approx(math.exp(-(p * np.log(p)).sum()))


@pytest.mark.parametrize("backbone", ["roy2025", "dlib"])
def test_encode_decode_interfaces_agree(backbone):
    torch.manual_seed(0)
    m = build_model("vq_vae", backbone=backbone, in_channels=3, **TINY).eval()
    g = 8 if backbone == "roy2025" else 4
    x = _images(3, c=3)
    post = m.encode(x)
    assert post.mean.shape == (3, 4 * g * g) == post.quantized.shape
    assert post.logvar is None and post.codes.shape == (3, g, g)
    assert torch.equal(post.sample(), post.mean)
    out = m.decode(post.mean)
    assert out.shape == x.shape
    torch.testing.assert_close(m.decode_codes(post.codes), out)
    torch.testing.assert_close(m.decode_quantized(post.quantized), out)
    torch.testing.assert_close(m.decode_quantized(post.quantized.view(3, 4, g, g)), out)
    torch.testing.assert_close(m(x), out)
    # a tiny continuous perturbation snaps back to the same codes
    torch.testing.assert_close(m.decode(post.mean + 1e-6), out)
    # swapping one code is a discrete intervention that changes the output
    swapped = post.codes.clone()
    swapped[:, 0, 0] = (swapped[:, 0, 0] + 1) % m.num_codes
    assert not torch.allclose(m.decode_codes(swapped), out)


def test_decode_codes_validates_indices():
    m = build_model("vq_vae", **TINY)
    with pytest.raises(ConfigError, match=r"values must lie in \[0, 16\)"):
        m.decode_codes(torch.full((1, 8, 8), 16))
    with pytest.raises(ConfigError, match="integer tensor of shape"):
        m.decode_codes(torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ConfigError, match="integer tensor"):
        m.decode_codes(torch.zeros(1, 8, 8))


@pytest.mark.parametrize("codebook", ["ema", "loss"])
def test_training_losses_terms(codebook):
    torch.manual_seed(0)
    m = build_model("vq_vae", codebook=codebook, beta_c=0.5, **TINY)
    x = _images()
    out = m.training_losses(x, generator=_gen(0))
    assert bool(m.quantizer.initialized)
    assert 1.0 <= float(out["perplexity"]) <= 16.0
    assert 1 <= float(out["codes_used"]) <= 16
    assert float(out["kl"]) == pytest.approx(64 * math.log(16))
    expected = out["rec"] + 0.5 * out["commitment"] + out.get("codebook", 0.0)
    torch.testing.assert_close(out["loss"].detach(), expected)
    out["loss"].backward()
    if codebook == "ema":
        assert "quantizer.embedding" in dict(m.named_buffers())
        assert all(not n.startswith("quantizer") for n, _ in m.named_parameters())
    else:
        assert "quantizer.embedding" in dict(m.named_parameters())
        assert float(m.quantizer.embedding.grad.abs().sum()) > 0
