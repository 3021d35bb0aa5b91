"""The lens on VAEs written for other libraries: adapters found or named, batch idioms, fallbacks."""

from __future__ import annotations

import warnings
from collections import namedtuple
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import vaelens.analysis.core as core
from _foreign_models import (
    Blocks,
    DisentanglingVAEStyle,
    DisentStyle,
    FlattenVAE,
    LadderAE,
    ModelOutput,
    PythaeStyle,
    PyTorchVAEStyle,
)
from test_lens_patching import looped_patching
from vaelens.analysis import analyze
from vaelens.errors import ArgumentError, ModelContractError
from vaelens.lens import (
    ADAPTERS,
    FallbackWarning,
    Lens,
    activation_patching,
    read_image,
    read_posterior,
)

TINY = {"n_samples": 6, "n_boot": 20, "n_probe": 40, "n_show": 1}

# (model factory, adapter): each runs with no glue, or with one named adapter
FOREIGN = {
    "pythae": (PythaeStyle, None),
    "pythae-named": (PythaeStyle, "pythae"),
    "disent": (DisentStyle, None),
    "disent-named": (DisentStyle, "disent"),
    "pytorch_vae": (PyTorchVAEStyle, None),
    "pytorch_vae-named": (PyTorchVAEStyle, "pytorch_vae"),
    "disentangling_vae": (DisentanglingVAEStyle, None),
    "disentangling_vae-named": (DisentanglingVAEStyle, "disentangling_vae"),
    "flatten": (FlattenVAE, None),
}


def _model(key: str) -> tuple[nn.Module, str | None]:
    torch.manual_seed(0)
    factory, adapter = FOREIGN[key]
    return factory(), adapter


def _x(n: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 64, 64, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- reading rules


def test_encoder_outputs_are_read_by_the_usual_names() -> None:
    m, lv = torch.randn(2, 3), torch.randn(2, 3)

    @dataclass
    class Out:
        z_mean: torch.Tensor
        z_logvar: torch.Tensor

    Pair = namedtuple("Pair", ["mu", "log_var"])
    cases = [
        ModelOutput(embedding=m, log_covariance=lv),
        {"mu": m, "logvar": lv},
        Out(m, lv),
        Pair(m, lv),
        [m, lv],
        (m, lv, torch.zeros(1)),
    ]
    for case in cases:
        mean, logvar = read_posterior(case)
        assert mean is m and logvar is lv, type(case).__name__
    mean, logvar = read_posterior(torch.distributions.Normal(m, lv.exp()))
    torch.testing.assert_close(mean, m)
    torch.testing.assert_close(logvar, 2 * lv)
    assert read_posterior(m) == (m, None)
    for out in (ModelOutput(reconstruction=m), {"x_hat": m}, (m, lv), [m], m):
        assert read_image(out) is m
    with pytest.raises(ModelContractError, match=r"encode.*mu"):
        read_posterior({"nothing": m})
    with pytest.raises(ModelContractError, match=r"decode.*reconstruction"):
        read_image({"nothing": m})


@pytest.mark.parametrize("key", list(FOREIGN))
def test_hook_names_without_an_example(key: str) -> None:
    model, adapter = _model(key)
    lens = Lens(model, adapter=adapter)
    if key == "pytorch_vae":  # PyTorch-VAE models declare no input shape: the adapter knows it
        with pytest.raises(ModelContractError, match="declares no input shape"):
            _ = lens.hook_names
        return
    assert lens.encoder_hook_names and lens.decoder_hook_names
    assert lens.latent_name in lens.hook_names


def test_concatenated_mean_logvar_is_split_when_the_decoder_takes_half() -> None:
    model, _ = _model("disent")
    x = _x()
    lens = Lens(model)
    mean, logvar = lens.encode_posterior(x)
    raw = model.encode(x)
    assert raw.shape == (3, 6) and mean.shape == (3, 3)
    torch.testing.assert_close(mean, raw[:, :3])
    torch.testing.assert_close(logvar, raw[:, 3:])
    # a decoder that takes the whole width: no split
    flat = FlattenVAE(latent=4)
    assert Lens(flat).encode_posterior(x)[1] is None


def test_disent_adapter_maps_logits_to_images() -> None:
    model, _ = _model("disent")
    x = _x()
    out = Lens(model, adapter="disent").forward(x)
    mean = model.encode(x)[:, :3]
    torch.testing.assert_close(out, torch.sigmoid(model.decode(mean)))
    assert ADAPTERS["disent"].output == "sigmoid"


# --------------------------------------------------------------------------- analyze + patching


@pytest.mark.parametrize("key", list(FOREIGN))
def test_foreign_models_run_through_analyze(key: str) -> None:
    model, adapter = _model(key)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        result = analyze(model, Blocks(), adapter=adapter, **TINY)
    assert result.baseline is not None
    assert result.meta.latent_dim == 3
    assert not [n for n in result.meta.notes if "fell back" in n]


@pytest.mark.parametrize("key", ["pythae", "disent", "pytorch_vae", "disentangling_vae", "flatten"])
def test_patching_equals_a_naive_hook_loop(key: str) -> None:
    model, adapter = _model(key)
    x1, x2 = _x(3, 1), _x(3, 2)
    lens = Lens(model, adapter=adapter, example=x1)
    names = [lens.encoder_hook_names[0], lens.encoder_hook_names[-1], lens.decoder_hook_names[0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # every layer runs stacked
        effects = activation_patching(lens, x1, x2, names)
    assert lens.fallbacks == {}
    for name in names:
        ref = looped_patching(lens, x1, x2, name)
        torch.testing.assert_close(effects[name], ref, rtol=1e-4, atol=1e-5, msg=name)


def test_flattening_model_runs_stacked_without_fallback() -> None:
    model = FlattenVAE()
    x = _x(2)
    lens = Lens(model, example=x)
    cap = lens.capture(x)
    a = cap.activations["conv"]
    variants = torch.stack([a, 2 * a, torch.zeros_like(a)])
    # the premise: with the input left at N rows, view(x.size(0), -1) breaks the stacked rows
    with pytest.raises(RuntimeError):
        model.mu(lens.model.act(variants.flatten(0, 1)).view(x.size(0), -1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)
        outs = lens.run_variants("conv", variants, cap)
    assert lens.fallbacks == {}
    for k in range(3):
        ref = lens.run_with_hooks(x, [("conv", lambda _a, _n, k=k: variants[k])])
        torch.testing.assert_close(outs[k], ref, rtol=0, atol=1e-6)


def test_fallback_on_any_exception_is_warned_once_and_noted() -> None:
    torch.manual_seed(0)
    model, x = LadderAE(), torch.rand(4, 1, 4, 4)
    lens = Lens(model, example=x)
    cap = lens.capture(x)
    a = cap.activations["enc1"]
    variants = torch.stack([a, a + 1.0])
    with pytest.warns(FallbackWarning, match=r"'enc1'.*AssertionError: skip batch"):
        outs = lens.run_variants("enc1", variants, cap)
    assert lens.fallbacks == {"enc1": "AssertionError: skip batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # once per layer
        again = lens.run_variants("enc1", variants, cap)
    torch.testing.assert_close(again, outs)
    for k in range(2):
        ref = lens.run_with_hooks(x, [("enc1", lambda _a, _n, k=k: variants[k])])
        torch.testing.assert_close(outs[k], ref, rtol=0, atol=1e-6)


def test_analyze_notes_the_layers_that_fell_back() -> None:
    torch.manual_seed(0)
    with pytest.warns(FallbackWarning):
        result = analyze(LadderAE(), Blocks(4), layers=("enc0", "enc1", "mu", "dec"), **TINY)
    notes = [n for n in result.meta.notes if "fell back" in n]
    assert any("'enc1'" in n and "AssertionError" in n for n in notes)
    assert any(n.startswith("random twin: ") for n in notes)


# --------------------------------------------------------------------------- explicit adapters


def _poison_after_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every module of the original raise once its random twin exists."""
    real = core.random_baseline

    def poisoned(model: nn.Module, seed: int = 0) -> nn.Module:
        twin = real(model, seed)

        def boom(*_):
            raise RuntimeError("the original model was called")

        for m in model.modules():
            m.register_forward_pre_hook(boom)
        return twin

    monkeypatch.setattr(core, "random_baseline", poisoned)


def test_the_twins_adapter_calls_the_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    _poison_after_copy(monkeypatch)
    model = PythaeStyle()
    result = analyze(
        model,
        Blocks(),
        encode=lambda m, x: m.encoder(x).embedding,
        decode=lambda m, z: m.decoder(z)["reconstruction"],
        **TINY,
    )
    assert result.baseline is not None
    result = analyze(PythaeStyle(), Blocks(), **TINY)  # automatic: also the twin's own modules
    assert result.baseline is not None


def test_closure_glue_fails_naming_the_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    _poison_after_copy(monkeypatch)
    model = PythaeStyle()
    model.encode = lambda x: model.encoder(x).embedding  # glue that a deep copy shares
    model.decode = lambda z: model.decoder(z).reconstruction
    with pytest.raises(ModelContractError, match=r"^random twin: .*deep copy"):
        analyze(model, Blocks(), **TINY)


def test_a_wrong_adapter_names_the_model_and_the_call() -> None:
    model = PythaeStyle()
    with pytest.raises(ModelContractError, match=r"^encode\(x\) of PythaeStyle.*AttributeError"):
        Lens(model, encode=lambda m, x: m.encoder(x).mean).trace(_x())
    with pytest.raises(ModelContractError, match=r"^decode\(z\) of PythaeStyle.*RuntimeError"):
        analyze(model, Blocks(), decode=lambda m, z: m.decoder(z.T), **TINY)
    original = model

    def only_the_original(m, x):
        if m is not original:
            raise KeyError("not for twins")
        return m.encoder(x)

    with pytest.raises(ModelContractError, match=r"^random twin: encode\(x\) of .*KeyError"):
        analyze(model, Blocks(), encode=only_the_original, **TINY)
    with pytest.raises(ArgumentError, match=r"encode: expected a callable encode\(model, x\)"):
        Lens(model, encode=lambda x: x)
    with pytest.raises(ArgumentError, match="adapter: expected one of"):
        Lens(model, adapter="keras")
    with pytest.raises(ModelContractError, match="lacks encode"):
        Lens(nn.Linear(2, 2))


class _WideMean(nn.Module):
    """Declares latent_dim 3 but encodes 4 numbers that its decoder also takes."""

    latent_dim = 3
    image_shape = (1, 64, 64)

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(64 * 64, 4)
        self.dec = nn.Linear(4, 64 * 64)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z).view(-1, 1, 64, 64)


def test_encoder_width_is_checked_against_the_declared_latent_size() -> None:
    with pytest.raises(ModelContractError, match=r"shape \(2, 4\).*latent size of 3"):
        analyze(_WideMean(), Blocks(), **TINY)


# --------------------------------------------------------------------------- the real libraries


def test_pythae_models_run_with_no_glue() -> None:
    models = pytest.importorskip("pythae.models")
    torch.manual_seed(0)
    for model in (
        models.BetaVAE(models.BetaVAEConfig(input_dim=(1, 16, 16), latent_dim=3)),
        models.FactorVAE(models.FactorVAEConfig(input_dim=(1, 16, 16), latent_dim=3)),
    ):
        lens = Lens(model)
        assert lens.encoder_hook_names and "discriminator" not in str(lens.hook_names)
        result = analyze(model, Blocks(16), **TINY)
        assert result.baseline is not None
        x1, x2 = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16)
        name = lens.encoder_hook_names[0]
        effects = activation_patching(lens, x1, x2, [name])
        torch.testing.assert_close(
            effects[name], looped_patching(lens, x1, x2, name), atol=1e-5, rtol=1e-4
        )
