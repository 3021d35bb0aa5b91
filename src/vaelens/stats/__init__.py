"""Statistics the reviewers of Roy (2025) asked for.

- :func:`bootstrap_ci`: the one bootstrap confidence interval (BCa or percentile, paired
  samples resampled by whole rows) that every other module uses;
- :func:`correlation`: Pearson or Spearman with its p-value and a bootstrap CI;
- :func:`within_group_correlation`: the correlation inside each group (e.g. dataset) and
  pooled over groups after removing each group's mean (so that between-dataset differences
  cannot create the correlation);
- :func:`partial_correlation`: controlling for covariates (dataset complexity, latent size);
- :func:`fisher_z_ci`: the Fisher-z interval of a (partial) correlation;
- :func:`summary_interval`: a mean across seeds with the interval it allows (the seeds'
  range for n = 2, a t interval, or for a non-negative metric a log-scale t interval that
  cannot cross zero); :func:`group_summary` applies it per group;
- :func:`match_by_rank`: each run's latents ordered by effect, so rank 1 meets rank 1;
- :func:`welch_anova`: Welch's (1951) ANOVA for unequal variances;
- :func:`compare_groups`: omnibus and pairwise tests with multiple-comparison correction;
- :func:`mixed_slope`: a slope with a random intercept per group (statsmodels ``MixedLM``);
- :func:`paired_vs_baseline`: a metric against its random-network baseline;
- :func:`adjust_pvalues`: Holm, Bonferroni and Benjamini-Hochberg corrections.

Imports from: errors.

It sits beneath every package but ``errors``: any package may import it, and besides
``errors`` it uses only numpy, scipy and pandas (and statsmodels, where installed, for
:func:`mixed_slope`).
"""

from vaelens.stats.bootstrap import BCA_MIN_N, BOOT_METHODS, bootstrap_ci
from vaelens.stats.core import (
    INTERVAL_KINDS,
    SPEARMAN_EXACT_MAX_N,
    CorrelationResult,
    adjust_pvalues,
    compare_groups,
    correlation,
    fisher_z_ci,
    group_summary,
    match_by_rank,
    paired_vs_baseline,
    partial_correlation,
    summary_interval,
    welch_anova,
    within_group_correlation,
)
from vaelens.stats.mixed import MIN_GROUPS, mixed_slope

__all__ = [
    "BCA_MIN_N",
    "BOOT_METHODS",
    "INTERVAL_KINDS",
    "MIN_GROUPS",
    "SPEARMAN_EXACT_MAX_N",
    "CorrelationResult",
    "adjust_pvalues",
    "bootstrap_ci",
    "compare_groups",
    "correlation",
    "fisher_z_ci",
    "group_summary",
    "match_by_rank",
    "mixed_slope",
    "paired_vs_baseline",
    "partial_correlation",
    "summary_interval",
    "welch_anova",
    "within_group_correlation",
]
