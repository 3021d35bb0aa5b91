"""The causal metrics of Roy (2025), sections 3.3-3.4, as pure functions on arrays.

Each metric comes in Roy (2025)'s *faithful* form and, where that form is ill-posed, a
*normalised* form; every function says which it returns. Dead units (no response to any
intervention) and null interventions (no change at all) are handled explicitly: they
are reported as ``NaN`` and counted apart, never silently turned into 0 or 1.

Active units
------------
A unit is *live* when it is neither dead nor masked out by the caller:

- dead (:func:`dead_units`): its total response ``sum_f R[n, f]`` is at most ``rtol`` times
  the layer's largest (default :data:`DEAD_UNIT_RTOL` = 1e-2);
- collapsed (:func:`collapsed_latents`, latent units only): the mean KL of its posterior
  to the prior, ``KL_i = E_x[0.5 (mu_i^2 + sigma_i^2 - log sigma_i^2 - 1)]``, is below a
  threshold (without a log-variance: ``Var_x(mu_i)`` below a threshold). Callers pass
  ``live=~collapsed`` to the unit metrics.

Polysemanticity, the monosemantic fraction, the clusters and the modularity are computed on
the live units only, so a layer's numbers do not change when inactive units are added.

Array conventions (numpy or torch in, numpy out):

- reconstructions: ``base`` ``(N, *pixels)``; ``perturbed`` ``(L, V, N, *pixels)`` for ``L``
  latent dimensions each set to ``V`` values.
- unit responses: ``R`` ``(U, F)`` for ``U`` units and ``F`` factors,
  ``R[n, f] = E_x |A_n(x) - A_n(x~_f)|``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vaelens.errors import ArgumentError

__all__ = [
    "ClusterResult",
    "causal_effect_strength",
    "circuit_clusters",
    "circuit_modularity",
    "collapsed_latents",
    "dead_units",
    "intervention_specificity",
    "live_units",
    "monosemantic_fraction",
    "polysemanticity",
    "primary_factor",
    "unit_responses",
]

#: a unit whose total response is at most this fraction of the layer's largest is dead.
#: 1e-2 rather than a round-off tolerance: a unit under 1% of the layer's most responsive one
#: carries under 1e-4 of its squared response, and the residual leak of a collapsed latent or
#: of a unit switched off by training (1e-3 and below) must not count as a live unit.
DEAD_UNIT_RTOL = 1e-2


def _np(a: Any, name: str) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    arr = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ArgumentError(f"{name}: contains NaN or Inf")
    return arr


def _check_recon(base: Any, perturbed: Any) -> tuple[np.ndarray, np.ndarray]:
    b = _np(base, "base")
    p = _np(perturbed, "perturbed")
    if b.ndim < 2:
        raise ArgumentError(f"base: expected (N, *pixels), got shape {b.shape}")
    if p.ndim != b.ndim + 2 or p.shape[2:] != b.shape:
        raise ArgumentError(
            f"perturbed: expected shape (L, V, {', '.join(map(str, b.shape))}), got {p.shape}"
        )
    return b, p


def causal_effect_strength(base: Any, perturbed: Any, *, normalise: bool = False) -> np.ndarray:
    """Causal effect strength of each latent dimension, ``(L,)``.

    Roy (2025) eq. (7): ``CES(i) = E_{x, v} || D(z) - D(z~_{i,v}) ||_2``, the expectation taken over
    the samples and the ``V`` intervention values of dimension ``i``.

    With ``normalise=True`` the norm is divided by ``sqrt(P)`` (P pixels): the root-mean-square
    change per pixel, comparable across image sizes. Both forms grow with the intervention
    range and mix reconstruction quality with causal effect (see docs/metrics.md).
    """
    b, p = _check_recon(base, perturbed)
    diff = (p - b[None, None]).reshape(p.shape[0], p.shape[1], p.shape[2], -1)
    norms = np.sqrt((diff**2).sum(-1))  # (L, V, N)
    if normalise:
        norms = norms / np.sqrt(diff.shape[-1])
    return norms.mean(axis=(1, 2))


def intervention_specificity(
    base: Any, perturbed: Any, *, form: str = "roy2025", eps: float = 1e-8, null_tol: float = 1e-12
) -> tuple[np.ndarray, np.ndarray]:
    """Intervention specificity of each latent dimension and the share of null interventions.

    For each sample and value, ``p = d / sum(d)`` with ``d`` the pixelwise squared difference
    ``(D(z) - D(z~_i))^2`` and ``H(p) = -sum p log p`` (nats).

    - ``form="roy2025"``: eq. (8), ``S(i) = 1 / (H(p_i) + eps)``, unbounded and dependent on the
      number of pixels ``P``.
    - ``form="normalised"``: ``S(i) = 1 - H(p_i) / log P`` in ``[0, 1]`` (1: one pixel changes,
      0: all change equally).

    An intervention that changes no pixel (``sum(d) <= null_tol``) has no distribution; it is
    left out of the mean. Returns ``(S (L,), null_fraction (L,))``; ``S`` is NaN for a dimension
    whose every intervention is null (a dead latent).
    """
    if form not in ("roy2025", "normalised"):
        raise ArgumentError(f"form: expected 'roy2025' or 'normalised', got {form!r}")
    b, p = _check_recon(base, perturbed)
    d = ((p - b[None, None]) ** 2).reshape(p.shape[0], p.shape[1] * p.shape[2], -1)
    total = d.sum(-1, keepdims=True)
    null = total[..., 0] <= null_tol  # (L, V*N)
    prob = np.divide(d, total, out=np.zeros_like(d), where=total > null_tol)
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(prob > 0, prob * np.log(prob), 0.0).sum(-1)  # (L, V*N)
    if form == "roy2025":
        score = 1.0 / (ent + eps)
    else:
        score = 1.0 - ent / np.log(d.shape[-1])
    score = np.where(null, np.nan, score)
    live = (~null).sum(1)
    with np.errstate(invalid="ignore"):
        mean = np.where(live > 0, np.nansum(score, axis=1) / np.maximum(live, 1), np.nan)
    return mean, null.mean(axis=1)


def unit_responses(acts: Any, acts_changed: Any = None) -> np.ndarray:
    """Response of each unit to one intervention: ``E_x |A_n(x) - A_n(x~)|``, shape ``(U,)``.

    ``acts``/``acts_changed``: activations ``(N, U)`` or ``(N, U, *spatial)`` (a conv channel is
    one unit; its response is averaged over positions). With ``acts_changed=None``, ``acts``
    is the difference ``A(x~) - A(x)`` itself, or its per-example reduction (the mean over
    positions of ``|A(x~) - A(x)|``, ``(N, U)``, what :func:`vaelens.lens.input_intervention`
    returns). Stack the results of several factors as columns to get Roy (2025)'s
    ``R(n, f)`` (eq. 10).
    """
    a = _np(acts, "acts")
    if a.ndim < 2:
        raise ArgumentError(f"acts: expected (N, units, ...), got shape {a.shape}")
    if acts_changed is None:
        diff = np.abs(a)
    else:
        b = _np(acts_changed, "acts_changed")
        if a.shape != b.shape:
            raise ArgumentError(
                f"acts_changed: expected the shape of acts {a.shape}, got {b.shape}"
            )
        diff = np.abs(a - b)
    return diff.reshape(a.shape[0], a.shape[1], -1).mean(axis=(0, 2))


def _check_R(R: Any) -> np.ndarray:
    r = _np(R, "R")
    if r.ndim != 2 or r.shape[1] < 1:
        raise ArgumentError(f"R: expected (units, factors), got shape {r.shape}")
    if (r < 0).any():
        raise ArgumentError("R: responses must be non-negative (mean absolute changes)")
    return r


def dead_units(R: Any, rtol: float = DEAD_UNIT_RTOL) -> np.ndarray:
    """Boolean ``(U,)``: units whose total response is at most ``rtol`` times the layer's largest.

    ``dead[n] = sum_f R[n, f] <= rtol * max_m sum_f R[m, f]`` (every unit of an all-zero layer
    is dead).
    """
    r = _check_R(R)
    tot = r.sum(1)
    scale = tot.max() if tot.size else 0.0
    return tot <= rtol * scale if scale > 0 else np.ones_like(tot, dtype=bool)


def live_units(R: Any, rtol: float = DEAD_UNIT_RTOL, live: Any = None) -> np.ndarray:
    """Boolean ``(U,)``: not :func:`dead_units` and, when given, ``live`` (e.g. not collapsed)."""
    r = _check_R(R)
    out = ~dead_units(r, rtol)
    if live is not None:
        mask = np.asarray(live)
        if mask.shape != out.shape or mask.dtype != bool:
            raise ArgumentError(f"live: expected a bool array of shape {out.shape}, got "
                                f"{mask.dtype} {mask.shape}")  # fmt: skip
        out &= mask
    return out


def collapsed_latents(
    mu: Any,
    logvar: Any = None,
    *,
    kl_threshold: float = 0.01,
    var_threshold: float = 0.01,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which latents collapsed to the prior ``N(0, 1)``: ``(collapsed (L,), kl (L,), var_mu (L,))``.

    ``mu``, ``logvar``: posterior means and log-variances ``(N, L)``. With a log-variance,
    ``KL_i = E_x[0.5 (mu_i^2 + sigma_i^2 - log sigma_i^2 - 1)]`` (nats, the mean KL of the
    posterior of latent ``i`` to the prior) and ``collapsed = KL_i < kl_threshold``. Without
    one (``logvar=None``: a deterministic encoder), ``kl`` is NaN and ``collapsed =
    Var_x(mu_i) < var_threshold``. ``var_mu`` is ``Var_x(mu_i)`` (population variance).
    """
    m = _np(mu, "mu")
    if m.ndim != 2:
        raise ArgumentError(f"mu: expected (N, latents), got shape {m.shape}")
    var = m.var(0)
    if logvar is None:
        return var < var_threshold, np.full(m.shape[1], np.nan), var
    lv = _np(logvar, "logvar")
    if lv.shape != m.shape:
        raise ArgumentError(f"logvar: expected the shape of mu {m.shape}, got {lv.shape}")
    kl = (0.5 * (m**2 + np.exp(lv) - lv - 1.0)).mean(0)
    return kl < kl_threshold, kl, var


def polysemanticity(
    R: Any, *, form: str = "participation", rtol: float = DEAD_UNIT_RTOL, live: Any = None
) -> np.ndarray:
    """Polysemanticity of each unit, ``(U,)``; NaN for units not live (:func:`live_units`).

    - ``form="participation"`` (Roy (2025)'s *text*: 1 = monosemantic, |F| = responds
      equally to all factors): the participation ratio ``PR(n) = (sum_f R)^2 / sum_f R^2``.
    - ``form="roy2025"`` (eq. 11 *as printed*): ``PS(n) = |F| sum_f R^2 / (sum_f R)^2``, which
      gives |F| for a unit responding to one factor and 1 for a uniform one: the inverse of
      the text's reading (``PS = |F| / PR``).

    Neither form can produce the means below 1 in Roy (2025) Table 3.
    """
    if form not in ("participation", "roy2025"):
        raise ArgumentError(f"form: expected 'participation' or 'roy2025', got {form!r}")
    r = _check_R(R)
    dead = ~live_units(r, rtol, live)
    s1 = r.sum(1)
    s2 = (r**2).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        pr = s1**2 / s2
    out = pr if form == "participation" else r.shape[1] / pr
    return np.where(dead, np.nan, out)


def primary_factor(R: Any, *, rtol: float = DEAD_UNIT_RTOL, live: Any = None) -> np.ndarray:
    """Index of each unit's largest response, ``(U,)`` (``-1`` for units not live)."""
    r = _check_R(R)
    return np.where(live_units(r, rtol, live), r.argmax(1), -1)


def monosemantic_fraction(
    R: Any, *, threshold: float = 1.5, rtol: float = DEAD_UNIT_RTOL, live: Any = None
) -> tuple[float, int, int]:
    """Share of live units that are monosemantic: participation ratio below ``threshold``.

    ``PR < 1.5`` means the unit's response is concentrated on one factor (two equal factors
    give PR = 2). Live: :func:`live_units` (not dead at ``rtol``, and ``live`` when given), so a
    collapsed latent leaking a little of one factor is not counted as monosemantic. Returns
    ``(fraction, n_monosemantic, n_live)``; the fraction is NaN when no unit is live.
    """
    pr = polysemanticity(R, form="participation", rtol=rtol, live=live)
    live = ~np.isnan(pr)
    n_live = int(live.sum())
    n_mono = int((pr[live] < threshold).sum())
    return (n_mono / n_live if n_live else float("nan")), n_mono, n_live


def circuit_modularity(
    R: Any, *, form: str = "roy2025", rtol: float = DEAD_UNIT_RTOL, live: Any = None
) -> float:
    """Circuit modularity of a layer from its response matrix ``R`` ``(U, K)``, live units only.

    Roy (2025) eq. (9): ``M = 1 - mean_{i<j} |rho(da_i, da_j)|``, ``da_i = R[live, i]`` the vector
    of activation changes across the layer's live units (:func:`live_units`) for intervention
    ``i``, ``rho`` Pearson's correlation. ``form="signed"`` uses ``1 - mean rho`` clipped to
    [0, 1] (anti-correlated circuits count as separate).

    Dead rows are left out because they are not neutral: ``U - K`` zero rows appended to a
    one-hot layer shift every column's mean and move ``rho`` from ``-1/(K-1)`` to
    ``-1/(U-1)``. Over the live rows a perfectly modular layer (``K`` units, each reading one
    factor: ``R = I_K``) has ``rho(e_i, e_j) = -1/(K-1)``, so ``M = 1 - 1/(K-1)`` (2/3 for
    ``K = 4``; 0 for ``K = 2``, where disjoint circuits are perfectly anti-correlated) and the
    signed form is 1.

    Pairs involving a constant vector (every unit responds equally, e.g. a dead layer, or a
    layer with one unit) have no correlation: they are left out. With no valid pair the
    result is NaN, not 1: Roy (2025)'s 1.000 for early layers is what a computation that
    turns these NaNs into zero correlation would print.
    """
    if form not in ("roy2025", "signed"):
        raise ArgumentError(f"form: expected 'roy2025' or 'signed', got {form!r}")
    r = _check_R(R)
    r = r[live_units(r, rtol, live)]
    k = r.shape[1]
    if k < 2 or r.shape[0] < 2:
        return float("nan")
    centred = r - r.mean(0, keepdims=True)
    norms = np.sqrt((centred**2).sum(0))
    valid = norms > 1e-12 * max(1.0, float(np.abs(r).max()))
    rhos = []
    for i in range(k):
        for j in range(i + 1, k):
            if valid[i] and valid[j]:
                rhos.append(float(centred[:, i] @ centred[:, j] / (norms[i] * norms[j])))
    if not rhos:
        return float("nan")
    rho = np.clip(np.array(rhos), -1.0, 1.0)
    if form == "roy2025":
        return float(1.0 - np.abs(rho).mean())
    return float(np.clip(1.0 - rho.mean(), 0.0, 1.0))


@dataclass
class ClusterResult:
    """Circuit clusters of units by response profile."""

    labels: np.ndarray  #: (U,) cluster of each unit, -1 for units not live
    n_clusters: int
    coherence: float  #: share of live units whose primary factor is their cluster's majority factor
    majority_factor: np.ndarray  #: (n_clusters,) majority primary factor of each cluster
    sizes: np.ndarray  #: (n_clusters,) number of units in each cluster

    def to_dict(self) -> dict[str, Any]:
        return {
            "labels": self.labels.tolist(),
            "n_clusters": self.n_clusters,
            "coherence": self.coherence,
            "majority_factor": self.majority_factor.tolist(),
            "sizes": self.sizes.tolist(),
        }


def circuit_clusters(
    R: Any,
    *,
    n_clusters: int | None = None,
    random_state: int = 0,
    rtol: float = DEAD_UNIT_RTOL,
    live: Any = None,
) -> ClusterResult:
    """Cluster live units (:func:`live_units`) by their normalised profile ``R[n] / sum_f R[n, f]``.

    k-means (scikit-learn, 10 restarts) with ``n_clusters`` (default: the number of factors,
    capped by the number of live units). Cluster coherence (Roy (2025) Table 3) is the share
    of live units whose primary factor equals the majority primary factor of their cluster.
    """
    from sklearn.cluster import KMeans

    r = _check_R(R)
    live_idx = np.flatnonzero(live_units(r, rtol, live))
    labels = np.full(r.shape[0], -1, dtype=np.int64)
    if live_idx.size == 0:
        return ClusterResult(labels, 0, float("nan"), np.zeros(0, np.int64), np.zeros(0, np.int64))
    k = n_clusters if n_clusters is not None else r.shape[1]
    if k < 1:
        raise ArgumentError(f"n_clusters: expected a positive int, got {n_clusters}")
    profiles = r[live_idx] / r[live_idx].sum(1, keepdims=True)
    k = int(min(k, live_idx.size, np.unique(profiles.round(12), axis=0).shape[0]))
    km = KMeans(n_clusters=k, n_init=10, random_state=random_state).fit(profiles)
    labels[live_idx] = km.labels_
    primary = r[live_idx].argmax(1)
    majority = np.zeros(k, dtype=np.int64)
    sizes = np.zeros(k, dtype=np.int64)
    agree = 0
    for c in range(k):
        members = primary[km.labels_ == c]
        sizes[c] = members.size
        counts = np.bincount(members, minlength=r.shape[1])
        majority[c] = counts.argmax()
        agree += counts.max()
    return ClusterResult(labels, k, agree / live_idx.size, majority, sizes)
