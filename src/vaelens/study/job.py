"""One run of a study: train, analyse (lens + causal metrics), score (disentanglement), store.

Each stage leaves its output in the run directory, and a stage whose output is there is
not redone, so a run interrupted anywhere resumes where it stopped:

- training resumes from its last checkpoint (``vaelens.train.train``);
- ``analysis.json`` and ``figures/`` come from :func:`vaelens.analysis.analyze_run`;
- ``disentanglement.json`` holds the disentanglement metrics;
- ``result.json`` (written last) holds the scalar summary the driver records.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from vaelens.io import atomic_write_json
from vaelens.study.config import RunSpec

__all__ = ["execute_run", "summarise_analysis"]

#: dataset options that are TrainConfig fields rather than load_dataset keywords
_SOURCE_KEYS = {"source": "dataset_source", "root": "dataset_root"}


def _train_config(run: RunSpec, run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = dict(run.train)
    data.pop("sleep", None)
    params = {k: v for k, v in run.dataset_options.items() if k not in _SOURCE_KEYS}
    for key, field in _SOURCE_KEYS.items():
        if key in run.dataset_options:
            data[field] = run.dataset_options[key]
    data.update(
        model=run.architecture,
        dataset=run.dataset,
        seed=run.seed,
        out=str(run_dir),
        model_params=dict(run.hparams),
        dataset_params=params,
    )
    return data


def _mean(values: Any) -> float:
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


def _layer_scalars(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    out[f"{prefix}ces"] = {
        "mean": d["ces"]["mean"],
        "mean_normalised": d["ces"].get("mean_normalised"),
    }
    out[f"{prefix}specificity"] = {
        "mean": d["specificity"]["mean"],
        "mean_normalised": d["specificity"].get("mean_normalised"),
    }
    out[f"{prefix}modularity"] = {layer: v.get("seeds") for layer, v in d["modularity"].items()}
    out[f"{prefix}monosemantic_fraction"] = {
        layer: v.get("fraction") for layer, v in d["monosemantic_fraction"].items()
    }
    out[f"{prefix}cluster_coherence"] = {
        layer: v.get("coherence") for layer, v in d.get("clusters", {}).items()
    }
    out[f"{prefix}polysemanticity"] = {
        layer: v.get("mean_participation") for layer, v in d["polysemanticity"].items()
    }
    return out


def summarise_analysis(analysis: dict[str, Any]) -> dict[str, Any]:
    """The scalar metrics of an analysis dict (the schema of :mod:`vaelens.analysis`), nested.

    ``ces.mean``, ``specificity.mean``, ``modularity.<layer>``, ``monosemantic_fraction.<layer>``,
    ``cluster_coherence.<layer>``, ``polysemanticity.<layer>``, ``mediation.<factor>.<layer>``,
    ``recon.trained``/``recon.baseline`` (NLL per image), ``recon.mse_*`` (per pixel, image
    space: trained, random twin, mean-image predictor), and the same causal metrics under ``baseline.``.
    None values are kept as NaN.
    """
    out = _layer_scalars(analysis)
    out["mediation"] = analysis.get("mediation", {}).get("by_layer", {})
    meta = analysis.get("meta", {})
    out["recon"] = {
        "trained": meta.get("recon_error"),
        "baseline": meta.get("recon_error_baseline"),
        "mse_trained": meta.get("recon_mse"),
        "mse_baseline": meta.get("recon_mse_baseline"),
        "mse_mean_image": meta.get("recon_mse_mean_image"),
    }
    if analysis.get("baseline"):
        out["baseline"] = _layer_scalars(analysis["baseline"])
    vq = analysis.get("vq")
    if vq:
        out["vq"] = {k: v for k, v in vq.items() if isinstance(v, int | float)}

    def clean(tree: Any) -> Any:
        if isinstance(tree, dict):
            return {k: clean(v) for k, v in tree.items()}
        return float("nan") if tree is None else tree

    return clean(out)


def execute_run(spec: dict[str, Any], storage: str) -> dict[str, Any]:
    """Run one study run (see the module docstring); returns the driver's result dict."""
    from vaelens.train import config_from_dict, load_run, train

    run = RunSpec.model_validate(spec)
    run_dir = Path(storage) / "runs" / run.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    result_path = run_dir / "result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())

    t0 = time.perf_counter()
    cfg = config_from_dict(_train_config(run, run_dir), source=f"study run {run.run_id}")
    trained = train(cfg, progress=False)
    if trained.status != "completed":
        raise RuntimeError(f"training ended with status {trained.status!r}")
    train_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    analysis_path = run_dir / "analysis.json"
    if not analysis_path.is_file():
        from vaelens.analysis import analyze_run

        analyze_run(
            run_dir,
            n_samples=run.analysis.n_samples,
            seed=run.seed,
            values=run.analysis.latent_values,
            baseline=run.analysis.baseline,
        )
    analysis = json.loads(analysis_path.read_text())

    dis_path = run_dir / "disentanglement.json"
    if dis_path.is_file():
        dis = json.loads(dis_path.read_text())
    else:
        from vaelens.data import load_dataset
        from vaelens.metrics import compute_metrics, representation_fn

        model, tcfg = load_run(run_dir)
        dataset = load_dataset(
            tcfg.dataset, source=tcfg.dataset_source, root=tcfg.dataset_root, **tcfg.dataset_params
        )
        dis = compute_metrics(
            run.analysis.metrics,
            repr_fn=representation_fn(model),
            dataset=dataset,
            preset=run.analysis.metrics_preset,
            random_state=run.seed,
            overrides=run.analysis.metrics_overrides or None,
            num_train=run.analysis.metrics_num_train,
            num_test=run.analysis.metrics_num_test,
        )
        atomic_write_json(dis_path, dis)
    analysis_seconds = time.perf_counter() - t1

    metrics = summarise_analysis(analysis)
    metrics.update(dis)
    result = {
        "metrics": metrics,
        "train_seconds": train_seconds,
        "analysis_seconds": analysis_seconds,
    }
    atomic_write_json(result_path, result)
    return json.loads(result_path.read_text())
