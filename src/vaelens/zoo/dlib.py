"""disentanglement_lib's variable names and layouts, and their mapping onto ``backbone="dlib"``.

The names come from ``disentanglement_lib/methods/shared/architectures.py``:
``conv_encoder`` names its layers ``e1..e5``, ``means`` and ``log_var`` inside the variable
scope ``encoder``; ``deconv_decoder`` leaves its layers unnamed inside ``decoder``, so
``tf.layers`` calls them ``dense``, ``dense_1``, ``conv2d_transpose``, ``conv2d_transpose_1``,
``_2``, ``_3``. Each layer has ``<scope>/<layer>/kernel`` and ``.../bias``. They were taken
from the source code; no downloaded zoo model was opened (no network here).

TensorFlow layouts -> PyTorch:

- conv kernel ``(kH, kW, in, out)`` (HWIO) -> ``Conv2d.weight (out, in, kH, kW)``;
- transposed-conv kernel ``(kH, kW, out, in)`` -> ``ConvTranspose2d.weight (in, out, kH, kW)``
  (both are the adjoint of the same correlation, so no kernel flip);
- dense kernel ``(in, out)`` -> ``Linear.weight (out, in)``;
- TF flattens NHWC: ``e5``'s 1024 inputs are in ``(h, w, c)`` order where ours are
  ``(c, h, w)``, and ``dense_1``'s 1024 outputs are reshaped to ``(4, 4, 64)`` HWC where
  ours unflatten to ``(64, 4, 4)``; those rows / columns are permuted.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from vaelens.errors import CheckpointError

__all__ = ["DLIB_TO_VAELENS", "dlib_state_dict", "dlib_variable_shapes"]

#: disentanglement_lib layer -> (our module path, kind)
DLIB_TO_VAELENS: dict[str, tuple[str, str]] = {
    "encoder/e1": ("encoder.conv_0.0", "conv"),
    "encoder/e2": ("encoder.conv_1.0", "conv"),
    "encoder/e3": ("encoder.conv_2.0", "conv"),
    "encoder/e4": ("encoder.conv_3.0", "conv"),
    "encoder/e5": ("encoder.fc.0", "dense_from_nhwc"),
    "encoder/means": ("encoder.mu", "dense"),
    "encoder/log_var": ("encoder.logvar", "dense"),
    "decoder/dense": ("decoder.fc_0.0", "dense"),
    "decoder/dense_1": ("decoder.fc_1.0", "dense_to_nhwc"),
    "decoder/conv2d_transpose": ("decoder.conv_0.0", "deconv"),
    "decoder/conv2d_transpose_1": ("decoder.conv_1.0", "deconv"),
    "decoder/conv2d_transpose_2": ("decoder.conv_2.0", "deconv"),
    "decoder/conv2d_transpose_3": ("decoder.conv_3", "deconv"),
}

_GRID, _CHANNELS = 4, 64  # conv_encoder's last feature map: 4 x 4 x 64


def dlib_variable_shapes(num_latent: int, channels: int) -> dict[str, tuple[int, ...]]:
    """The TF shape of every variable of ``conv_encoder`` + ``deconv_decoder``."""
    kernels = {
        "encoder/e1": (4, 4, channels, 32),
        "encoder/e2": (4, 4, 32, 32),
        "encoder/e3": (2, 2, 32, 64),
        "encoder/e4": (2, 2, 64, 64),
        "encoder/e5": (1024, 256),
        "encoder/means": (256, num_latent),
        "encoder/log_var": (256, num_latent),
        "decoder/dense": (num_latent, 256),
        "decoder/dense_1": (256, 1024),
        "decoder/conv2d_transpose": (4, 4, 64, 64),
        "decoder/conv2d_transpose_1": (4, 4, 32, 64),
        "decoder/conv2d_transpose_2": (4, 4, 32, 32),
        "decoder/conv2d_transpose_3": (4, 4, channels, 32),
    }
    out: dict[str, tuple[int, ...]] = {}
    for layer, k in kernels.items():
        out[f"{layer}/kernel"] = k
        n_out = k[2] if "conv2d_transpose" in layer else k[-1]
        out[f"{layer}/bias"] = (n_out,)
    return out


def _nhwc_to_nchw_index() -> np.ndarray:
    """``perm[i]``: the NHWC flat position of our NCHW flat position ``i``."""
    c, h, w = np.meshgrid(np.arange(_CHANNELS), np.arange(_GRID), np.arange(_GRID), indexing="ij")
    return ((h * _GRID + w) * _CHANNELS + c).reshape(-1)


def dlib_state_dict(
    tensors: Mapping[str, np.ndarray], *, num_latent: int, channels: int, source: str
) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a ``backbone="dlib"`` VAE from disentanglement_lib's variables.

    ``tensors`` maps variable names to arrays (extra variables, e.g. ``global_step``, are
    ignored). A missing variable or a wrong shape raises one :class:`CheckpointError` line
    naming ``source`` and what was expected. Keys are ``encoder.*`` / ``decoder.*``.
    """
    expected = dlib_variable_shapes(num_latent, channels)
    for name, shape in expected.items():
        if name not in tensors:
            raise CheckpointError(
                f"{source}: missing variable {name!r} (expected disentanglement_lib's "
                f"conv_encoder/deconv_decoder, shape {shape})"
            )
        got = tuple(np.shape(tensors[name]))
        if got != shape:
            raise CheckpointError(
                f"{source}: variable {name!r} has shape {got}, expected {shape} "
                f"(num_latent={num_latent}, {channels} image channels)"
            )
    perm = _nhwc_to_nchw_index()
    out: dict[str, torch.Tensor] = {}
    for layer, (path, kind) in DLIB_TO_VAELENS.items():
        k = np.asarray(tensors[f"{layer}/kernel"], dtype=np.float32)
        b = np.asarray(tensors[f"{layer}/bias"], dtype=np.float32)
        if kind in ("conv", "deconv"):
            w = k.transpose(3, 2, 0, 1)
        elif kind == "dense":
            w = k.T
        elif kind == "dense_from_nhwc":
            w = k[perm].T  # rows of k follow TF's (h, w, c) flatten
        else:  # dense_to_nhwc
            w, b = k[:, perm].T, b[perm]
        out[f"{path}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
        out[f"{path}.bias"] = torch.from_numpy(np.ascontiguousarray(b))
    return out
