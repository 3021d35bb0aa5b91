"""Every variant through the registry: shapes, round trips, hparams, a few optimisation steps."""

from __future__ import annotations

import json

import pytest
import torch

from vaelens.errors import ConfigError
from vaelens.models import (
    ROY2025_PRESET,
    VAEBase,
    build_model,
    get_model_class,
    list_models,
    model_defaults,
)

NAMES = ["vae", "beta_vae", "factor_vae", "beta_tc_vae", "dip_vae_i", "dip_vae_ii", "vq_vae"]


def tiny(name: str, **kw) -> dict:
    """Tiny hyper-parameters for each variant (tests only)."""
    hp: dict = {"width": 0.125, **kw}
    if name == "vq_vae":
        hp.update(num_codes=16, code_dim=4)
    else:
        hp.update(latent_dim=4)
    if name == "factor_vae":
        hp.update(disc_hidden=16, disc_layers=2)
    return hp


def _images(n: int, c: int, seed: int = 0) -> torch.Tensor:
    """Binary images of one filled square each (random position and size)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, c, 64, 64)
    for i in range(n):
        s = int(torch.randint(8, 24, (1,), generator=g))
        r, q = (int(v) for v in torch.randint(0, 64 - s, (2,), generator=g))
        x[i, :, r : r + s, q : q + s] = 1.0
    return x


def test_list_models_and_classes():
    assert list_models() == NAMES
    for name in NAMES:
        cls = get_model_class(name)
        assert issubclass(cls, VAEBase) and cls.variant == name


def test_unknown_names_and_hparams_raise_config_error():
    with pytest.raises(ConfigError, match=r"model: unknown variant 'resnet'.*'beta_vae'"):
        build_model("resnet")
    with pytest.raises(ConfigError, match=r"unknown hyper-parameter\(s\) \['betta'\].*'beta'"):
        build_model("beta_vae", betta=4.0)
    with pytest.raises(ConfigError, match="latent_dim"):
        build_model("vq_vae", latent_dim=10)  # VQ-VAE's latent size follows code_dim
    with pytest.raises(ConfigError, match="beta"):
        build_model("beta_vae", beta=-1.0, width=0.125)
    with pytest.raises(ConfigError, match="likelihood"):
        build_model("vae", likelihood="laplace", width=0.125)
    with pytest.raises(ConfigError, match="image_size"):
        build_model("dip_vae_ii", image_size=128, width=0.125)
    with pytest.raises(ConfigError, match="latent_dim"):
        build_model("vae", latent_dim=2.5, width=0.125)


def test_defaults_and_roy2025_preset():
    for name in NAMES:
        d = model_defaults(name)
        assert json.loads(json.dumps(d)) == d
        assert set(d) == set(build_model(name, **tiny(name)).hparams())
    assert model_defaults("vae")["latent_dim"] == 10
    assert model_defaults("beta_vae")["beta"] == 4.0
    assert model_defaults("factor_vae")["gamma"] == 40.0
    assert model_defaults("beta_tc_vae")["beta"] == 6.0
    assert model_defaults("vq_vae")["beta_c"] == 0.25
    assert ROY2025_PRESET["beta_vae"] == {"latent_dim": 10, "beta": 4.0}
    assert ROY2025_PRESET["factor_vae"] == {"latent_dim": 10, "gamma": 40.0, "disc_lr": 5e-5}
    assert set(ROY2025_PRESET) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_hparams_written_with_the_old_backbone_name_still_rebuild(name):
    """Run directories written before the rename store ``backbone="seeds"``: still loadable."""
    model = build_model(name, **tiny(name))
    hp = model.hparams()
    assert hp["backbone"] == "roy2025"
    old = build_model(name, **{**hp, "backbone": "seeds"})
    assert old.hparams() == hp
    old.load_state_dict(model.state_dict())


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_round_trip_and_rebuild(name, channels):
    torch.manual_seed(0)
    model = build_model(name, **tiny(name, in_channels=channels)).eval()
    x = _images(3, channels)
    post = model.encode(x)
    assert post.mean.shape == (3, model.latent_dim)
    if name != "vq_vae":
        assert post.logvar.shape == (3, model.latent_dim)
    decoded = model.decode(post.mean)
    assert decoded.shape == (3, channels, 64, 64)
    torch.testing.assert_close(model(x), decoded)
    rec = model.reconstruct(x).detach()
    assert rec.shape == x.shape and float(rec.min()) >= 0.0 and float(rec.max()) <= 1.0

    hp = model.hparams()
    rebuilt = build_model(name, **json.loads(json.dumps(hp))).eval()
    assert rebuilt.hparams() == hp
    rebuilt.load_state_dict(model.state_dict())  # strict: same architecture
    torch.testing.assert_close(rebuilt(x), decoded)

    out = model.training_losses(x, step=0)
    assert {"loss", "rec", "kl"} <= set(out)
    for key, value in out.items():
        assert value.ndim == 0 and torch.isfinite(value), key
        if key != "loss" and key != "aux_loss":
            assert not value.requires_grad, key


@pytest.mark.parametrize("name", NAMES)
def test_a_few_steps_reduce_the_loss(name):
    torch.manual_seed(0)
    hp = tiny(name)
    if name == "vq_vae":
        hp["likelihood"] = "gaussian"  # also exercise the Gaussian likelihood
    model = build_model(name, **hp)
    x = _images(8, 1, seed=1)

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            val = model.training_losses(x, generator=torch.Generator().manual_seed(123))["loss"]
        model.train()
        return float(val)

    model.train()
    model.training_losses(x)  # VQ-VAE: data-dependent codebook init
    opt = torch.optim.Adam(model.main_parameters(), lr=3e-3)
    aux = model.aux_module()
    aux_opt = torch.optim.Adam(aux.parameters(), **model.aux_optimizer_config()) if aux else None
    before = evaluate()
    for step in range(20):
        out = model.training_losses(x, step=step, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        out["loss"].backward()
        if aux_opt is not None:
            aux_opt.zero_grad()
            for p in aux.parameters():
                p.grad = None
            out["aux_loss"].backward()
        opt.step()
        if aux_opt is not None:
            aux_opt.step()
    after = evaluate()
    assert after < 0.9 * before, (before, after)
