"""Input and latent interventions, traversal grids, and discrete VQ code swaps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_lens_models import ConvVAE, TinyVQ
from vaelens.data import ArrayDataset
from vaelens.errors import ArgumentError, ModelContractError
from vaelens.lens import (
    DEFAULT_VALUES,
    Lens,
    code_swap_effects,
    factor_pairs,
    input_intervention,
    is_vq,
    latent_shift_effects,
    latent_traversal,
    set_latent,
    traversal_grid,
)


def tiny_dataset(size: int = 16) -> ArrayDataset:
    """Factors: shape (2: square, bar) x position (4 columns); a white object on black."""
    imgs = np.zeros((2, 4, size, size), dtype=np.uint8)
    for s in range(2):
        for p in range(4):
            c0 = 2 + 3 * p
            if s == 0:
                imgs[s, p, 5:9, c0 : c0 + 3] = 1
            else:
                imgs[s, p, 2:14, c0 : c0 + 1] = 1
    return ArrayDataset(
        "tiny",
        imgs.reshape(8, size, size),
        ("shape", "posx"),
        (2, 4),
        [np.arange(2.0), np.linspace(0, 1, 4)],
        pixel_max=1.0,
    )


def test_factor_pairs_differ_in_exactly_one_factor() -> None:
    ds = tiny_dataset()
    x, xt, f0, f1 = factor_pairs(ds, "posx", 6, seed=0)
    assert x.shape == xt.shape == (6, 1, 16, 16) and x.dtype == torch.float32
    assert (f0[:, 0] == f1[:, 0]).all() and (f0[:, 1] != f1[:, 1]).all()
    torch.testing.assert_close(x, torch.from_numpy(ds.images(f0)))
    again = factor_pairs(ds, 1, 6, seed=0)
    assert np.array_equal(again[2], f0) and np.array_equal(again[3], f1)


def test_input_intervention_gives_latent_shift_and_activation_differences() -> None:
    torch.manual_seed(0)
    ds = tiny_dataset()
    x, xt, _, _ = factor_pairs(ds, "shape", 5, seed=1)
    model = ConvVAE()
    lens = Lens(model, example=x)
    res = input_intervention(lens, x, xt, ["encoder.1", "mu"], max_batch=2)
    with torch.no_grad():
        dz = model.encode(xt)[0] - model.encode(x)[0]
        d1 = torch.relu(model.encoder[0](xt)) - torch.relu(model.encoder[0](x))
    torch.testing.assert_close(res.delta_z, dz, rtol=0, atol=1e-6)
    torch.testing.assert_close(res.deltas["encoder.1"], d1.abs().mean((2, 3)), rtol=0, atol=1e-6)
    torch.testing.assert_close(res.deltas["mu"], dz.abs(), rtol=0, atol=1e-6)
    signed = input_intervention(lens, x, xt, ["encoder.1"], reduce="mean")
    torch.testing.assert_close(signed.deltas["encoder.1"], d1.mean((2, 3)), rtol=0, atol=1e-6)
    full = input_intervention(lens, x, xt, ["encoder.1"], reduce="none")
    torch.testing.assert_close(full.deltas["encoder.1"], d1, rtol=0, atol=1e-6)
    with pytest.raises(ArgumentError, match="reduce"):
        input_intervention(lens, x, xt, reduce="max")


def test_latent_traversal_shapes_and_values() -> None:
    torch.manual_seed(0)
    model = ConvVAE(latent=4)
    x = torch.rand(3, 1, 16, 16)
    lens = Lens(model, example=x)
    z = lens.encode_mean(x)
    out = latent_traversal(lens, z, max_batch=5)
    assert out.shape == (3, 4, len(DEFAULT_VALUES), 1, 16, 16)
    assert DEFAULT_VALUES[0] == -3.0 and DEFAULT_VALUES[-1] == 3.0
    for i, v in [(0, -3.0), (2, 1.0), (3, 3.0)]:
        j = DEFAULT_VALUES.index(v)
        with torch.no_grad():
            ref = torch.sigmoid(model.decode(set_latent(z, i, v)))
        torch.testing.assert_close(out[:, i, j], ref, rtol=0, atol=1e-6)
    sub = latent_traversal(lens, z, dims=[1], values=[0.5, -0.5])
    assert sub.shape == (3, 1, 2, 1, 16, 16)
    torch.testing.assert_close(sub[:, 0, 0], lens.decode_output(set_latent(z, 1, 0.5)))
    grid = traversal_grid(out[0])
    assert grid.shape == (4 * 17 - 1, 7 * 17 - 1, 1)
    np.testing.assert_allclose(grid[17:33, 0:16, 0], out[0, 1, 0, 0].numpy(), atol=1e-6)
    assert (grid[16, :, 0] == 1.0).all()  # padding row
    with pytest.raises(ArgumentError, match="values"):
        latent_traversal(lens, z, values=[])
    with pytest.raises(ArgumentError, match="dims"):
        latent_traversal(lens, z, dims=[9])


def test_vq_code_swap_changes_the_output_where_a_small_perturbation_does_not() -> None:
    torch.manual_seed(0)
    model = TinyVQ()
    x = torch.rand(4, 1, 8, 8)
    lens = Lens(model, output="identity", example=x)
    assert is_vq(model) and not is_vq(ConvVAE())
    z = lens.encode_mean(x)
    small = latent_shift_effects(lens, z, 1e-3)
    assert small.shape == (4, z.shape[1]) and small.abs().max() == 0  # snaps back to the same code
    effects, new = code_swap_effects(lens, x, seed=0)
    assert effects.shape == (4, 4) and (effects > 0).all()
    codes = model.encode(x).codes.reshape(4, -1)
    assert (new != codes).all()
    # the loop reference: swap one position, decode the codes
    with torch.no_grad():
        clean = model.decode_codes(codes.reshape(4, 2, 2))
        for p in range(4):
            c = codes.clone()
            c[:, p] = new[:, p]
            ref = (model.decode_codes(c.reshape(4, 2, 2)) - clean).flatten(1).norm(dim=1)
            torch.testing.assert_close(effects[:, p], ref, rtol=1e-5, atol=1e-6)
    nearest, new_near = code_swap_effects(lens, x, replacement="nearest")
    assert (new_near != codes).all() and (nearest > 0).all()
    fixed, _ = code_swap_effects(lens, x, replacement=int(codes[0, 0]))
    assert fixed[0, 0] == 0
    with pytest.raises(ModelContractError, match="VQ"):
        code_swap_effects(Lens(ConvVAE(), example=torch.rand(1, 1, 16, 16)), x)
