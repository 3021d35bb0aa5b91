"""Metrics of representations: disentanglement scores (:mod:`vaelens.metrics.disentanglement`).

The causal metrics of the seeds live in :mod:`vaelens.metrics.causal`.
"""

from vaelens.metrics.disentanglement import METRICS, compute_metrics

__all__ = ["METRICS", "compute_metrics"]
