"""The Lens: hook names, caches, temporary hooks, suffix runs and stacked variants."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from test_lens_models import ConvVAE, LinearAE, SkipAE
from vaelens.errors import ArgumentError, ModelContractError
from vaelens.lens import Lens, latent_mean


@pytest.fixture
def conv() -> tuple[ConvVAE, Lens, torch.Tensor]:
    torch.manual_seed(0)
    model = ConvVAE()
    x = torch.rand(4, 1, 16, 16)
    return model, Lens(model, example=x), x


def _no_hooks_left(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and "forward" not in m.__dict__
        for m in model.modules()
    )


def test_hook_names_follow_forward_order_and_split_encoder_decoder(conv) -> None:
    _, lens, _ = conv
    enc = [f"encoder.{i}" for i in range(7)] + ["encoder", "mu", "logvar"]
    dec = ["fc"] + [f"decoder.{i}" for i in range(7)] + ["decoder"]
    assert lens.hook_names == [*enc, "latent", *dec]
    assert lens.encoder_hook_names == enc
    assert lens.decoder_hook_names == dec
    assert not any(n.startswith("discriminator") for n in lens.hook_names)
    assert lens.hook_point("encoder.2").shape == (6, 4, 4)
    assert lens.units("encoder.2") == 6 and lens.units("mu") == 3


def test_reused_module_gets_one_hook_point_per_call() -> None:
    lens = Lens(SkipAE(), example=torch.rand(3, 6))
    assert lens.decoder_hook_names == ["dec0", "act:0", "dec1", "act:1", "out"]


def test_contract_errors_name_what_is_missing() -> None:
    with pytest.raises(ModelContractError, match="decode"):
        Lens(nn.Linear(2, 2))
    with pytest.raises(ModelContractError, match="example"):
        _ = Lens(LinearAE()).hook_names
    lens = Lens(LinearAE(), example=torch.rand(2, 6))
    with pytest.raises(ArgumentError, match="not a hook point"):
        lens.run_with_cache(torch.rand(2, 6), ["nope"])
    with pytest.raises(ArgumentError, match="output"):
        Lens(LinearAE(), output="softmax")
    with pytest.raises(ModelContractError, match="encode"):
        latent_mean("a string")


def test_cache_equals_manual_computation(conv) -> None:
    model, lens, x = conv
    out, cache = lens.run_with_cache(x, ["encoder.1", "mu", "latent", "decoder.3"])
    with torch.no_grad():
        h1 = torch.relu(model.encoder[0](x))
        mu = model.mu(model.encoder(x))
        d = model.decoder[:4](model.fc(mu))
        rec = torch.sigmoid(model.decode(mu))
    torch.testing.assert_close(cache["encoder.1"], h1, rtol=0, atol=0)
    torch.testing.assert_close(cache["mu"], mu, rtol=0, atol=0)
    torch.testing.assert_close(cache["latent"], mu, rtol=0, atol=0)
    torch.testing.assert_close(cache["decoder.3"], d, rtol=0, atol=0)
    torch.testing.assert_close(out, rec, rtol=0, atol=0)
    assert set(cache) == {"encoder.1", "mu", "latent", "decoder.3"}


def test_output_map_options() -> None:
    torch.manual_seed(0)
    model, x = ConvVAE(), torch.rand(2, 1, 16, 16)
    logits = model.decode(model.encode(x)[0]).detach()
    torch.testing.assert_close(Lens(model, example=x).forward(x), torch.sigmoid(logits))
    torch.testing.assert_close(Lens(model, output="identity", example=x).forward(x), logits)
    torch.testing.assert_close(
        Lens(model, output=lambda t: 2 * t, example=x).forward(x), 2 * logits
    )


def test_hooks_edit_activations_and_are_removed_even_after_an_exception(conv) -> None:
    model, lens, x = conv
    clean = lens.forward(x)
    zeroed = lens.run_with_hooks(x, [("latent", lambda a, _: torch.zeros_like(a))])
    torch.testing.assert_close(zeroed, lens.decode_output(torch.zeros(4, 3)))
    assert not torch.allclose(zeroed, clean)
    assert _no_hooks_left(model)

    def boom(a: torch.Tensor, name: str) -> None:
        raise ValueError(f"boom at {name}")

    with pytest.raises(ValueError, match=r"boom at encoder\.3"):
        lens.run_with_hooks(x, [("encoder.3", boom)])
    assert _no_hooks_left(model)
    cap = lens.capture(x)
    with pytest.raises(ArgumentError, match="activation"):
        lens.run_from("decoder.2", torch.zeros(3, 6, 4, 4), cap)  # wrong batch
    assert _no_hooks_left(model)
    torch.testing.assert_close(lens.forward(x), clean, rtol=0, atol=0)


def test_suffix_run_equals_full_run_from_every_hook_point(conv) -> None:
    _, lens, x = conv
    cap = lens.capture(x)
    for name in lens.hook_names:
        out = lens.run_from(name, cap.activations[name], cap)
        torch.testing.assert_close(out, cap.output, rtol=0, atol=1e-6, msg=name)
    for name in lens.encoder_hook_names:
        z = lens.run_from(name, cap.activations[name], cap, target="latent")
        torch.testing.assert_close(z, cap.latent, rtol=0, atol=1e-6)


def test_suffix_run_skips_the_prefix_modules(conv) -> None:
    model, lens, x = conv
    cap = lens.capture(x)
    calls: list[str] = []

    def spy(name: str, forward):
        def wrapped(*args):
            calls.append(name)
            return forward(*args)

        return wrapped

    subs = [(n, m) for n, m in model.named_modules() if n]
    for n, m in subs:
        m.forward = spy(n, m.forward)
    try:
        out = lens.run_from("decoder.3", cap.activations["decoder.3"], cap)
    finally:
        for _, m in subs:
            del m.forward
    torch.testing.assert_close(out, cap.output, rtol=0, atol=1e-6)
    ran = set(calls)
    assert {"decoder.4", "decoder.5", "decoder.6"} <= ran
    assert not {"encoder.0", "mu", "fc", "decoder.2"} & ran


def test_stacked_variants_equal_separate_runs(conv) -> None:
    _, lens, x = conv
    cap = lens.capture(x)
    name = "encoder.3"
    a = cap.activations[name]
    variants = torch.stack([a, a * 0.5, torch.zeros_like(a)])
    outs = lens.run_variants(name, variants, cap)
    assert outs.shape == (3, *cap.output.shape)
    for k in range(3):
        ref = lens.run_with_hooks(x, [(name, lambda _a, _n, k=k: variants[k])])
        torch.testing.assert_close(outs[k], ref, rtol=0, atol=1e-6)


def test_skip_connection_runs_stacked_with_the_prefix_repeated() -> None:
    torch.manual_seed(0)
    model, x = SkipAE(), torch.rand(5, 6)
    lens = Lens(model, example=x)
    cap = lens.capture(x)
    a = cap.activations["dec1"]
    # the skip tensor (act:0, replayed) is repeated with the stacked rows: no fallback needed
    stacked = lens.run_from("dec1", torch.cat([a, a + 1.0]), cap)
    variants = torch.stack([a, a + 1.0])
    outs = lens.run_variants("dec1", variants, cap)
    assert lens.fallbacks == {}
    for k in range(2):
        ref = lens.run_with_hooks(x, [("dec1", lambda _a, _n, k=k: variants[k])])
        torch.testing.assert_close(outs[k], ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(stacked[k * 5 : (k + 1) * 5], ref, rtol=0, atol=1e-6)


def test_encode_may_return_tensor_tuple_or_object_with_mean() -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 6)
    for model in (LinearAE(), SkipAE()):
        lens = Lens(model, example=x)
        enc = model.encode(x)
        mean = enc if isinstance(enc, torch.Tensor) else enc.mean
        torch.testing.assert_close(lens.encode_mean(x), mean.detach())
