"""Activation patching (Roy (2025) section 3.2.3): exact, batched, and attribution patching.

Exact patching of unit ``u`` of layer ``l`` (Roy (2025) eq. 5-6)::

    A~_l = A_l(x1) with unit u set to A_l(x2)[u];   out~ = forward(x1, A~_l)
    effect[n, u] = metric(out~_n, out(x1)_n, out(x2)_n)

A unit is index 1 of the activation (a channel of ``(N, C, H, W)``, a feature of ``(N, F)``).
All units of a layer and many examples run in one stacked forward of the suffix
(:meth:`Lens.run_variants`): the prefix is computed once per block of examples, and the
stacked batch is chunked to at most ``max_batch`` rows. Units whose activation is the same
on ``x1`` and ``x2`` throughout a block (dead units) are not run: their effect is that of the
clean output. The sweep runs in :meth:`Lens.sweep_layout` (channels-last conv weights on CPU).

Metrics (``metric=``), each per example:

- ``"l2"``: ``||out~ - out1||_2`` (default), ``"sq_l2"``: its square;
- ``"projection"``: ``<out~ - out1, out2 - out1> / ||out2 - out1||^2``, the share of the
  full x1 -> x2 change that patching the unit recovers along that direction (0 where
  ``out2 == out1``);
- a callable ``metric(out~ (K, n, ...), out1 (n, ...), out2 (n, ...)) -> (K, n)``.

Attribution patching (:func:`attribution_patching`) is the first-order estimate
``out~ - out1 ~ J_l (A_l(x2) - A_l(x1))[u]``, with ``J_l`` the Jacobian of the output with
respect to ``A_l`` at ``x1``; one forward and the backward passes below give it for every
unit of every layer at once. The squared L2 change has zero gradient at the clean point, so
it cannot be attributed by a single gradient. We use:

- ``"projection"`` (exact first order, 1 backward): ``delta_u . grad_A <out, d> / ||d||^2``
  with ``d = out2 - out1`` fixed: the linearisation of the ``"projection"`` metric.
- ``"l2"`` / ``"sq_l2"`` (``probes`` backwards): a Hutchinson estimate of the first-order
  norm: for ``r_p ~ N(0, I)``, ``E[(delta_u . J^T r_p)^2] = ||J delta_u||^2``, so
  ``effect_u ~ sqrt(mean_p (delta_u . J^T r_p)^2)``; relative noise about
  ``sqrt(1 / (2 probes))`` on the L2 value.

Limits: the linearisation ignores ReLU switching and saturation (a sigmoid output near 0/1),
so it degrades when ``x1`` and ``x2`` are far apart; use it as a screen and confirm the top
units with exact patching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import torch

from vaelens.errors import ArgumentError
from vaelens.lens.hooks import Capture, Lens, Target

__all__ = [
    "Metric",
    "activation_patching",
    "attribution_patching",
    "default_max_batch",
    "effect_metric",
    "layer_patching",
    "patch_sweep",
    "resolve_max_batch",
    "unit_mask",
]

MetricFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Metric = Literal["l2", "sq_l2", "projection"] | MetricFn


def _flat(t: torch.Tensor, lead: int) -> torch.Tensor:
    return t.reshape(*t.shape[:lead], -1)


def effect_metric(metric: Metric) -> MetricFn:
    """The metric function ``(out~ (K, n, ...), out1 (n, ...), out2 (n, ...)) -> (K, n)``."""
    if callable(metric):
        return metric
    if metric == "l2":
        return lambda p, c, _: _flat(p - c.unsqueeze(0), 2).norm(dim=-1)
    if metric == "sq_l2":
        return lambda p, c, _: _flat(p - c.unsqueeze(0), 2).pow(2).sum(dim=-1)
    if metric == "projection":

        def projection(p: torch.Tensor, c: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            d = _flat(r - c, 1)
            dd = (d * d).sum(-1)
            num = (_flat(p - c.unsqueeze(0), 2) * d.unsqueeze(0)).sum(-1)
            return torch.where(dd > 0, num / torch.where(dd > 0, dd, 1.0), 0.0)

        return projection
    raise ArgumentError(
        f"metric: expected 'l2', 'sq_l2', 'projection' or a callable, got {metric!r}"
    )


def unit_mask(units: torch.Tensor, n_units: int, ndim: int) -> torch.Tensor:
    """Boolean mask ``(K, 1, n_units, 1, ...)`` (``ndim`` = activation ndim) selecting unit ``units[k]``."""
    mask = torch.zeros(len(units), n_units, dtype=torch.bool)
    mask[torch.arange(len(units)), units] = True
    return mask.reshape(len(units), 1, n_units, *([1] * (ndim - 2)))


def _check_pair(x1: torch.Tensor, x2: torch.Tensor, a1: str = "x1", a2: str = "x2") -> None:
    for arg, t in ((a1, x1), (a2, x2)):
        if not isinstance(t, torch.Tensor) or t.ndim < 2:
            raise ArgumentError(f"{arg}: expected a batch tensor (N, ...), got {type(t).__name__}")
    if x1.shape != x2.shape:
        raise ArgumentError(
            f"{a1} and {a2}: expected the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}"
        )


def default_max_batch(lens: Lens) -> int:
    """Rows of a stacked forward when ``max_batch=None``: 64 on CPU, 2048 on an accelerator.

    On CPU, convolutions (transposed ones above all) run several times faster per row on
    small batches that stay in cache, so stacking more rows buys nothing there.
    """
    param = next(lens.model.parameters(), None)
    return 64 if param is None or param.device.type == "cpu" else 2048


def resolve_max_batch(max_batch: int | None, lens: Lens | None = None) -> int:
    """``max_batch`` checked (a positive int), or :func:`default_max_batch` when ``None``."""
    if max_batch is None and lens is not None:
        return default_max_batch(lens)
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ArgumentError(f"max_batch: expected a positive int, got {max_batch!r}")
    return max_batch


def _sweep_layers(
    lens: Lens,
    base: torch.Tensor,
    names: str | Sequence[str] | None,
    target: Target,
) -> list[str]:
    """The hook points of ``names``; with ``target="latent"`` they must be encoder layers."""
    lens._ensure_traced(base)
    layer_names = lens._resolve_names(names)
    if target == "latent":
        bad = [n for n in layer_names if lens.hook_point(n).phase == "decode"]
        if bad:
            raise ArgumentError(
                f"names: {bad} are decoder layers; target='latent' needs encoder layers"
            )
    return layer_names


def _empty_effects(
    lens: Lens, fns: dict[str, MetricFn], layer_names: list[str], component: str, n_total: int
) -> dict[str, dict[str, torch.Tensor]]:
    """``out[metric][layer]``: uninitialised ``(N, units)`` (units) or ``(N,)`` (layers)."""
    out: dict[str, dict[str, torch.Tensor]] = {k: {} for k in fns}
    for name in layer_names:
        width = lens.units(name) if component == "unit" else 1
        for k in fns:
            out[k][name] = (
                torch.empty(n_total, width) if component == "unit" else torch.empty(n_total)
            )
    return out


class _Block(NamedTuple):
    """One block of examples of a sweep: the clean run, the references and the clean effect."""

    sl: slice
    cap: Capture
    r0: torch.Tensor
    r1: torch.Tensor
    unpatched: dict[str, torch.Tensor]  # metric of the clean output: a patch that changes nothing


def _patch_layer(
    lens: Lens,
    name: str,
    a2: torch.Tensor,
    changed: torch.Tensor,
    blk: _Block,
    fns: dict[str, MetricFn],
    res: dict[str, torch.Tensor],
    target: Target,
) -> None:
    """Effects ``res[metric][block]`` of replacing the whole layer ``name`` by ``a2``."""
    if not changed.any():
        for k in fns:
            res[k][blk.sl] = blk.unpatched[k]
        return
    outs = lens.run_variants(name, a2.unsqueeze(0), blk.cap, target=target)
    for k, fn in fns.items():
        res[k][blk.sl] = fn(outs, blk.r0, blk.r1)[0].cpu()


def _patch_units(
    lens: Lens,
    name: str,
    a2: torch.Tensor,
    changed: torch.Tensor,
    blk: _Block,
    fns: dict[str, MetricFn],
    res: dict[str, torch.Tensor],
    target: Target,
    max_batch: int,
) -> None:
    """Effects ``res[metric][block, unit]`` of taking each unit of layer ``name`` from ``a2``."""
    sl, a1 = blk.sl, blk.cap.activations[name]
    n, n_units = sl.stop - sl.start, a1.shape[1]
    for k in fns:
        res[k][sl, ~changed] = blk.unpatched[k].unsqueeze(1)
    live = torch.nonzero(changed).flatten()
    kb = max(1, max_batch // n)
    for c0 in range(0, len(live), kb):
        units = live[c0 : c0 + kb]
        mask = unit_mask(units, n_units, a1.ndim).to(a1.device)
        variants = torch.where(mask, a2.unsqueeze(0), a1.unsqueeze(0))
        outs = lens.run_variants(name, variants, blk.cap, target=target)
        for k, fn in fns.items():
            res[k][sl, units] = fn(outs, blk.r0, blk.r1).T.cpu()


def patch_sweep(
    lens: Lens,
    base: torch.Tensor,
    source: torch.Tensor,
    names: str | Sequence[str] | None,
    metrics: dict[str, Metric],
    *,
    ref0: torch.Tensor | None = None,
    ref1: torch.Tensor | None = None,
    component: Literal["unit", "layer"] = "unit",
    target: Target = "output",
    max_batch: int | None = None,
) -> dict[str, dict[str, torch.Tensor]]:
    """The engine of exact patching: run ``base`` with components of each layer from ``source``.

    For each hook point ``l`` in ``names`` and each unit ``u`` (``component="unit"``) or the
    whole layer (``component="layer"``), the run on ``base`` continues with the component's
    activation taken from the run on ``source``; every metric ``m`` is evaluated as
    ``m(out~, ref0, ref1)`` with ``ref0``/``ref1`` defaulting to the outputs of ``base`` and
    ``source``. Returns ``result[metric_name][layer]`` of shape ``(N, units)`` (``(N,)`` for
    ``component="layer"``). ``target="latent"`` measures on the latent mean (encoder layers).

    A unit (or layer) whose activation is identical on ``base`` and ``source`` for every
    example of a block (a dead ReLU channel, say) is not run: its patched output is the clean
    output, so its effect is ``m(out(base), ref0, ref1)`` exactly.
    """
    _check_pair(base, source, "base", "source")
    max_batch = resolve_max_batch(max_batch, lens)
    if component not in ("unit", "layer"):
        raise ArgumentError(f"component: expected 'unit' or 'layer', got {component!r}")
    fns = {k: effect_metric(m) for k, m in metrics.items()}
    layer_names = _sweep_layers(lens, base, names, target)
    n_total = int(base.shape[0])
    out = _empty_effects(lens, fns, layer_names, component, n_total)
    block = max(1, min(n_total, max_batch))
    with torch.no_grad(), lens.sweep_layout(probe=base[:2]):
        for b0 in range(0, n_total, block):
            sl = slice(b0, min(n_total, b0 + block))
            n = sl.stop - sl.start
            cap: Capture = lens.capture(base[sl], target=target)
            _, src = lens.run_with_cache(source[sl], layer_names, target=target)
            clean = cap.output if target == "output" else cap.latent
            r0 = clean if ref0 is None else ref0[sl]
            r1 = lens.forward(source[sl], target=target) if ref1 is None else ref1[sl]
            unpatched = {k: fn(clean.unsqueeze(0), r0, r1)[0].cpu() for k, fn in fns.items()}
            blk = _Block(sl, cap, r0, r1, unpatched)
            for name in layer_names:
                a1, a2 = cap.activations[name], src[name]
                # changed[u]: unit u differs between base and source on some example of the block
                changed = (a1 != a2).reshape(n, a1.shape[1], -1).any(-1).any(0).cpu()
                res = {k: out[k][name] for k in fns}
                if component == "layer":
                    _patch_layer(lens, name, a2, changed, blk, fns, res, target)
                else:
                    _patch_units(lens, name, a2, changed, blk, fns, res, target, max_batch)
    return out


def activation_patching(
    lens: Lens,
    x1: torch.Tensor,
    x2: torch.Tensor,
    names: str | Sequence[str] | None = None,
    *,
    metric: Metric = "l2",
    target: Target = "output",
    max_batch: int | None = None,
) -> dict[str, torch.Tensor]:
    """Exact patching of every unit of every layer in ``names`` (default: all hook points).

    Returns ``{layer: effect (N, units)}`` with ``effect[n, u] = metric(out~, out(x1_n),
    out(x2_n))`` for ``out~`` the output of ``x1_n`` with unit ``u`` of ``layer`` taken from
    ``x2_n``. Batched: one stacked suffix forward per chunk of ``max_batch`` rows.
    """
    res = patch_sweep(lens, x1, x2, names, {"m": metric}, target=target, max_batch=max_batch)
    return res["m"]


def layer_patching(
    lens: Lens,
    x1: torch.Tensor,
    x2: torch.Tensor,
    names: str | Sequence[str] | None = None,
    *,
    metric: Metric = "l2",
    target: Target = "output",
    max_batch: int | None = None,
) -> dict[str, torch.Tensor]:
    """Patch whole layers: ``{layer: effect (N,)}`` with all of ``A_l(x1)`` replaced by ``A_l(x2)``."""
    res = patch_sweep(
        lens, x1, x2, names, {"m": metric}, component="layer", target=target, max_batch=max_batch
    )
    return res["m"]


def attribution_patching(
    lens: Lens,
    x1: torch.Tensor,
    x2: torch.Tensor,
    names: str | Sequence[str] | None = None,
    *,
    metric: Literal["l2", "sq_l2", "projection"] = "l2",
    target: Target = "output",
    probes: int = 16,
    seed: int | torch.Generator = 0,
    max_batch: int | None = None,
) -> dict[str, torch.Tensor]:
    """First-order estimate of :func:`activation_patching` for every unit of every layer at once.

    ``effect[n, u] ~ metric`` of ``J_l delta`` with ``delta = (A_l(x2) - A_l(x1))`` restricted
    to unit ``u`` (see the module docstring for the estimators and their limits). One forward
    of ``x1`` with gradients, one forward of ``x2`` without, and 1 (``"projection"``) or
    ``probes`` (``"l2"``, ``"sq_l2"``) backward passes, whatever the number of layers and
    units. ``seed`` seeds the Gaussian probes. Returns ``{layer: (N, units)}``.
    """
    _check_pair(x1, x2)
    max_batch = resolve_max_batch(max_batch, lens)
    if metric not in ("l2", "sq_l2", "projection"):
        raise ArgumentError(f"metric: expected 'l2', 'sq_l2' or 'projection', got {metric!r}")
    if not isinstance(probes, int) or probes < 1:
        raise ArgumentError(f"probes: expected a positive int, got {probes!r}")
    gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    lens._ensure_traced(x1)
    layer_names = lens._resolve_names(names)
    if target == "latent":
        layer_names = [n for n in layer_names if lens.hook_point(n).phase != "decode"]
    n_total = int(x1.shape[0])
    result = {n: torch.empty(n_total, lens.units(n)) for n in layer_names}
    for b0 in range(0, n_total, max_batch):
        sl = slice(b0, min(n_total, b0 + max_batch))
        block = _attribution_block(lens, x1[sl], x2[sl], layer_names, metric, target, probes, gen)
        for n, v in block.items():
            result[n][sl] = v.detach().cpu()
    return result


def _unit_dot(delta: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
    """``(n, units)``: ``sum over positions of delta * grad`` per example and unit."""
    if grad is None:
        return torch.zeros(delta.shape[0], delta.shape[1], device=delta.device)
    return _flat((delta * grad).transpose(0, 1), 2).sum(-1).T


def _attribution_block(
    lens: Lens,
    x1: torch.Tensor,
    x2: torch.Tensor,
    layer_names: list[str],
    metric: str,
    target: Target,
    probes: int,
    gen: torch.Generator,
) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out2, a2 = lens.run_with_cache(x2, layer_names, target=target)
    leaves: dict[str, torch.Tensor] = {}
    acts: dict[str, torch.Tensor] = {}

    def tap(a: torch.Tensor, name: str) -> torch.Tensor:
        zero = torch.zeros_like(a, requires_grad=True)
        leaves[name] = zero
        acts[name] = a.detach()
        return a + zero

    with torch.enable_grad():
        out1 = lens.run_with_hooks(x1, [(n, tap) for n in layer_names], target=target)
        order = list(leaves)
        deltas = {n: a2[n] - acts[n] for n in order}
        inputs = [leaves[n] for n in order]
        if metric == "projection":
            d = _flat(out2 - out1.detach(), 1)
            dd = (d * d).sum(-1, keepdim=True)
            w = torch.where(dd > 0, d / torch.where(dd > 0, dd, 1.0), 0.0)
            obj = (_flat(out1, 1) * w).sum()
            grads = torch.autograd.grad(obj, inputs, allow_unused=True)
            return {n: _unit_dot(deltas[n], g) for n, g in zip(order, grads, strict=True)}
        acc = {n: torch.zeros(x1.shape[0], lens.units(n), device=out1.device) for n in order}
        for p in range(probes):
            r = torch.randn(out1.shape, generator=gen, dtype=out1.dtype).to(out1.device)
            grads = torch.autograd.grad(
                out1, inputs, grad_outputs=r, retain_graph=p < probes - 1, allow_unused=True
            )
            for n, g in zip(order, grads, strict=True):
                acc[n] += _unit_dot(deltas[n], g) ** 2
    est = {n: v / probes for n, v in acc.items()}
    return est if metric == "sq_l2" else {n: v.sqrt() for n, v in est.items()}
