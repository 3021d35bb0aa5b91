"""Each Gaussian variant's loss against a direct computation (VAE, beta-VAE, DIP-VAE, beta-TC-VAE)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal, kl_divergence

from vaelens.errors import ConfigError
from vaelens.models import build_model
from vaelens.models.beta_tc_vae import (
    log_qz_estimates,
    stratified_weight_matrix,
    tc_decomposition,
)
from vaelens.models.beta_vae import capacity_at
from vaelens.models.dip_vae import dip_covariance, dip_regularizer
from vaelens.models.vae import gaussian_kl, reconstruction_loss

TINY = {"width": 0.125, "latent_dim": 4}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 6, c: int = 1) -> torch.Tensor:
    return (torch.rand(n, c, 64, 64, generator=_gen(1)) > 0.7).float()


def test_gaussian_kl_matches_closed_form_and_torch_distributions():
    mu = torch.randn(5, 3, generator=_gen(0), dtype=torch.float64)
    logvar = torch.randn(5, 3, generator=_gen(1), dtype=torch.float64)
    ours = gaussian_kl(mu, logvar)
    var = np.exp(logvar.numpy())
    closed = 0.5 * (mu.numpy() ** 2 + var - 1.0 - np.log(var))
    np.testing.assert_allclose(ours.numpy(), closed, rtol=1e-12)
    ref = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    torch.testing.assert_close(ours, ref)


def test_reconstruction_loss_sums_pixels_and_averages_batch():
    logits = torch.randn(3, 1, 64, 64, generator=_gen(2))
    x = _images(3)
    expected = -Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3)).mean()
    torch.testing.assert_close(reconstruction_loss(logits, x, "bernoulli"), expected)
    sse = ((logits - x) ** 2).sum((1, 2, 3)).mean()
    torch.testing.assert_close(reconstruction_loss(logits, x, "gaussian"), sse)
    with pytest.raises(ConfigError, match="likelihood"):
        reconstruction_loss(logits, x, "poisson")


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_vae_loss_equals_direct_computation(likelihood):
    torch.manual_seed(0)
    model = build_model("vae", likelihood=likelihood, **TINY)
    x = _images()
    out = model.training_losses(x, generator=_gen(7))
    mu, logvar = model.encoder(x)
    eps = torch.randn(mu.shape, generator=_gen(7))
    z = mu + torch.exp(0.5 * logvar) * eps
    decoded = model.decoder(z)
    if likelihood == "bernoulli":
        rec = F.binary_cross_entropy_with_logits(decoded, x, reduction="sum") / x.shape[0]
    else:
        rec = ((decoded - x) ** 2).sum() / x.shape[0]
    kl = kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum() / x.shape[0]
    torch.testing.assert_close(out["rec"], rec.detach())
    torch.testing.assert_close(out["kl"], kl.detach())
    torch.testing.assert_close(out["loss"], rec + kl)
    assert out["loss"].requires_grad and not out["rec"].requires_grad


def test_beta_vae_higgins_and_capacity_forms():
    torch.manual_seed(0)
    x = _images()
    m = build_model("beta_vae", **TINY)
    assert m.beta == 4.0
    out = m.training_losses(x, generator=_gen(3))
    torch.testing.assert_close(out["loss"].detach(), out["rec"] + 4.0 * out["kl"])

    cap = build_model("beta_vae", mode="capacity", gamma=100.0, c_max=20.0, c_steps=1000, **TINY)
    assert capacity_at(0, 20.0, 1000) == 0.0
    assert capacity_at(250, 20.0, 1000) == pytest.approx(5.0)
    assert capacity_at(5000, 20.0, 1000) == pytest.approx(20.0)
    for step, c in [(0, 0.0), (500, 10.0), (2000, 20.0)]:
        out = cap.training_losses(x, step=step, generator=_gen(3))
        assert float(out["capacity"]) == pytest.approx(c)
        expected = out["rec"] + 100.0 * (out["kl"] - c).abs()
        torch.testing.assert_close(out["loss"].detach(), expected)
    with pytest.raises(ConfigError, match="mode"):
        build_model("beta_vae", mode="burgess")


def test_dip_covariances_match_numpy():
    mu = torch.randn(50, 4, generator=_gen(4), dtype=torch.float64) @ torch.tensor(
        [[1.0, 0.5, 0, 0], [0, 1, 0.3, 0], [0, 0, 1, 0], [0.2, 0, 0, 2]], dtype=torch.float64
    )
    logvar = torch.randn(50, 4, generator=_gen(5), dtype=torch.float64)
    cov_mu = np.cov(mu.numpy(), rowvar=False, bias=True)
    np.testing.assert_allclose(dip_covariance(mu, None, "i").numpy(), cov_mu, rtol=1e-10)
    expected_ii = cov_mu + np.diag(np.exp(logvar.numpy()).mean(0))
    got_ii = dip_covariance(mu, logvar, "ii").numpy()
    np.testing.assert_allclose(got_ii, expected_ii, rtol=1e-10)
    # the variance is added to the diagonal only
    np.testing.assert_allclose(got_ii - np.diag(np.diag(got_ii)), cov_mu - np.diag(np.diag(cov_mu)))

    c = expected_ii
    manual = (
        sum(c[i, j] ** 2 for i in range(4) for j in range(4) if i != j) * 3.0
        + sum((c[i, i] - 1.0) ** 2 for i in range(4)) * 7.0
    )
    assert float(dip_regularizer(torch.from_numpy(c), 3.0, 7.0)) == pytest.approx(manual)


def test_dip_defaults_and_loss():
    m1 = build_model("dip_vae_i", lambda_od=2.0, **TINY)
    m2 = build_model("dip_vae_ii", lambda_od=2.0, **TINY)
    assert (m1.lambda_d, m2.lambda_d) == (20.0, 2.0)
    x = _images()
    for m, kind in [(m1, "i"), (m2, "ii")]:
        out = m.training_losses(x, generator=_gen(6))
        mu, logvar = m.encoder(x)
        reg = dip_regularizer(dip_covariance(mu, logvar, kind), m.lambda_od, m.lambda_d)
        torch.testing.assert_close(out["dip"], reg.detach())
        torch.testing.assert_close(out["loss"].detach(), out["rec"] + out["kl"] + out["dip"])


def test_stratified_weight_matrix_entry_by_entry():
    b, n = 5, 100
    m = b - 1
    w = stratified_weight_matrix(b, n)
    for i in range(b):
        for k in range(b):
            if k == i:
                expected = 1.0 / n
            elif k == (i + 1) % b:
                expected = (n - m) / (n * m)
            else:
                expected = 1.0 / m
            assert float(w[i, k]) == pytest.approx(expected, rel=1e-12), (i, k)
    torch.testing.assert_close(w.sum(1), torch.ones(b, dtype=torch.float64))
    # column 0 is not special (the strided-write bug would put 1/N there in every row)
    assert float(w[1, 0]) == pytest.approx(1.0 / m)
    with pytest.raises(ConfigError, match="batch_size"):
        stratified_weight_matrix(1, 10)
    with pytest.raises(ConfigError, match="dataset_size"):
        stratified_weight_matrix(10, 3)


def _posterior_batch(b: int, d: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = _gen(seed)
    mu = torch.randn(b, d, generator=g, dtype=torch.float64) * 0.5
    mu[:, 1] += 0.8 * mu[:, 0]  # correlated aggregate posterior: TC > 0
    logvar = -0.5 - torch.rand(b, d, generator=g, dtype=torch.float64)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(b, d, generator=g, dtype=torch.float64)
    return z, mu, logvar


def test_log_qz_estimators_match_brute_force():
    z, mu, logvar = _posterior_batch(6, 3, 0)
    b, n = 6, 50
    w = stratified_weight_matrix(b, n).numpy()
    dens = Normal(mu[None], torch.exp(0.5 * logvar[None])).log_prob(z[:, None]).exp().numpy()
    # dens[i, k, j] = q(z_ij | x_k)
    joint = dens.prod(2)
    mws_qz = np.log(joint.mean(1))
    mss_qz = np.log((w * joint).sum(1))
    mws_prod = np.log(dens.mean(1)).sum(1)
    mss_prod = np.log((w[:, :, None] * dens).sum(1)).sum(1)
    for est, qz, prod in [("mws", mws_qz, mws_prod), ("mss", mss_qz, mss_prod)]:
        got_qz, got_prod = log_qz_estimates(z, mu, logvar, est, n)
        np.testing.assert_allclose(got_qz.numpy(), qz, rtol=1e-10)
        np.testing.assert_allclose(got_prod.numpy(), prod, rtol=1e-10)


@pytest.mark.parametrize("estimator", ["mws", "mss"])
def test_tc_decomposition_sums_to_the_sampled_kl(estimator):
    z, mu, logvar = _posterior_batch(64, 4, 1)
    d = tc_decomposition(z, mu, logvar, estimator, 10_000)
    log_qz_x = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(1)
    log_pz = Normal(0.0, 1.0).log_prob(z).sum(1)
    total = d["mi"] + d["tc"] + d["dwkl"]
    torch.testing.assert_close(total, (log_qz_x - log_pz).mean(), rtol=1e-12, atol=1e-12)


def test_sampled_kl_approaches_analytic_kl_on_a_large_batch():
    z, mu, logvar = _posterior_batch(1000, 3, 2)
    d = tc_decomposition(z, mu, logvar, "mws")
    per_sample = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(1) - Normal(0.0, 1.0).log_prob(
        z
    ).sum(1)
    stderr = float(per_sample.std()) / math.sqrt(z.shape[0])
    analytic = float(gaussian_kl(mu, logvar).sum(1).mean())
    estimate = float(d["mi"] + d["tc"] + d["dwkl"])
    assert abs(estimate - analytic) < 4 * stderr


def test_mws_and_mss_agree_on_a_big_batch():
    z, mu, logvar = _posterior_batch(1000, 3, 3)
    mws = tc_decomposition(z, mu, logvar, "mws")
    # dataset_size == batch size: the stratified weights are ~1/B, as MWS's
    same = tc_decomposition(z, mu, logvar, "mss", 1000)
    for k in ("mi", "tc", "dwkl"):
        assert float(mws[k]) == pytest.approx(float(same[k]), abs=2e-3)
    # a large dataset: the estimators differ only by the own-sample weight
    big = tc_decomposition(z, mu, logvar, "mss", 10**6)
    for k in ("mi", "tc", "dwkl"):
        assert float(mws[k]) == pytest.approx(float(big[k]), abs=0.02)
    assert float(mws["tc"]) > 0.02  # the correlated batch has a visible TC


def test_beta_tc_vae_loss_combines_the_terms():
    torch.manual_seed(0)
    m = build_model("beta_tc_vae", alpha=1.0, beta=6.0, gamma=1.0, **TINY)
    out = m.training_losses(_images(), generator=_gen(8))
    expected = out["rec"] + out["mi"] + 6.0 * out["tc"] + out["dwkl"]
    torch.testing.assert_close(out["loss"].detach(), expected)
    with pytest.raises(ConfigError, match="dataset_size"):
        build_model("beta_tc_vae", estimator="mss", **TINY)
    mss = build_model("beta_tc_vae", estimator="mss", dataset_size=1000, **TINY)
    assert set(mss.training_losses(_images())) >= {"loss", "rec", "kl", "mi", "tc", "dwkl"}


@pytest.mark.parametrize("variant", ["vae", "beta_vae", "factor_vae", "beta_tc_vae", "dip_vae_ii"])
def test_kl_warmup_weights_the_kl_term(variant):
    """loss(step) = rest + w(step) * kl_part with w = min(1, step / W): the two losses of a
    model with and without the warm-up agree at w = 1 and differ by (1 - w) kl_part."""
    torch.manual_seed(0)
    plain = build_model(variant, **TINY)
    warm = build_model(variant, kl_warmup=100, **TINY)
    warm.load_state_dict(plain.state_dict())
    x = _images()

    def loss(model, step):
        return model.training_losses(x, step=step, generator=_gen(5))["loss"]

    full, zero = loss(plain, 0), loss(warm, 0)  # w = 0: the KL part is gone
    kl_part = full - zero
    assert abs(float(kl_part.detach())) > 1e-4  # the beta-TC estimate can be < 0 on a tiny batch
    torch.testing.assert_close(loss(warm, 25), zero + 0.25 * kl_part)
    torch.testing.assert_close(loss(warm, 100), full)
    torch.testing.assert_close(loss(warm, 10_000), full)
    assert warm.kl_weight(50) == 0.5 and plain.kl_weight(0) == 1.0
    assert build_model(variant, **warm.hparams()).kl_warmup == 100


def test_kl_warmup_bad_values():
    with pytest.raises(ConfigError, match="kl_warmup: expected an integer >= 0, got -1"):
        build_model("vae", kl_warmup=-1, **TINY)
    with pytest.raises(ConfigError, match="kl_warmup: expected an integer >= 0"):
        build_model("beta_vae", kl_warmup=2.5, **TINY)
    with pytest.raises(ConfigError, match="kl_warmup: the capacity form"):
        build_model("beta_vae", mode="capacity", kl_warmup=10, **TINY)
