"""Statistics the reviewers of Roy (2025) asked for.

- :func:`bootstrap_ci`: the one bootstrap confidence interval (BCa or percentile, paired
  samples resampled by whole rows) that every other module uses;
- :func:`correlation`: Pearson or Spearman with its p-value and a bootstrap CI;
- :func:`within_group_correlation`: the correlation inside each group (e.g. dataset) and
  pooled over groups after removing each group's mean (so that between-dataset differences
  cannot create the correlation);
- :func:`partial_correlation`: controlling for covariates (dataset complexity, latent size);
- :func:`group_summary`: per-group means with t-based confidence intervals across seeds;
- :func:`compare_groups`: omnibus and pairwise tests with multiple-comparison correction;
- :func:`paired_vs_baseline`: a metric against its random-network baseline;
- :func:`adjust_pvalues`: Holm, Bonferroni and Benjamini-Hochberg corrections.

Imports from: errors.

It sits beneath every package but ``errors``: any package may import it, and besides
``errors`` it uses only numpy, scipy and pandas.
"""

from vaelens.stats.bootstrap import BCA_MIN_N, BOOT_METHODS, bootstrap_ci
from vaelens.stats.core import (
    CorrelationResult,
    adjust_pvalues,
    compare_groups,
    correlation,
    group_summary,
    paired_vs_baseline,
    partial_correlation,
    within_group_correlation,
)

__all__ = [
    "BCA_MIN_N",
    "BOOT_METHODS",
    "CorrelationResult",
    "adjust_pvalues",
    "bootstrap_ci",
    "compare_groups",
    "correlation",
    "group_summary",
    "paired_vs_baseline",
    "partial_correlation",
    "within_group_correlation",
]
