"""What a study cannot conclude: sentences generated from its own design and statistics.

Each rule reads the study (seeds, datasets, training budget, controls, collapsed latents,
VQ runs) or a computed table (architecture tests, CES-DCI correlation) and, when it
applies, says in one sentence what the numbers do not support. The report prints them
near its top, so a reader meets the limits before the findings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from vaelens.report.data import StudyData, arch_label
from vaelens.report.tables import Table

__all__ = ["limitations"]

#: the training length of disentanglement_lib's published models (Locatello et al. 2019)
PUBLISHED_STEPS = 300_000


def _seeds(study: StudyData) -> str | None:
    c = study.completed
    if c.empty:
        return "No run completed: the study supports no conclusion yet."
    per = c.groupby(["dataset", "architecture"]).size()
    if per.min() < 3:
        return (
            f"With {per.min()} completed seed(s) for some (dataset, architecture), those cells "
            "show each seed's value instead of an interval: nothing can be said about the "
            "spread across seeds there, and a test between architectures has little power."
        )
    return None


def _datasets(study: StudyData) -> str | None:
    n = len(study.datasets)
    if n < 3:
        return (
            f"With {n} dataset(s), dataset-level covariates (channels, number of factors, "
            "factor entropy) cannot be told apart from the datasets themselves: the pooled "
            "correlations do not show what property of a dataset matters."
        )
    return None


def _steps(run_config: Any) -> int | None:
    train = (run_config or {}).get("train", {}) if isinstance(run_config, dict) else {}
    steps = train.get("steps")
    return int(steps) if isinstance(steps, int | float) else None


def _budget(study: StudyData) -> str | None:
    steps = [s for s in map(_steps, study.runs.get("config", [])) if s is not None]
    if steps and max(steps) < PUBLISHED_STEPS // 10:
        return (
            f"Models were trained for at most {max(steps):,} steps, against the "
            f"{PUBLISHED_STEPS:,} of the published disentanglement models: the findings "
            "describe briefly trained models and may not hold for converged ones."
        )
    return None


def _controls(study: StudyData) -> str | None:
    c = study.continuous
    col = "controls.retrained_ces_spearman"
    if col not in c or not np.isfinite(c[col].to_numpy(float)).any():
        return (
            "The controls were not run (analysis setting controls = false): differences in "
            "CES could be artifacts of one decoder's training rather than of the representation."
        )
    low = c[c[col].to_numpy(float) < 0.5]
    if not low.empty:
        where = sorted(
            {f"{arch_label(a)} on {d}" for a, d in zip(low.architecture, low.dataset, strict=True)}
        )
        return (
            "Per-latent CES changes order when the decoder is retrained on the frozen encoder "
            f"(Spearman < 0.5) for {', '.join(where)}: those latent rankings are decoder artifacts."
        )
    return None


def _collapse(study: StudyData) -> str | None:
    c = study.continuous
    col = "latent.collapsed_fraction"
    if col not in c:
        return None
    frac = c.groupby(["dataset", "architecture"])[col].mean()
    high = frac[frac > 0.5]
    if high.empty:
        return None
    where = ", ".join(f"{arch_label(a)} on {d}" for d, a in high.index)
    return (
        f"Most latents are collapsed (mean KL to the prior below threshold) for {where}: "
        "their polysemanticity, monosemantic share and modularity rest on the few live units."
    )


def _vq(study: StudyData) -> str | None:
    if len(study.continuous) == len(study.completed):
        return None
    return (
        "VQ-VAE numbers are code-swap effects on code positions: they are not comparable "
        "with the continuous models' latent traversals and are left out of the correlations "
        "and architecture tests."
    )


def _tests(tests: Table) -> str | None:
    d = tests.data
    if d.empty or "p_holm" not in d:
        return None
    p = d["p_holm"].to_numpy(float)
    tested = np.isfinite(p)
    if tested.any() and not (p[tested] < 0.05).any():
        return (
            f"No difference between architectures was detected in {int(tested.sum())} "
            "Holm-adjusted comparisons; with these few runs a non-detection is not evidence "
            "that the architectures are alike."
        )
    return None


def _correlation(corr: Table) -> str | None:
    d = corr.data
    if d.empty or "unit" not in d:
        return None
    per_dataset = ~d.group.astype(str).str.startswith("(")
    arch = d[(d.unit == "architecture") & per_dataset & np.isfinite(d.n.to_numpy(float))]
    if arch.empty:
        return None
    n = int(arch.n.max())
    if n < 5:
        return (
            f"The CES-DCI correlation over architecture means rests on at most {n} points a "
            "dataset: per-run correlations treat seeds of one architecture as independent and "
            "overstate the evidence; no relation across architectures is established."
        )
    return None


RULES: tuple[Callable[[StudyData], str | None], ...] = (
    _seeds, _datasets, _budget, _controls, _collapse, _vq,
)  # fmt: skip


def limitations(study: StudyData, tests: Table, corr: Table) -> list[str]:
    """The sentences that apply to ``study`` (its architecture tests and correlation table)."""
    found = [rule(study) for rule in RULES] + [_tests(tests), _correlation(corr)]
    return [s for s in found if s]
