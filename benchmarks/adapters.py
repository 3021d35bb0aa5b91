"""Benchmark: exact patching of a wide layer in a model that flattens with ``x.view(x.size(0), -1)``.

Before stacked suffix runs repeated the input ``K`` times, such a model made every stacked
run fail and fall back (silently) to full passes. The model here: a roy2025-like conv encoder
(64x64 -> 32 -> 64 -> ``--channels`` maps, k4 s2) flattened with ``h.view(x.size(0), -1)``
into a latent of 10, a small decoder. This times exact patching of every channel of the
``--channels``-wide last encoder conv (post-ReLU) on ``--pairs`` pairs, twice: with the
fallback forced (full passes, what happened before) and stacked (now), checks that both give
the same effects and prints the ratio.

    OMP_NUM_THREADS=2 python benchmarks/adapters.py --threads 2 [--channels 1024 --pairs 2]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch
from torch import nn

from vaelens.lens import FallbackWarning, Lens, activation_patching


class WideFlattenVAE(nn.Module):
    def __init__(self, channels: int = 1024, latent: int = 10) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, channels, 4, 2, 1), nn.ReLU(),
        )  # fmt: skip
        self.mu = nn.Linear(channels * 8 * 8, latent)
        self.fc = nn.Linear(latent, 64 * 8 * 8)
        self.decoder = nn.Sequential(
            nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 8, 4, 2),
        )  # fmt: skip

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.mu(self.encoder(x).view(x.size(0), -1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.fc(z).view(z.size(0), 64, 8, 8)))


def _time(lens: Lens, x1: torch.Tensor, x2: torch.Tensor, name: str, force: bool, repeats: int):
    best, effects = float("inf"), None
    for _ in range(repeats):
        lens._stack_mode = {name: "full"} if force else {}  # forced: what the fallback runs
        t0 = time.perf_counter()
        with torch.no_grad():
            effects = activation_patching(lens, x1, x2, [name])[name]
        best = min(best, time.perf_counter() - t0)
    return best, effects


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=1024)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = WideFlattenVAE(channels=a.channels)
    x1, x2 = torch.rand(a.pairs, 1, 64, 64), torch.rand(a.pairs, 1, 64, 64)
    lens = Lens(model, example=x1)
    name = "encoder.5"  # the post-ReLU map of the wide conv
    with warnings.catch_warnings():
        warnings.simplefilter("error", FallbackWarning)  # the stacked run must not fall back
        stacked, e_stacked = _time(lens, x1, x2, name, False, a.repeats)
    fallback, e_fallback = _time(lens, x1, x2, name, True, a.repeats)
    diff = float((e_stacked - e_fallback).abs().max())
    print(
        f"WideFlattenVAE layer {name!r}: {a.channels} channels, {a.pairs} pairs, {a.threads} threads"
    )
    print(f"  before (forced fallback, full passes): {fallback:8.2f} s")
    print(f"  after  (stacked suffix runs):          {stacked:8.2f} s")
    print(f"  ratio: {fallback / stacked:.1f}x   max |difference|: {diff:.2e}")


if __name__ == "__main__":
    main()
