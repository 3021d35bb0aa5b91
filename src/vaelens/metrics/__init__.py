"""Metrics of representations: disentanglement scores (:mod:`vaelens.metrics.disentanglement`).

The causal metrics of Roy (2025) live in :mod:`vaelens.metrics.causal`.

Imports from: lens, errors, progress.
"""

from vaelens.metrics.disentanglement import METRICS, compute_metrics
from vaelens.metrics.representation import representation_fn

__all__ = ["METRICS", "compute_metrics", "representation_fn"]
