"""A fake but realistically shaped study directory for the report tests.

:func:`make_fake_study` writes ``study.sqlite`` through :class:`ResultStore` (runs planned,
completed with the flat metrics a study stores, one run failed) and, for every completed
run, ``runs/<run_id>/analysis.json`` written from the typed analysis result (random
numbers of the right shapes) and ``figures/traversals.png``. Usable from the command line to make a demo
study: ``python tests/report_fixtures.py OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vaelens.analysis import (
    AnalysisMeta,
    AnalysisResult,
    AnalysisSettings,
    CausalGraph,
    Clusters,
    LatentEffects,
    LayerMetrics,
    Mediation,
    ModelAnalysis,
    Modularity,
    Monosemanticity,
    Polysemanticity,
    VQEffects,
)
from vaelens.study.store import ResultStore

FACTORS = {
    "synthetic": ["shape", "size", "background", "contrast", "posX", "posY"],
    "dsprites": ["shape", "scale", "orientation", "posX", "posY"],
    "shapes3d": ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"],
}
CHANNELS = {"synthetic": 1, "dsprites": 1, "shapes3d": 3, "celeba": 3}


def _factors(dataset: str) -> list[str]:
    """The fixture's factor names; CelebA's 40 attributes come from the registry."""
    if dataset == "celeba":
        from vaelens.data.registry import get_spec

        return list(get_spec("celeba").factor_names)
    return FACTORS[dataset]


ENCODER = ["encoder.conv_0", "encoder.conv_1", "encoder.mu"]
DECODER = ["decoder.conv_0"]
UNITS = {"encoder.conv_0": 8, "encoder.conv_1": 12, "decoder.conv_0": 8}
# per-architecture shifts, so that some differences are large enough to be detected
ARCH_SHIFT = {"vae": 0.0, "beta_vae": -0.6, "factor_vae": 0.8}


def _layer(rng: np.random.Generator, arch: str, u: int, n_f: int, dead_last: bool) -> LayerMetrics:
    resp = rng.gamma(1.0, 1.0, size=(u, n_f))
    resp[np.arange(u), rng.integers(0, n_f, u)] *= 6.0 if arch == "factor_vae" else 2.0
    part = resp.sum(1) ** 2 / (resp**2).sum(1)
    roy2025_form = n_f * (resp**2).sum(1) / resp.sum(1) ** 2
    if dead_last:
        part[-1] = roy2025_form[-1] = np.nan
    mono = int((part < 1.5).sum())
    k = 3
    labels = rng.integers(0, k, u)
    dead = np.zeros(u, dtype=bool)
    dead[-1] = dead_last
    return LayerMetrics(
        responses=resp,
        dead=dead,
        collapsed=np.zeros(u, dtype=bool),
        polysemanticity=Polysemanticity(participation=part, roy2025_form=roy2025_form),
        monosemantic=Monosemanticity(
            fraction=mono / u,
            n_monosemantic=mono,
            n_live=u,
            n_units=u,
            ci=[max(0.0, mono / u - 0.2), min(1.0, mono / u + 0.2)],
        ),
        modularity=Modularity(roy2025=rng.uniform(0.05, 0.5), signed=rng.uniform(-0.2, 0.5)),
        clusters=Clusters(
            labels=labels,
            n_clusters=k,
            coherence=rng.uniform(0.3, 0.8),
            majority_factor=rng.integers(0, n_f, k),
            sizes=np.bincount(labels, minlength=k),
        ),
    )


def _causal_block(
    rng: np.random.Generator, arch: str, factors: list[str], latent: int, strength: float
) -> ModelAnalysis:
    n_f = len(factors)
    shift = ARCH_SHIFT.get(arch, 0.0)
    ces = np.abs(rng.normal(strength + shift, 0.5, latent))
    spec = rng.uniform(0.25, 0.35, latent)
    spec[-1] = np.nan  # a dead latent dimension
    lat = LatentEffects(
        units="latent dimensions",
        ces=ces,
        ces_normalised=ces / 64.0,
        ces_ci=np.stack([ces - 0.1, ces + 0.1], axis=1),
        ces_mean_ci=[ces.mean() - 0.1, ces.mean() + 0.1],
        specificity=spec,
        specificity_normalised=spec / 2,
        null_fraction=rng.uniform(0, 0.1, latent),
        n_samples=64,
    )
    units = {**UNITS, "encoder.mu": latent}
    layers = {
        layer: _layer(rng, arch, units[layer], n_f, layer == "encoder.mu")
        for layer in ENCODER + DECODER
    }
    enc = [layer for layer in ENCODER if layer != "encoder.mu"]
    med = Mediation(
        target="latent",
        by_layer={f: {layer: rng.uniform(0, 1) for layer in enc} for f in factors},
        by_channel={
            f: {layer: rng.uniform(0, 0.2, units[layer]) for layer in enc} for f in factors
        },
        by_channel_attribution={f: {} for f in factors},
        method="fake",
    )
    l2f = rng.uniform(0, 1, size=(latent, n_f)) ** 3
    graph = CausalGraph(
        latent_to_factor=l2f, factor_to_latent=l2f.T, edges=np.argwhere(l2f >= 0.1),
        edge_threshold=0.1, probe_r2=np.full(n_f, 0.5), probe_r2_min=0.2,
        latent_units="latent dimensions", method="fake",
    )  # fmt: skip
    vq = None
    if arch == "vq_vae":
        vq = VQEffects(
            code_swap_effect_mean=rng.uniform(2, 4), code_swap_effect_ci=[1.5, 4.5],
            continuous_effect_mean=rng.uniform(0, 0.1), continuous_zero_fraction=0.9,
            continuous_shift=1.0, continuous_dims=[0, 1], n_positions=latent,
        )  # fmt: skip
    return ModelAnalysis(
        latent=lat, layers=layers, mediation=med, causal_graph=graph, vq=vq,
        recon_error=rng.uniform(50, 150) * (1 if strength > 2 else 20),
        recon_mse=rng.uniform(0.005, 0.02) * (1 if strength > 2 else 12),
    )  # fmt: skip


def make_analysis(
    rng: np.random.Generator, arch: str, dataset: str, seed: int, latent: int = 6
) -> AnalysisResult:
    """One run's typed analysis with random numbers of the right shapes."""
    factors = _factors(dataset)
    trained = _causal_block(rng, arch, factors, latent, strength=4.0)
    baseline = _causal_block(rng, arch, factors, latent, strength=1.0)
    meta = AnalysisMeta(
        model=arch, dataset=dataset, factor_names=factors,
        image_shape=[CHANNELS.get(dataset, 1), 64, 64],
        latent_dim=latent, latent_dim_raw=latent, vq=arch == "vq_vae", encoder_layers=ENCODER,
        decoder_layers=DECODER, channel_layers=ENCODER[-2:-1], recon_error_kind="bce_per_image",
        recon_mse_mean_image=rng.uniform(0.03, 0.05), n_probe=256,
        settings=AnalysisSettings(seed=seed), seconds=1.0, notes=[],
    )  # fmt: skip
    return AnalysisResult(meta=meta, trained=trained, baseline=baseline)


def flat_metrics(
    analysis: AnalysisResult, rng: np.random.Generator, dci_slope: float = 0.02
) -> dict[str, Any]:
    """The scalar metrics a study stores for one run: the analysis' and fake scores."""
    out: dict[str, Any] = analysis.scalars()
    # DCI loosely tied to CES (slope ``dci_slope``) so that a correlation exists to be found
    d = 0.13 + dci_slope * (analysis.trained.latent.ces_mean - 4.0) + rng.normal(0, 0.02)
    out["dci"] = {"disentanglement": d, "completeness": d * 0.9, "informativeness": 0.7}
    out["mig"] = float(rng.uniform(0, 0.2))
    out["sap"] = float(rng.uniform(0, 0.1))
    return out


def make_fake_study(
    root: str | Path,
    *,
    architectures: tuple[str, ...] = ("vae", "beta_vae", "factor_vae"),
    datasets: tuple[str, ...] = ("synthetic", "dsprites"),
    seeds: tuple[int, ...] = (0, 1),
    failed: tuple[str, ...] = ("factor_vae-dsprites-s1",),
    no_dci: tuple[str, ...] = ("vae-synthetic-s1",),
    traversals: bool = True,
    random_state: int = 0,
    dci_slope: dict[str, float] | None = None,
) -> Path:
    """Write a fake study into ``root`` and return it.

    Run ids are ``<arch>-<dataset>-s<seed>``; the runs in ``failed`` are marked failed with
    an error; the runs in ``no_dci`` have no disentanglement metrics stored. ``dci_slope``
    plants, per dataset, the slope of DCI D on mean CES (default 0.02).
    """
    root = Path(root)
    rng = np.random.default_rng(random_state)
    plan = [
        {
            "run_id": f"{a}-{d}-s{s}",
            "architecture": a,
            "dataset": d,
            "seed": s,
            "hparams": {"latent_dim": 6},
            "run_dir": str(Path("runs") / f"{a}-{d}-s{s}"),
        }
        for d in datasets
        for a in architectures
        for s in seeds
    ]
    with ResultStore(root / "study.sqlite") as store:
        store.set_meta("name", "fake-study")
        store.add_runs(plan)
        for r in plan:
            rid = r["run_id"]
            if rid in failed:
                store.mark_failed(rid, "TrainingDivergedError: loss is NaN at step 120")
                continue
            analysis = make_analysis(rng, r["architecture"], r["dataset"], r["seed"])
            run_dir = root / r["run_dir"]
            analysis.save(run_dir / "analysis.json")
            if traversals:
                img = (rng.uniform(0, 1, size=(6 * 16, 7 * 16)) * 255).astype(np.uint8)
                (run_dir / "figures").mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(run_dir / "figures" / "traversals.png")
            metrics = flat_metrics(analysis, rng, (dci_slope or {}).get(r["dataset"], 0.02))
            if rid in no_dci:
                del metrics["dci"]
            store.mark_completed(rid, metrics, train_seconds=10.0, analysis_seconds=2.0)
    return root


if __name__ == "__main__":  # pragma: no cover - demo helper
    print(make_fake_study(sys.argv[1]))
