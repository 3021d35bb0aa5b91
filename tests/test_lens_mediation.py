"""Causal mediation: TE, natural indirect and direct effects, and the identities that hold."""

from __future__ import annotations

import torch

from test_lens_models import ConvVAE, LinearAE
from vaelens.lens import Lens, mediation


def test_linear_model_decomposes_exactly_per_unit() -> None:
    torch.manual_seed(0)
    x, xt = torch.randn(5, 6), torch.randn(5, 6)
    lens = Lens(LinearAE(), example=x)
    res = mediation(lens, x, xt, ["enc1", "latent", "dec1"])
    te = (lens.forward(xt) - lens.forward(x)).norm(dim=1)
    torch.testing.assert_close(res.total, te)
    for name in ("enc1", "latent", "dec1"):
        # additive model: TE = NIE_C + NDE_C for every component, so the shares sum to 1
        torch.testing.assert_close(
            res.indirect_share[name] + res.direct_share[name],
            torch.ones(5, lens.units(name)),
            rtol=0,
            atol=1e-4,
        )
        torch.testing.assert_close(
            res.interaction_share(name), torch.zeros(5, lens.units(name)), rtol=0, atol=1e-4
        )
        # and the unit shares of a layer add up to the whole layer's share (= 1, a cut)
        torch.testing.assert_close(
            res.indirect_share[name].sum(1), torch.ones(5), atol=1e-4, rtol=0
        )


def test_whole_layer_of_a_sequential_net_mediates_everything() -> None:
    torch.manual_seed(0)
    x, xt = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16)
    lens = Lens(ConvVAE(), example=x)
    names = ["encoder.1", "encoder.4", "latent", "decoder.3"]
    res = mediation(lens, x, xt, names, component="layer")
    for name in names:
        torch.testing.assert_close(res.indirect[name], res.total, rtol=0, atol=1e-5)
        torch.testing.assert_close(res.indirect_share[name], torch.ones(4), rtol=0, atol=1e-4)
        torch.testing.assert_close(res.direct[name], torch.zeros(4), rtol=0, atol=1e-5)
    # onto the latent mean (Roy (2025) Table 5): encoder layers only, same identity
    res_z = mediation(lens, x, xt, component="layer", target="latent")
    assert set(res_z.indirect) == set(lens.encoder_hook_names)
    dz = (lens.encode_mean(xt) - lens.encode_mean(x)).norm(dim=1)
    torch.testing.assert_close(res_z.total, dz)
    torch.testing.assert_close(res_z.indirect["encoder.3"], dz, rtol=0, atol=1e-5)
    assert res_z.direct["logvar"].max() > 0  # logvar does not carry the mean: all direct


def test_unit_effects_match_a_looped_reference() -> None:
    torch.manual_seed(2)
    x, xt = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16)
    lens = Lens(ConvVAE(), example=x)
    name = "encoder.3"
    res = mediation(lens, x, xt, [name])
    f0, f1 = lens.forward(x), lens.forward(xt)
    _, c0 = lens.run_with_cache(x, [name])
    _, c1 = lens.run_with_cache(xt, [name])
    te = (f1 - f0).flatten(1)
    for u in range(lens.units(name)):

        def put(src: torch.Tensor, u: int = u):
            def hook(a: torch.Tensor, _: str) -> torch.Tensor:
                a = a.clone()
                a[:, u] = src[:, u]
                return a

            return hook

        nie = (lens.run_with_hooks(x, [(name, put(c1[name]))]) - f0).flatten(1)
        nde = (lens.run_with_hooks(xt, [(name, put(c0[name]))]) - f0).flatten(1)
        torch.testing.assert_close(res.indirect[name][:, u], nie.norm(dim=1), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(res.direct[name][:, u], nde.norm(dim=1), rtol=1e-4, atol=1e-5)
        share = (nie * te).sum(1) / (te * te).sum(1)
        torch.testing.assert_close(res.indirect_share[name][:, u], share, rtol=1e-4, atol=1e-5)
    assert res.mean_indirect_share(name).shape == (lens.units(name),)


def test_null_intervention_has_zero_effects_and_shares() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 16, 16)
    lens = Lens(ConvVAE(), example=x)
    res = mediation(lens, x, x.clone(), ["encoder.2"])
    assert res.total.abs().max() == 0
    assert res.indirect_share["encoder.2"].abs().max() == 0
    assert res.interaction_share("encoder.2").abs().max() == 0
    assert res.mean_indirect_share("encoder.2").abs().max() == 0
