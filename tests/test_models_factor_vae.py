"""FactorVAE: permute_dims, the discriminator, and the two-optimiser training contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vaelens.errors import ConfigError
from vaelens.models import ROY2025_PRESET, build_model
from vaelens.models.factor_vae import Discriminator, permute_dims

TINY = {"width": 0.125, "latent_dim": 4, "disc_hidden": 16, "disc_layers": 2}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 8) -> torch.Tensor:
    return (torch.rand(n, 1, 64, 64, generator=_gen(1)) > 0.7).float()


def test_permute_dims_keeps_marginals_and_breaks_dependence():
    base = torch.randn(2000, 1, generator=_gen(0), dtype=torch.float64)
    z = torch.cat([base, base, -2.0 * base], dim=1)  # perfectly dependent columns
    p = permute_dims(z, _gen(1))
    assert p.shape == z.shape
    for j in range(3):
        torch.testing.assert_close(torch.sort(p[:, j]).values, torch.sort(z[:, j]).values)
    corr = np.corrcoef(p.numpy(), rowvar=False)
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.1
    torch.testing.assert_close(permute_dims(z, _gen(1)), p)  # reproducible with a generator
    assert not torch.equal(permute_dims(z, _gen(2)), p)
    with pytest.raises(ConfigError, match="z"):
        permute_dims(torch.zeros(3, 2, 2))


def test_default_discriminator_architecture_and_optimizer_config():
    d = Discriminator(10)
    linears = [m for m in d.net if isinstance(m, nn.Linear)]
    assert [lin.out_features for lin in linears] == [1000] * 6 + [2]
    acts = [m for m in d.net if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 6 and all(a.negative_slope == 0.2 for a in acts)
    m = build_model("factor_vae", width=0.125)
    assert m.gamma == 40.0
    assert m.aux_optimizer_config() == {"lr": 1e-4, "betas": (0.5, 0.9)}
    roy = build_model("factor_vae", width=0.125, disc_hidden=8, **ROY2025_PRESET["factor_vae"])
    assert roy.aux_optimizer_config()["lr"] == 5e-5 and roy.gamma == 40.0
    assert m.aux_module() is m.discriminator
    aux_ids = {id(p) for p in m.discriminator.parameters()}
    main = m.main_parameters()
    assert main and not any(id(p) in aux_ids for p in main)
    assert len(main) + len(aux_ids) == len(list(m.parameters()))


def test_loss_terms_and_gradient_routing():
    torch.manual_seed(0)
    m = build_model("factor_vae", gamma=7.0, **TINY)
    out = m.training_losses(_images(), generator=_gen(3))
    torch.testing.assert_close(out["loss"].detach(), out["rec"] + out["kl"] + 7.0 * out["tc"])
    assert 0.0 <= float(out["disc_acc"]) <= 1.0
    disc = list(m.discriminator.parameters())
    main = m.main_parameters()
    # aux_loss reaches the discriminator only (real z detached)
    grads = torch.autograd.grad(out["aux_loss"], main, retain_graph=True, allow_unused=True)
    assert all(g is None for g in grads)
    expected_disc = torch.autograd.grad(out["aux_loss"], disc, retain_graph=True)
    # the TC term does reach the encoder through z
    tc_part = torch.autograd.grad(
        m.gamma * m.discriminator(m.encode(_images()).mean).diff(dim=1).sum(),
        list(m.encoder.mu.parameters()),
    )
    assert all(float(g.abs().sum()) > 0 for g in tc_part)
    # the contract: discriminator grads are those of aux_loss alone
    out["loss"].backward()
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in disc)
    for p in disc:
        p.grad = None
    out["aux_loss"].backward()
    for p, g in zip(disc, expected_disc, strict=True):
        torch.testing.assert_close(p.grad, g)
    assert all(p.grad is not None for p in m.encoder.parameters())


def test_two_training_steps_follow_the_contract_without_inplace_errors():
    torch.manual_seed(0)
    m = build_model("factor_vae", **TINY)
    main_opt = torch.optim.Adam(m.main_parameters(), lr=1e-3)
    aux_opt = torch.optim.Adam(m.aux_module().parameters(), **m.aux_optimizer_config())
    before_d = [p.detach().clone() for p in m.discriminator.parameters()]
    before_e = [p.detach().clone() for p in m.encoder.parameters()]
    x = _images()
    for step in range(2):
        out = m.training_losses(x, step=step, generator=_gen(step))
        main_opt.zero_grad()
        aux_opt.zero_grad()
        out["loss"].backward()
        for p in m.aux_module().parameters():
            p.grad = None
        out["aux_loss"].backward()
        main_opt.step()
        aux_opt.step()
    assert all(
        not torch.equal(a, b) for a, b in zip(before_d, m.discriminator.parameters(), strict=True)
    )
    assert any(not torch.equal(a, b) for a, b in zip(before_e, m.encoder.parameters(), strict=True))


def test_factor_vae_rejects_bad_inputs():
    with pytest.raises(ConfigError, match="disc_betas"):
        build_model("factor_vae", disc_betas=[0.5], **TINY)
    with pytest.raises(ConfigError, match="disc_lr"):
        build_model("factor_vae", disc_lr=0.0, **TINY)
    m = build_model("factor_vae", **TINY)
    with pytest.raises(ConfigError, match="at least 2"):
        m.training_losses(_images(1))
