"""Activation patching (exact, batched) against a plain looped reference; attribution patching."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from test_lens_models import ConvVAE, HalfCircuit, LinearAE, SkipAE
from vaelens.errors import ArgumentError
from vaelens.lens import (
    Lens,
    activation_patching,
    attribution_patching,
    effect_metric,
    layer_patching,
    patch_sweep,
)


def looped_patching(
    lens: Lens, x1: torch.Tensor, x2: torch.Tensor, name: str, metric: str = "l2"
) -> torch.Tensor:
    """The reference: one full forward per unit, each with a hook replacing that unit."""
    fn = effect_metric(metric)
    with torch.no_grad():
        clean = lens.forward(x1)
        corrupt, cache = lens.run_with_cache(x2, [name])
        a2 = cache[name]
        out = torch.empty(x1.shape[0], a2.shape[1])
        for u in range(a2.shape[1]):

            def patch(a: torch.Tensor, _: str, u: int = u) -> torch.Tensor:
                a = a.clone()
                a[:, u] = a2[:, u]
                return a

            patched = lens.run_with_hooks(x1, [(name, patch)])
            out[:, u] = fn(patched.unsqueeze(0), clean, corrupt)[0]
    return out


@pytest.fixture(scope="module")
def conv() -> tuple[Lens, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x1, x2 = torch.rand(5, 1, 16, 16), torch.rand(5, 1, 16, 16)
    return Lens(ConvVAE(), example=x1), x1, x2


@pytest.mark.parametrize("metric", ["l2", "sq_l2", "projection"])
def test_batched_patching_equals_looped_reference(conv, metric: str) -> None:
    lens, x1, x2 = conv
    # max_batch=7 forces chunks over both the examples and the units
    effects = activation_patching(lens, x1, x2, metric=metric, max_batch=7)
    assert list(effects) == lens.hook_names
    for name in lens.hook_names:
        ref = looped_patching(lens, x1, x2, name, metric)
        assert effects[name].shape == (5, lens.units(name))
        torch.testing.assert_close(effects[name], ref, rtol=1e-3, atol=1e-5, msg=name)
    # a non-trivial check: some units matter, and logvar never reaches the output
    assert effects["encoder.3"].abs().max() > 1e-6
    assert effects["logvar"].abs().max() == 0


def test_patching_with_a_skip_connection_and_inplace_relu() -> None:
    torch.manual_seed(1)
    x1, x2 = torch.rand(4, 6), torch.rand(4, 6)
    lens = Lens(SkipAE(), example=x1)
    effects = activation_patching(lens, x1, x2, ["dec0", "act:0", "dec1"])
    for name in ("dec0", "act:0", "dec1"):
        torch.testing.assert_close(
            effects[name], looped_patching(lens, x1, x2, name), atol=1e-5, rtol=0
        )

    model = ConvVAE()
    model.encoder[1] = nn.ReLU(inplace=True)
    model.decoder[3] = nn.ReLU(inplace=True)
    xa, xb = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16)
    lens = Lens(model, example=xa)
    _, cache = lens.run_with_cache(xa, ["encoder.0"])
    torch.testing.assert_close(cache["encoder.0"], model.encoder[0](xa).detach())
    effects = activation_patching(lens, xa, xb, ["encoder.0", "decoder.2"])
    for name in ("encoder.0", "decoder.2"):
        torch.testing.assert_close(
            effects[name], looped_patching(lens, xa, xb, name), atol=1e-5, rtol=0
        )


class ViewFlattenVAE(ConvVAE):
    """Flattens the last conv map with ``.view``, which channels-last strides do not allow."""

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x
        for layer in list(self.encoder)[:-1]:
            h = layer(h)
        h = h.view(h.shape[0], -1)
        return self.mu(h), self.logvar(h)


def _layout(model: nn.Module) -> dict[str, tuple[int, tuple[int, ...]]]:
    return {n: (p.data_ptr(), p.stride()) for n, p in model.named_parameters()}


def test_sweep_layout_is_channels_last_inside_and_restored_after_even_on_error(conv) -> None:
    _, x1, x2 = conv
    lens = Lens(ConvVAE(), example=x1)
    assert all(p.is_contiguous() for p in lens.model.parameters())
    before = _layout(lens.model)
    convs = [p for p in lens.model.parameters() if p.ndim == 4]
    with lens.sweep_layout(probe=x1) as used:
        assert used
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
        assert not all(p.is_contiguous() for p in convs)
    assert _layout(lens.model) == before
    with pytest.raises(KeyError), lens.sweep_layout(probe=x1):
        raise KeyError("boom")
    assert _layout(lens.model) == before
    activation_patching(lens, x1, x2, ["encoder.1"])
    assert _layout(lens.model) == before


def test_sweep_layout_falls_back_for_a_model_that_cannot_run_channels_last() -> None:
    torch.manual_seed(3)
    x1, x2 = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16)
    model = ViewFlattenVAE()
    # the premise: in channels-last layout this model's forward raises
    probe_model = ViewFlattenVAE().to(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match="view"):
        probe_model.encode(x1.contiguous(memory_format=torch.channels_last))
    lens = Lens(model, example=x1)
    before = _layout(model)
    with lens.sweep_layout(probe=x1) as used:
        assert not used
        assert _layout(model) == before
    effects = activation_patching(lens, x1, x2, ["encoder.2", "decoder.3"])
    for name in ("encoder.2", "decoder.3"):
        torch.testing.assert_close(
            effects[name], looped_patching(lens, x1, x2, name), atol=1e-5, rtol=0
        )
    assert _layout(model) == before


def test_channels_last_can_be_turned_off_and_is_validated(conv) -> None:
    _, x1, x2 = conv
    model = ConvVAE()
    lens = Lens(model, example=x1, channels_last=False)
    before = _layout(model)
    with lens.sweep_layout(probe=x1) as used:
        assert not used
        assert _layout(model) == before
    on = Lens(model, example=x1)
    torch.testing.assert_close(
        activation_patching(lens, x1, x2, ["encoder.3"])["encoder.3"],
        activation_patching(on, x1, x2, ["encoder.3"])["encoder.3"],
        atol=1e-6,
        rtol=0,
    )
    with pytest.raises(ArgumentError, match="channels_last"):
        Lens(model, channels_last="yes")  # type: ignore[arg-type]


def _rows_through_decoder(model: ConvVAE, x1: torch.Tensor, x2: torch.Tensor, name: str):
    """(effects, rows the last decoder layer ran) of patching every unit of ``name``."""
    rows = []
    handle = model.decoder[-1].register_forward_hook(lambda m, a, o: rows.append(o.shape[0]))
    try:
        effects = activation_patching(Lens(model, example=x1), x1, x2, [name], max_batch=64)
    finally:
        handle.remove()
    return effects[name], sum(rows)


def test_units_unchanged_by_the_patch_are_not_run_and_read_exactly_clean() -> None:
    torch.manual_seed(4)
    x1, x2 = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16)
    model = ConvVAE()
    _, rows_all = _rows_through_decoder(model, x1, x2, "encoder.1")
    with torch.no_grad():  # ReLU channels 0 and 1 of the first layer dead on every input
        model.encoder[0].bias[:2] = -1e3
    eff, rows_dead = _rows_through_decoder(model, x1, x2, "encoder.1")
    _, rows_same = _rows_through_decoder(model, x1, x1.clone(), "encoder.1")
    n = x1.shape[0]
    assert rows_all - rows_dead == 2 * n  # two units skipped
    assert rows_all - rows_same == 4 * n  # every unit skipped when x2 == x1
    assert torch.equal(eff[:, :2], torch.zeros(n, 2))
    assert eff[:, 2:].abs().max() > 1e-3
    torch.testing.assert_close(
        eff, looped_patching(Lens(model, example=x1), x1, x2, "encoder.1"), atol=1e-5, rtol=0
    )
    # with explicit references the skipped units read metric(clean output, ref0, ref1)
    lens = Lens(model, example=x1)
    ref0, ref1 = torch.rand(n, 1, 16, 16), torch.rand(n, 1, 16, 16)
    res = patch_sweep(lens, x1, x2, ["encoder.1"], {"m": "l2"}, ref0=ref0, ref1=ref1)
    clean = lens.forward(x1)
    torch.testing.assert_close(
        res["m"]["encoder.1"][:, :2], (clean - ref0).flatten(1).norm(dim=1)[:, None].expand(n, 2)
    )


def test_patching_onto_the_latent_mean(conv) -> None:
    lens, x1, x2 = conv
    eff = activation_patching(lens, x1, x2, ["encoder.5", "mu"], target="latent")
    z1, z2 = lens.encode_mean(x1), lens.encode_mean(x2)
    # patching feature u of mu moves only latent u, by |z2_u - z1_u|
    torch.testing.assert_close(eff["mu"], (z2 - z1).abs(), rtol=0, atol=1e-6)
    with pytest.raises(ArgumentError, match="decoder"):
        activation_patching(lens, x1, x2, ["decoder.2"], target="latent")


def test_whole_layer_patching_of_a_cut_gives_the_corrupt_output(conv) -> None:
    lens, x1, x2 = conv
    eff = layer_patching(lens, x1, x2, ["encoder.2", "latent", "decoder.4"])
    full = (lens.forward(x2) - lens.forward(x1)).flatten(1).norm(dim=1)
    for name in ("encoder.2", "latent", "decoder.4"):
        torch.testing.assert_close(eff[name], full, rtol=0, atol=1e-5)


def test_patching_identifies_a_hand_built_left_half_circuit() -> None:
    torch.manual_seed(0)
    model = HalfCircuit()
    x1 = torch.rand(6, 1, 8, 8)
    x2 = x1.clone()
    x2[..., :4] = torch.rand(6, 1, 8, 4)  # change only the left half
    lens = Lens(model, example=x1)
    eff = activation_patching(lens, x1, x2, ["feat"])["feat"]
    assert (eff[:, 0] > 1e-3).all()
    assert eff[:, 1].abs().max() == 0
    att = attribution_patching(lens, x1, x2, ["feat"], metric="projection")["feat"]
    assert att[:, 1].abs().max() == 0 and (att[:, 0].abs() > 1e-3).all()


def test_attribution_is_exact_first_order_on_a_linear_model() -> None:
    torch.manual_seed(0)
    x1, x2 = torch.randn(4, 6), torch.randn(4, 6)
    lens = Lens(LinearAE(), example=x1)
    names = ["enc1", "enc2", "latent", "dec1"]
    exact = activation_patching(lens, x1, x2, names, metric="projection")
    approx = attribution_patching(lens, x1, x2, names, metric="projection")
    exact_sq = activation_patching(lens, x1, x2, names, metric="sq_l2")
    approx_sq = attribution_patching(lens, x1, x2, names, metric="sq_l2", probes=4000, seed=3)
    for n in names:
        torch.testing.assert_close(approx[n], exact[n], rtol=1e-4, atol=1e-5)
        # Hutchinson estimate: relative error ~ sqrt(2 / probes) ~ 2 %
        torch.testing.assert_close(approx_sq[n], exact_sq[n], rtol=0.12, atol=1e-4)


def test_attribution_ranks_units_like_exact_patching_on_a_conv_vae(conv) -> None:
    lens, x1, x2 = conv
    names = ["encoder.1", "encoder.3", "decoder.3", "decoder.5"]
    exact = activation_patching(lens, x1, x2, names)
    approx = attribution_patching(lens, x1, x2, names, probes=32, seed=0)
    again = attribution_patching(lens, x1, x2, names, probes=32, seed=0)
    e = torch.cat([exact[n].mean(0) for n in names])
    a = torch.cat([approx[n].mean(0) for n in names])
    assert spearmanr(e, a).statistic > 0.8
    for n in names:
        assert torch.equal(approx[n], again[n])  # seeded


def test_bad_arguments_raise_clear_errors(conv) -> None:
    lens, x1, x2 = conv
    with pytest.raises(ArgumentError, match="same shape"):
        activation_patching(lens, x1, x2[:3])
    with pytest.raises(ArgumentError, match="metric"):
        activation_patching(lens, x1, x2, metric="cosine")
    with pytest.raises(ArgumentError, match="max_batch"):
        activation_patching(lens, x1, x2, max_batch=0)
    with pytest.raises(ArgumentError, match="probes"):
        attribution_patching(lens, x1, x2, probes=0)
