"""Loading a study directory for the report: runs, stored metrics and each run's analysis.json."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vaelens.analysis import AnalysisMeta, AnalysisResult, load_analysis
from vaelens.errors import ConfigError

__all__ = [
    "ARCH_LABELS",
    "StudyData",
    "arch_label",
    "fmt",
    "fmt_ci",
    "fmt_p",
    "load_study",
    "p_eq",
    "study_database",
]

DB_NAME = "study.sqlite"  # same as vaelens.study.runner.DB_NAME

ARCH_ORDER = ("vae", "beta_vae", "factor_vae", "beta_tc_vae", "dip_vae", "vq_vae")
ARCH_LABELS = {
    "vae": "VAE",
    "beta_vae": "β-VAE",
    "factor_vae": "FactorVAE",
    "beta_tc_vae": "β-TC-VAE",
    "dip_vae": "DIP-VAE",
    "vq_vae": "VQ-VAE",
}


def arch_label(arch: str) -> str:
    """Display name of an architecture id (``beta_vae`` -> ``β-VAE``); unknown ids unchanged."""
    return ARCH_LABELS.get(arch, arch)


def fmt(x: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits, or ``"n/a"`` for None/NaN."""
    if x is None:
        return "n/a"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.{digits}g}"


def fmt_p(p: Any) -> str:
    """A p-value: ``"n/a"``, ``"< 0.001"`` or three significant digits."""
    if p is None or not np.isfinite(float(p)):
        return "n/a"
    return "< 0.001" if float(p) < 0.001 else f"{float(p):.3g}"


def p_eq(p: Any) -> str:
    """``"p = 0.0123"`` or ``"p < 0.001"`` (``"p = n/a"`` when missing), for sentences."""
    text = fmt_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def fmt_ci(mean: float, lo: float, hi: float, n: int) -> str:
    """``mean ± half-width`` of a CI; the mean alone when there is no CI (n < 2); n/a if n = 0."""
    if n == 0 or not np.isfinite(mean):
        return "n/a"
    if n < 2 or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{fmt(mean)} (n={n})"
    return f"{fmt(mean)} ± {fmt((hi - lo) / 2, 2)} (n={n})"


@dataclass
class StudyData:
    """Everything the report reads from a study directory.

    ``runs``: the runs table (all statuses); ``completed``: one row a completed run with
    its stored metrics (columns named as in the store, e.g. ``ces.mean``,
    ``polysemanticity_roy2025.<layer>``) plus the covariates ``n_factors``, ``channels``,
    ``factor_entropy``, ``resolution`` and ``latent_dim`` read from each run's analysis; ``analyses``: run_id -> its typed
    :class:`~vaelens.analysis.AnalysisResult`; ``problems``: human-readable notes on files
    that could not be read.
    """

    study_dir: Path
    name: str
    runs: pd.DataFrame
    completed: pd.DataFrame
    analyses: dict[str, AnalysisResult]
    run_dirs: dict[str, Path]
    architectures: list[str]
    datasets: list[str]
    problems: list[str] = field(default_factory=list)

    def meta(self, dataset: str) -> AnalysisMeta | None:
        """The meta block of the first analysed run of ``dataset`` (None when none)."""
        for rid, a in self.analyses.items():
            if self.dataset_of(rid) == dataset:
                return a.meta
        return None

    @property
    def continuous(self) -> pd.DataFrame:
        """``completed`` without the VQ-VAE runs: their CES is a code-swap effect and their
        DCI codes are spatially averaged z_e, so they stay out of the continuous statistics
        (the correlations and the architecture tests) and get a table of their own."""
        c = self.completed
        return c[~c["vq"].astype(bool)] if "vq" in c else c

    def factor_names(self, dataset: str) -> list[str]:
        """The factors of ``dataset`` as its analyses name them ([] when none was analysed)."""
        meta = self.meta(dataset)
        return list(meta.factor_names) if meta is not None else []

    def dataset_of(self, run_id: str) -> str:
        return str(self.runs.loc[self.runs.run_id == run_id, "dataset"].iloc[0])

    def runs_of(self, dataset: str, arch: str) -> list[str]:
        """Completed run ids of one (dataset, architecture), ordered by seed."""
        c = self.completed
        sel = c[(c.dataset == dataset) & (c.architecture == arch)].sort_values("seed")
        return list(sel.run_id)

    def analyses_of(self, dataset: str, arch: str) -> list[AnalysisResult]:
        """The analyses of the completed runs of one (dataset, architecture), by seed."""
        return [self.analyses[r] for r in self.runs_of(dataset, arch) if r in self.analyses]

    def mu_layer(self, dataset: str) -> str | None:
        """The latent-mean layer: the analysed layer whose last name part is ``mu``."""
        meta = self.meta(dataset)
        if meta is None:
            return None
        for layer in meta.layers:
            if layer.split(".")[-1] in ("mu", "z_e", "latent"):
                return layer
        return meta.encoder_layers[-1] if meta.encoder_layers else None

    def early_layer(self, dataset: str) -> str | None:
        """The earliest analysed encoder layer."""
        meta = self.meta(dataset)
        enc = [x for x in (meta.encoder_layers if meta else []) if x != self.mu_layer(dataset)]
        return enc[0] if enc else None

    def layers(self, dataset: str) -> list[str]:
        meta = self.meta(dataset)
        return meta.layers if meta is not None else []


def _order(values: list[str], preferred: tuple[str, ...] = ()) -> list[str]:
    rank = {v: i for i, v in enumerate(preferred)}
    return sorted(dict.fromkeys(values), key=lambda v: (rank.get(v, len(rank)), v))


def _factor_entropy(dataset: str, factor_names: list[str]) -> float:
    """``sum_f log(levels_f)`` (nats): the entropy of the uniform factorial distribution over
    the dataset's factor levels, from the registry's factor sizes (NaN when the dataset is
    not registered or its registered factors are not the analysed ones)."""
    from vaelens.data.registry import get_spec
    from vaelens.errors import DatasetError

    try:
        spec = get_spec(dataset)
    except DatasetError:
        return float("nan")
    if list(spec.factor_names) != list(factor_names):
        return float("nan")
    return float(np.sum(np.log(np.asarray(spec.factor_sizes, dtype=np.float64))))


def _covariates(run_id: str, analysis: AnalysisResult | None, hparams: Any) -> dict[str, Any]:
    """Dataset and model covariates of one run (NaN if unknown).

    ``n_factors`` (``len(meta.factor_names)``), ``channels`` (``meta.image_shape[0]``),
    ``factor_entropy`` (``sum_f log(levels_f)``, see :func:`_factor_entropy`),
    ``resolution`` (pixels, ``H * W``) and ``latent_dim``. The report's partial
    correlations drop those constant over the rows.
    """
    nan = float("nan")
    rec: dict[str, Any] = {
        "run_id": run_id,
        "n_factors": nan,
        "channels": nan,
        "factor_entropy": nan,
        "resolution": nan,
    }
    latent = (hparams or {}).get("latent_dim")
    if analysis is not None:
        meta = analysis.meta
        rec["n_factors"] = float(len(meta.factor_names))
        shape = meta.image_shape
        rec["channels"] = float(shape[0]) if len(shape) >= 3 else nan
        rec["resolution"] = float(shape[-1] * shape[-2]) if len(shape) >= 2 else nan
        rec["factor_entropy"] = _factor_entropy(meta.dataset, list(meta.factor_names))
        latent = meta.latent_dim
    rec["latent_dim"] = float(latent) if latent is not None else nan
    return rec


def _is_vq(analysis: AnalysisResult | None, architecture: str) -> bool:
    """A VQ run: its analysis says so, or (no analysis) its architecture is ``vq_vae``."""
    return analysis.meta.vq if analysis is not None else architecture == "vq_vae"


def _read_analyses(
    completed: pd.DataFrame, run_dirs: dict[str, Path], problems: list[str]
) -> dict[str, AnalysisResult]:
    analyses: dict[str, AnalysisResult] = {}
    for rid in completed.run_id:
        path = run_dirs[rid] / "analysis.json"
        if not path.is_file():
            problems.append(f"{rid}: no analysis.json at {path}")
            continue
        try:
            analyses[rid] = load_analysis(path)
        except ConfigError as exc:
            problems.append(f"{rid}: {exc}")
    return analyses


def study_database(study_dir: str | Path) -> Path:
    """``study_dir``'s ``study.sqlite``; :class:`ConfigError` when it holds no study."""
    db = Path(study_dir) / DB_NAME
    if not db.is_file():
        raise ConfigError(f"study_dir: {study_dir} holds no study (missing {DB_NAME})")
    return db


def load_study(study_dir: str | Path) -> StudyData:
    """Read ``study_dir``: its ``study.sqlite`` and each completed run's ``analysis.json``.

    Raises :class:`ConfigError` when there is no study database. Unreadable analysis files
    (bad JSON, another schema version) are not fatal: the run stays in the tables with "n/a" for what the file would give, and
    the problem is listed.
    """
    from vaelens.study.store import ResultStore

    study_dir = Path(study_dir)
    db = study_database(study_dir)
    with ResultStore(db) as store:
        runs = store.runs()
        results = store.results()
        name = store.get_meta("name") or study_dir.name
    problems: list[str] = []
    run_dirs: dict[str, Path] = {}
    for row in runs.itertuples():
        rd = Path(row.run_dir) if isinstance(row.run_dir, str) and row.run_dir else None
        if rd is None:
            rd = Path("runs") / row.run_id
        run_dirs[row.run_id] = rd if rd.is_absolute() else study_dir / rd
    completed = results[results.status == "completed"].copy().reset_index(drop=True)
    analyses = _read_analyses(completed, run_dirs, problems)
    extra = [
        {
            **_covariates(row.run_id, analyses.get(row.run_id), row.hparams),
            "vq": _is_vq(analyses.get(row.run_id), str(row.architecture)),
        }
        for row in completed.itertuples()
    ]
    if extra:
        completed = completed.merge(pd.DataFrame(extra), on="run_id", how="left")
    archs = _order(list(runs.architecture), ARCH_ORDER)
    datasets = _order(list(runs.dataset))
    return StudyData(
        study_dir, str(name), runs, completed, analyses, run_dirs, archs, datasets, problems
    )
