"""Representation functions: a model's codes for the disentanglement metrics."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["representation_fn"]


def representation_fn(model: Any, *, batch_size: int = 256) -> Any:
    """Images ``(N, C, H, W)`` float32 -> codes ``(N, D)``: the posterior mean, batched, no grad.

    For a VQ-VAE (whose mean is the flattened pre-quantisation grid, e.g. 64 x 8 x 8 values)
    the code is the grid averaged over positions, one value a code channel.
    """
    import torch

    from vaelens.lens import is_vq, latent_mean

    vq = is_vq(model)

    def fn(images: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, images.shape[0], batch_size):
                x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size]))
                post = model.encode(x)
                mean = latent_mean(post)
                if vq:
                    codes = getattr(post, "codes", None)
                    if codes is not None and codes.ndim == 3:
                        positions = codes.shape[1] * codes.shape[2]
                        mean = mean.reshape(mean.shape[0], -1, positions).mean(-1)
                out.append(mean.reshape(mean.shape[0], -1).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    return fn
