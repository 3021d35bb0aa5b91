"""disentanglement_lib's weights in backbone="dlib" give the TF graph's outputs.

The reference is a NumPy transcription of ``conv_encoder`` / ``deconv_decoder`` in TF's own
conventions (NHWC, HWIO kernels, "same" padding, NHWC flatten), so the test checks the
layer list, the padding and every layout permutation of :func:`dlib_state_dict` at once.
(Against TensorFlow itself this was checked once, outside the suite: docs/zoo.md.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelens.errors import CheckpointError
from vaelens.models import build_model
from vaelens.models.backbones import same_padding
from vaelens.zoo import dlib_state_dict, dlib_variable_shapes, read_checkpoint, write_checkpoint


def _conv(x, k, b, stride=2):
    """TF conv2d, padding "same": x (N, H, W, C), k (kh, kw, in, out)."""
    kh = k.shape[0]
    (t, bo), (le, r) = same_padding(x.shape[1], kh, stride), same_padding(x.shape[2], kh, stride)
    xp = np.pad(x, ((0, 0), (t, bo), (le, r), (0, 0)))
    oh, ow = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    out = np.empty((x.shape[0], oh, ow, k.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kh]
            out[:, i, j] = np.einsum("nhwc,hwco->no", patch, k)
    return out + b


def _deconv(x, k, b, stride=2):
    """TF conv2d_transpose, padding "same": k (kh, kw, out, in); output H * stride."""
    kh, (n, h, w, _) = k.shape[0], x.shape
    full = np.zeros((n, (h - 1) * stride + kh, (w - 1) * stride + kh, k.shape[2]))
    for i in range(h):
        for j in range(w):
            full[:, i * stride : i * stride + kh, j * stride : j * stride + kh] += np.einsum(
                "nc,hwoc->nhwo", x[:, i, j], k
            )
    t, le = same_padding(h * stride, kh, stride)[0], same_padding(w * stride, kh, stride)[0]
    return full[:, t : t + h * stride, le : le + w * stride] + b


def _tf_graph(v, x):
    relu = lambda a: np.maximum(a, 0)  # noqa: E731
    h = x
    for layer in ("e1", "e2", "e3", "e4"):
        h = relu(_conv(h, v[f"encoder/{layer}/kernel"], v[f"encoder/{layer}/bias"]))
    h = h.reshape(len(h), -1)  # tf.layers.flatten of NHWC
    h = relu(h @ v["encoder/e5/kernel"] + v["encoder/e5/bias"])
    means = h @ v["encoder/means/kernel"] + v["encoder/means/bias"]
    log_var = h @ v["encoder/log_var/kernel"] + v["encoder/log_var/bias"]
    d = relu(means @ v["decoder/dense/kernel"] + v["decoder/dense/bias"])
    d = relu(d @ v["decoder/dense_1/kernel"] + v["decoder/dense_1/bias"]).reshape(-1, 4, 4, 64)
    names = ["conv2d_transpose", "conv2d_transpose_1", "conv2d_transpose_2", "conv2d_transpose_3"]
    for i, name in enumerate(names):
        d = _deconv(d, v[f"decoder/{name}/kernel"], v[f"decoder/{name}/bias"])
        d = relu(d) if i < 3 else d
    return means, log_var, d


def _weights(num_latent, channels, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in dlib_variable_shapes(num_latent, channels).items():
        fan_in = np.prod(shape[:-1]) if len(shape) > 1 else 4.0
        out[name] = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    return out


@pytest.mark.parametrize("channels", [1, 3])
def test_mapped_weights_reproduce_the_tensorflow_graph(tmp_path, channels):
    weights = _weights(6, channels, seed=channels)
    weights["global_step"] = np.int64(7)  # extra variables are ignored
    write_checkpoint(tmp_path / "variables", weights)
    state = dlib_state_dict(
        read_checkpoint(tmp_path / "variables"), num_latent=6, channels=channels, source="t"
    )
    model = build_model("vae", backbone="dlib", latent_dim=6, in_channels=channels)
    model.encoder.load_state_dict({k[8:]: v for k, v in state.items() if k[:8] == "encoder."})
    model.decoder.load_state_dict({k[8:]: v for k, v in state.items() if k[:8] == "decoder."})
    x = np.random.default_rng(1).random((2, 64, 64, channels)).astype(np.float32)
    means, log_var, recon = _tf_graph({k: v.astype(np.float64) for k, v in weights.items()}, x)
    with torch.no_grad():
        mu, lv = model.encoder(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        rec = model.decoder(mu).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(mu.numpy(), means, atol=1e-5)
    np.testing.assert_allclose(lv.numpy(), log_var, atol=1e-5)
    np.testing.assert_allclose(rec, recon, atol=1e-5)
    assert np.abs(recon).max() > 0.1  # not a trivially zero output


def test_a_missing_or_misshaped_variable_is_one_line_naming_the_source():
    weights = _weights(4, 1)
    del weights["decoder/conv2d_transpose_2/bias"]
    with pytest.raises(CheckpointError, match=r"^m\.zip: missing variable 'decoder/conv2d"):
        dlib_state_dict(weights, num_latent=4, channels=1, source="m.zip")
    with pytest.raises(CheckpointError, match=r"'encoder/means/kernel' has shape \(256, 4\)"):
        dlib_state_dict(_weights(4, 1), num_latent=10, channels=1, source="m.zip")
