"""A fake but realistically shaped study directory for the report tests.

:func:`make_fake_study` writes ``study.sqlite`` through :class:`ResultStore` (runs planned,
completed with the flat metrics a study stores, one run failed) and, for every completed
run, ``runs/<run_id>/analysis.json`` following the analysis schema (random numbers of the
right shapes) and ``figures/traversals.png``. Usable from the command line to make a demo
study: ``python tests/report_fixtures.py OUT_DIR``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vaelens.io import atomic_write_json
from vaelens.study.store import ResultStore

FACTORS = {
    "synthetic": ["shape", "size", "background", "contrast", "posX", "posY"],
    "dsprites": ["shape", "scale", "orientation", "posX", "posY"],
}
ENCODER = ["encoder.conv_0", "encoder.conv_1", "encoder.mu"]
DECODER = ["decoder.conv_0"]
UNITS = {"encoder.conv_0": 8, "encoder.conv_1": 12, "decoder.conv_0": 8}
# per-architecture shifts, so that some differences are large enough to be detected
ARCH_SHIFT = {"vae": 0.0, "beta_vae": -0.6, "factor_vae": 0.8}


def _causal_block(
    rng: np.random.Generator, arch: str, factors: list[str], latent: int, strength: float
) -> dict[str, Any]:
    n_f = len(factors)
    shift = ARCH_SHIFT.get(arch, 0.0)
    ces = np.abs(rng.normal(strength + shift, 0.5, latent))
    spec = rng.uniform(0.25, 0.35, latent)
    spec_list: list[float | None] = [float(v) for v in spec]
    spec_list[-1] = None  # a dead latent dimension
    out: dict[str, Any] = {
        "ces": {
            "per_dim": ces.tolist(),
            "per_dim_normalised": (ces / 64.0).tolist(),
            "per_dim_ci": [[float(v - 0.1), float(v + 0.1)] for v in ces],
            "mean": float(ces.mean()),
            "mean_ci": [float(ces.mean() - 0.1), float(ces.mean() + 0.1)],
            "mean_normalised": float(ces.mean() / 64.0),
        },
        "specificity": {
            "per_dim": spec_list,
            "per_dim_normalised": [float(v) / 2 for v in spec],
            "null_fraction": rng.uniform(0, 0.1, latent).tolist(),
            "mean": float(np.nanmean(spec[:-1])),
            "mean_normalised": float(np.nanmean(spec[:-1]) / 2),
        },
    }
    layers = ENCODER + DECODER
    units = {**UNITS, "encoder.mu": latent}
    out["modularity"] = {
        layer: {"seeds": float(rng.uniform(0.05, 0.5)), "signed": float(rng.uniform(-0.2, 0.5))}
        for layer in layers
    }
    out["polysemanticity"] = {}
    out["monosemantic_fraction"] = {}
    out["unit_responses"] = {}
    out["clusters"] = {}
    for layer in layers:
        u = units[layer]
        resp = rng.gamma(1.0, 1.0, size=(u, n_f))
        resp[np.arange(u), rng.integers(0, n_f, u)] *= 6.0 if arch == "factor_vae" else 2.0
        part = resp.sum(1) ** 2 / (resp**2).sum(1)
        seeds_form = n_f * (resp**2).sum(1) / resp.sum(1) ** 2
        part_list: list[float | None] = part.tolist()
        if layer == "encoder.mu":
            part_list[-1] = None
        mono = int((part < 1.5).sum())
        k = 3
        labels = rng.integers(0, k, u)
        out["polysemanticity"][layer] = {
            "participation": part_list,
            "seeds_form": seeds_form.tolist(),
            "mean_participation": float(np.nanmean(part)),
            "mean_seeds_form": float(seeds_form.mean()),
        }
        out["monosemantic_fraction"][layer] = {
            "fraction": mono / u,
            "n_monosemantic": mono,
            "n_live": u,
            "n_units": u,
            "ci": [max(0.0, mono / u - 0.2), min(1.0, mono / u + 0.2)],
        }
        out["unit_responses"][layer] = resp.tolist()
        out["clusters"][layer] = {
            "labels": labels.tolist(),
            "n_clusters": k,
            "coherence": float(rng.uniform(0.3, 0.8)),
            "majority_factor": rng.integers(0, n_f, k).tolist(),
            "sizes": np.bincount(labels, minlength=k).tolist(),
        }
    enc = [layer for layer in ENCODER if layer != "encoder.mu"]
    out["mediation"] = {
        "target": "latent",
        "by_layer": {f: {layer: float(rng.uniform(0, 1)) for layer in enc} for f in factors},
        "by_channel": {
            f: {layer: rng.uniform(0, 0.2, units[layer]).tolist() for layer in enc} for f in factors
        },
    }
    l2f = rng.uniform(0, 1, size=(latent, n_f)) ** 3
    out["causal_graph"] = {
        "latent_to_factor": l2f.tolist(),
        "factor_to_latent": l2f.T.tolist(),
        "method": "fake",
        "factor_graph": None,
    }
    out["vq"] = None
    return out


def make_analysis(
    rng: np.random.Generator, arch: str, dataset: str, seed: int, latent: int = 6
) -> dict[str, Any]:
    """One run's analysis dict (schema of ``vaelens.analysis``) with random numbers."""
    factors = FACTORS[dataset]
    trained = _causal_block(rng, arch, factors, latent, strength=4.0)
    baseline = _causal_block(rng, arch, factors, latent, strength=1.0)
    meta = {
        "model": arch,
        "dataset": dataset,
        "factor_names": factors,
        "latent_dim": latent,
        "n_samples": 64,
        "seed": seed,
        "latent_values": [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0],
        "encoder_layers": ENCODER,
        "decoder_layers": DECODER,
        "layers": ENCODER + DECODER,
        "vq": False,
        "recon_error": float(rng.uniform(50, 150)),
        "recon_error_baseline": float(rng.uniform(2000, 3000)),
        "recon_mse": float(rng.uniform(0.005, 0.02)),
        "recon_mse_baseline": float(rng.uniform(0.2, 0.25)),
        "recon_mse_mean_image": float(rng.uniform(0.03, 0.05)),
        "seconds": 1.0,
        "notes": [],
    }
    return {"meta": meta, **trained, "baseline": baseline}


def flat_metrics(analysis: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The nested scalar metrics a study stores for one run (flattened by the store)."""

    def block(d: dict[str, Any]) -> dict[str, Any]:
        return {
            "ces": {"mean": d["ces"]["mean"], "mean_normalised": d["ces"]["mean_normalised"]},
            "specificity": {
                "mean": d["specificity"]["mean"],
                "mean_normalised": d["specificity"]["mean_normalised"],
            },
            "modularity": {k: v["seeds"] for k, v in d["modularity"].items()},
            "monosemantic_fraction": {
                k: v["fraction"] for k, v in d["monosemantic_fraction"].items()
            },
            "cluster_coherence": {k: v["coherence"] for k, v in d["clusters"].items()},
            "polysemanticity": {
                k: v["mean_participation"] for k, v in d["polysemanticity"].items()
            },
        }

    out = block(analysis)
    out["mediation"] = analysis["mediation"]["by_layer"]
    out["recon"] = {
        "trained": analysis["meta"]["recon_error"],
        "baseline": analysis["meta"]["recon_error_baseline"],
        "mse_trained": analysis["meta"]["recon_mse"],
        "mse_baseline": analysis["meta"]["recon_mse_baseline"],
        "mse_mean_image": analysis["meta"]["recon_mse_mean_image"],
    }
    out["baseline"] = block(analysis["baseline"])
    # DCI loosely tied to CES so that a correlation exists to be found
    d = 0.05 + 0.02 * analysis["ces"]["mean"] + rng.normal(0, 0.02)
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
) -> Path:
    """Write a fake study into ``root`` and return it.

    Run ids are ``<arch>-<dataset>-s<seed>``; the runs in ``failed`` are marked failed with
    an error; the runs in ``no_dci`` have no disentanglement metrics stored.
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
            atomic_write_json(run_dir / "analysis.json", analysis)
            if traversals:
                img = (rng.uniform(0, 1, size=(6 * 16, 7 * 16)) * 255).astype(np.uint8)
                (run_dir / "figures").mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(run_dir / "figures" / "traversals.png")
            metrics = flat_metrics(analysis, rng)
            if rid in no_dci:
                del metrics["dci"]
            store.mark_completed(rid, metrics, train_seconds=10.0, analysis_seconds=2.0)
    return root


if __name__ == "__main__":  # pragma: no cover - demo helper
    print(make_fake_study(sys.argv[1]))
