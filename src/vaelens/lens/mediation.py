"""Causal mediation analysis (Roy (2025) section 3.2.4): total, indirect and direct effects.

For an input intervention ``x -> x~`` (a pair differing in one factor), an outcome ``f``
(the reconstruction, or the latent mean for ``target="latent"``: Roy (2025) Table 5
mediates input interventions onto ``z``) and a component ``C`` (one unit of a layer, a
whole layer, or a latent dimension via the ``"latent"`` hook point), with ``f(x; C <- c)``
the run on ``x`` with ``C``'s activation replaced by ``c``::

    TE     = f(x~) - f(x)                               total effect
    NIE_C  = f(x; C <- C(x~)) - f(x)                    natural indirect effect (through C)
    NDE_C  = f(x~; C <- C(x)) - f(x)                    natural direct effect (around C)
    INT_C  = TE - NIE_C - NDE_C                         interaction

``NIE_C`` is exactly activation patching with ``(x1, x2) = (x, x~)``. The decomposition
``TE = NIE + NDE`` holds exactly when the outcome is additive in ``C`` and the rest (a linear
network, or a component that is a cut of the graph: a whole layer of a sequential network
gives ``NIE = TE`` and ``NDE = 0``); otherwise ``INT`` carries the non-additive remainder.

Each effect is a vector; we report its L2 norm and its *share* of the total effect along
the total effect's direction, ``share(E) = <E, TE> / ||TE||^2``, so that
``share(NIE) + share(NDE) + share(INT) = 1`` exactly (0 shares where ``TE = 0``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from vaelens.lens.hooks import Lens, Target
from vaelens.lens.patching import patch_sweep

__all__ = ["MediationResult", "mediation"]


@dataclass
class MediationResult:
    """Mediation of ``x -> x~`` by each component; tensors are per example.

    ``total``: ``||TE||`` ``(N,)``. For each layer name: ``indirect``/``direct``: ``||NIE_C||``
    / ``||NDE_C||`` and ``indirect_share``/``direct_share``: ``<., TE> / ||TE||^2``, each
    ``(N, units)`` (``(N,)`` for ``component="layer"``). ``interaction_share`` is
    ``1 - indirect_share - direct_share`` (0 where ``TE = 0``).
    """

    component: str
    target: str
    total: torch.Tensor
    indirect: dict[str, torch.Tensor]
    direct: dict[str, torch.Tensor]
    indirect_share: dict[str, torch.Tensor]
    direct_share: dict[str, torch.Tensor]

    def interaction_share(self, name: str) -> torch.Tensor:
        """``1 - share(NIE) - share(NDE)`` for layer ``name`` (0 where ``TE = 0``)."""
        rest = 1.0 - self.indirect_share[name] - self.direct_share[name]
        te = self.total if rest.ndim == 1 else self.total[:, None]
        return torch.where(te > 0, rest, torch.zeros_like(rest))

    def mean_indirect_share(self, name: str) -> torch.Tensor:
        """Mean over examples with ``TE != 0`` of the indirect share: ``(units,)`` or scalar."""
        share = self.indirect_share[name]
        keep = self.total > 0
        if not bool(keep.any()):
            return torch.zeros(share.shape[1:])
        return share[keep].mean(0)


def mediation(
    lens: Lens,
    x: torch.Tensor,
    x_tilde: torch.Tensor,
    names: str | Sequence[str] | None = None,
    *,
    component: Literal["unit", "layer"] = "unit",
    target: Target = "output",
    max_batch: int | None = None,
) -> MediationResult:
    """Total, natural indirect and natural direct effects of ``x -> x_tilde`` per component.

    ``names``: hook points (default: every encoder hook point, ``"latent"`` and every decoder
    hook point; for ``target="latent"`` the encoder hook points only). Components are the
    units (channels/features, ``component="unit"``) or whole layers (``component="layer"``).
    See the module docstring for the definitions and the decomposition used.
    """
    lens._ensure_traced(x)
    if names is None:
        names = (
            lens.encoder_hook_names
            if target == "latent"
            else [*lens.encoder_hook_names, lens.latent_name, *lens.decoder_hook_names]
        )
    with torch.no_grad():
        f0 = lens.forward(x, target=target)
        f1 = lens.forward(x_tilde, target=target)
    metrics = {"norm": "l2", "share": "projection"}
    ind = patch_sweep(
        lens, x, x_tilde, names, metrics, ref0=f0, ref1=f1, component=component,
        target=target, max_batch=max_batch,
    )  # fmt: skip
    dire = patch_sweep(
        lens, x_tilde, x, names, metrics, ref0=f0, ref1=f1, component=component,
        target=target, max_batch=max_batch,
    )  # fmt: skip
    total = (f1 - f0).reshape(f0.shape[0], -1).norm(dim=-1)
    return MediationResult(
        component=component,
        target=target,
        total=total,
        indirect=ind["norm"],
        direct=dire["norm"],
        indirect_share=ind["share"],
        direct_share=dire["share"],
    )
