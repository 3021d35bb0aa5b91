"""The referee's controls: is a measured effect the decoder's, the encoder's, or the output scale's?

Three controls, one function each, run by :func:`analyze` when ``controls=True`` (each costs
extra passes and the first a training run, so they are off by default). Their blocks are in
:mod:`vaelens.analysis.result` (:class:`Controls`); docs/controls.md says what each rules out
and what it cannot.

1. :func:`decoder_retrain_control`: a fresh decoder is trained from scratch on the frozen
   encoder's posterior means ``mu(x)`` and CES, specificity and the causal graph are
   re-measured with it. An effect that survives is carried by what the encoder put in ``z``;
   one that changes is an artifact of the particular decoder that was trained.
2. :func:`posterior_source_control`: the latent intervention run on codes drawn from the
   aggregate posterior (product of the marginals of ``mu``) and from the prior ``N(0, I)``
   instead of the encoder's own ``z``. It separates "the decoder responds to latent ``i``"
   from "latent ``i`` is set where the data put it".
3. :func:`recon_normalised_ces`: CES divided by the model's own reconstruction distance, and
   by the spread of its reconstructions, so that large or blurry outputs cannot buy CES.

:func:`run_controls` runs the three and returns the :class:`Controls` block.
"""

from __future__ import annotations

import copy
import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vaelens.analysis.levels import Inputs, _latent_block, causal_graph, latent_level
from vaelens.analysis.result import (
    Controls,
    DecoderRetrainControl,
    ModelAnalysis,
    PosteriorSourceControl,
    ReconNormalisedCES,
)
from vaelens.analysis.settings import AnalysisSettings
from vaelens.errors import ArgumentError, ModelContractError
from vaelens.lens import Lens, latent_traversal

__all__ = [
    "decoder_modules",
    "decoder_retrain_control",
    "draw_latents",
    "posterior_source_control",
    "recon_normalised_ces",
    "run_controls",
    "spearman",
]

#: a latent whose training-set std of ``mu_i`` is at most this fraction of the largest std
#: (or exactly 0) is unidentified for a retrained decoder (see :func:`decoder_retrain_control`)
UNIDENTIFIED_RTOL = 1e-6

#: a normaliser at or below this fraction of the mean image norm (``E||x||_2`` for the
#: reconstruction distance, ``E||out||_2`` for the spread) is undefined: the normalised CES
#: is NaN (float32 round-off of a perfect reconstruction is not a distance)
RTOL = 1e-6


# --------------------------------------------------------------------------- helpers


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two vectors (average ranks for ties; NaN if one is constant)."""
    from scipy.stats import rankdata

    ra, rb = rankdata(np.asarray(a, np.float64)), rankdata(np.asarray(b, np.float64))
    if ra.size < 2 or ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _recon_loss(
    model: nn.Module, output_map, decoded: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """Mean over the batch of the per-image reconstruction NLL term of ``model``.

    ``likelihood == "bernoulli"``: BCE of the logits ``decoded`` against ``x`` summed over
    pixels; otherwise (a Gaussian vaelens model, whose ``output_mean`` is the identity, or a
    foreign model) the squared error of ``output_map(decoded)`` against ``x`` summed over
    pixels. The same quantity as ``ModelAnalysis.recon_error``.
    """
    if getattr(model, "likelihood", None) == "bernoulli":
        err = F.binary_cross_entropy_with_logits(decoded, x, reduction="sum")
    else:
        out = output_map(decoded)
        out = out.reshape(x.shape) if out.numel() == x.numel() else out
        err = F.mse_loss(out, x, reduction="sum")
    return err / x.shape[0]


def _batched_mu(lens: Lens, x: torch.Tensor, max_batch: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [lens.encode_mean(x[i : i + max_batch]) for i in range(0, len(x), max_batch)]
        )


def decoder_modules(lens: Lens) -> list[str]:
    """Names of the sub-modules that belong to the decoder alone, in ``named_modules()`` order.

    A module belongs to the decoder when it, or a module above it, fires during ``decode``
    (a decoder hook point of the lens) and it never fires during ``encode`` (a quantiser
    called by both is shared, hence kept).
    """
    enc = {lens.hook_point(n).module for n in lens.encoder_hook_names}
    dec_roots = {lens.hook_point(n).module for n in lens.decoder_hook_names} - enc
    out = []
    for name, _ in lens.model.named_modules():
        if not name or name in enc:
            continue
        if any(name == r or name.startswith(r + ".") for r in dec_roots):
            out.append(name)
    return out


# --------------------------------------------------------------------------- 1. retrain


def _fresh_decoder(model: nn.Module, names: list[str], seed: int) -> tuple[nn.Module, list, list]:
    """Deep copy of ``model`` with the ``names`` modules re-initialised (as ``random_baseline``)."""
    twin = copy.deepcopy(model)
    modules = dict(twin.named_modules())
    reset, kept = [], []
    devices = [p.device for p in twin.parameters() if p.device.type != "cpu"]
    with torch.random.fork_rng(devices=devices[:1]):
        torch.manual_seed(int(seed))
        for name in names:
            fn = getattr(modules[name], "reset_parameters", None)
            if callable(fn):
                fn()
                reset.append(name)
            elif any(True for _ in modules[name].parameters(recurse=False)):
                kept.append(name)
    return twin, reset, kept


def _reset_twin(
    model: nn.Module, lens: Lens, seed: int
) -> tuple[nn.Module, list[str], list[str], list[str]]:
    """The twin with fresh decoder modules: ``(twin, decoder names, reset, kept)``.

    Raises :class:`ModelContractError` when no decoder module can be re-initialised.
    """
    names = decoder_modules(lens)
    twin, reset, kept = _fresh_decoder(model, names, seed)
    if not reset:
        raise ModelContractError(
            f"decoder retrain control: no decoder module of {type(model).__name__} has "
            "reset_parameters(); cannot retrain its decoder from scratch"
        )
    return twin, names, reset, kept


def _unidentified(mu: torch.Tensor, *, vq: bool) -> list[int]:
    """Flat indices of the latents whose ``mu_i`` does not vary on the training images."""
    std = mu.double().std(0) if mu.shape[0] > 1 else torch.zeros(mu.shape[1:])
    flat_std = std.reshape(-1)
    dead = (flat_std <= UNIDENTIFIED_RTOL * float(flat_std.max())) | (flat_std == 0)
    return [] if vq else [int(i) for i in torch.nonzero(dead).flatten()]


def _pin_latents(twin: nn.Module, mu: torch.Tensor, unidentified: list[int]) -> None:
    """Make ``twin.decode`` read each ``unidentified`` latent at its training mean."""
    if not unidentified:
        return
    fill = mu.mean(0).reshape(-1)[unidentified]
    idx = torch.tensor(unidentified)
    inner = twin.decode

    def decode(z: torch.Tensor) -> torch.Tensor:
        z = z.clone()
        z.reshape(z.shape[0], -1)[:, idx] = fill.to(z.dtype)
        return inner(z)

    twin.decode = decode  # type: ignore[method-assign]


def _train_decoder(
    twin: nn.Module,
    modules: dict[str, nn.Module],
    names: list[str],
    params: list[nn.Parameter],
    mu: torch.Tensor,
    train_x: torch.Tensor,
    output_map,
    s: AnalysisSettings,
) -> tuple[list[float], int]:
    """Adam on the decoder ``params`` only; returns the per-step losses and the batch size.

    Decoder modules train, everything else is in eval mode; afterwards the whole twin is in
    eval mode and frozen.
    """
    for p in twin.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=s.control_lr)
    g = torch.Generator().manual_seed(int(s.seed))
    twin.eval()
    for n in names:
        modules[n].train()
    losses = []
    bs = min(s.control_batch_size, train_x.shape[0])
    for _ in range(s.control_steps):
        idx_b = torch.randint(0, train_x.shape[0], (bs,), generator=g)
        opt.zero_grad()
        loss = _recon_loss(twin, output_map, twin.decode(mu[idx_b]), train_x[idx_b])
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    twin.eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    return losses, bs


class _Fit(NamedTuple):
    """What the retraining did: per-step losses, batch size, pinned latents, module lists."""

    losses: list[float]
    batch_size: int
    unidentified: list[int]
    reset: list[str]
    kept: list[str]


def _edge_jaccard(edges_a: np.ndarray, edges_b: np.ndarray) -> float:
    """Jaccard index of two ``(E, 2)`` edge lists (NaN when both are empty)."""
    a = {tuple(e) for e in edges_a.tolist()}
    b = {tuple(e) for e in edges_b.tolist()}
    union = a | b
    return len(a & b) / len(union) if union else math.nan


def _retrained_block(
    twin: nn.Module,
    lens: Lens,
    inp: Inputs,
    train_x: torch.Tensor,
    s: AnalysisSettings,
    trained: ModelAnalysis,
    fit: _Fit,
    *,
    vq: bool,
    max_batch: int,
) -> DecoderRetrainControl:
    """Re-measure CES, effects and the causal graph with the retrained ``twin``."""
    tlens = Lens(twin, output=lens.output_map, example=inp.x[:2])
    latent, l2f, _, _ = latent_level(tlens, inp, s, vq=vq, max_batch=max_batch)
    old = trained.causal_graph
    graph = causal_graph(
        l2f, old.factor_to_latent, inp.probe, s, vq=vq, factor_graph=old.factor_graph
    )
    x = inp.x
    with torch.no_grad():
        z = lens.encode_mean(x)
        recon = float(_recon_loss(twin, lens.output_map, twin.decode(z), x))
        mse = float(((tlens.forward(x).reshape(x.shape) - x) ** 2).mean())
    return DecoderRetrainControl(
        ces_original=trained.latent.ces,
        ces_retrained=latent.ces,
        ces_spearman=spearman(trained.latent.ces, latent.ces),
        latent=latent,
        causal_graph=graph,
        edge_jaccard=_edge_jaccard(old.edges, graph.edges),
        recon_error=recon,
        recon_error_original=trained.recon_error,
        recon_mse=mse,
        initial_loss=fit.losses[0],
        final_loss=fit.losses[-1],
        unidentified=fit.unidentified,
        reset_modules=fit.reset,
        kept_modules=fit.kept,
        steps=s.control_steps,
        batch_size=fit.batch_size,
        lr=s.control_lr,
        n_train=int(train_x.shape[0]),
    )


def decoder_retrain_control(
    model: nn.Module,
    lens: Lens,
    inp: Inputs,
    train_x: torch.Tensor,
    s: AnalysisSettings,
    trained: ModelAnalysis,
    *,
    vq: bool,
    max_batch: int,
) -> DecoderRetrainControl:
    """Control 1: a decoder retrained from scratch on the frozen encoder's ``mu(x)``.

    A deep copy of ``model`` has its decoder modules (:func:`decoder_modules`) re-initialised
    with ``reset_parameters()`` under ``torch.manual_seed(seed)``, as the random twin is; the
    encoder is shared and frozen. The decoder's parameters are trained with Adam
    (``control_lr``) for ``control_steps`` steps of ``control_batch_size`` images of
    ``train_x`` to minimise the model's own reconstruction loss of ``x`` from
    ``decode(mu(x))`` (:func:`_recon_loss`: BCE on logits for ``likelihood="bernoulli"``,
    summed squared error of the output map otherwise). Decoder modules are in train mode while
    training, everything else in eval mode (a shared quantiser's codebook does not move).

    Then, with ``D'`` the retrained decoder: ``ces_retrained[i]``, the full
    :class:`LatentEffects` and the causal graph (``latent_to_factor`` re-measured,
    ``factor_to_latent`` is the encoder's and unchanged) on the analysis samples, and
    ``ces_spearman = rho_S(ces_original, ces_retrained)``.

    Unidentified latents: a latent whose ``mu_i`` does not vary on ``train_x``
    (``std_i <= UNIDENTIFIED_RTOL * max_j std_j``) gives a decoder trained on ``mu`` no signal,
    so its weights along ``z_i`` keep their random initialisation and a traversal of it would
    measure the initialisation. ``D'`` therefore reads such a latent at its training value
    (``z_i := mean(mu_i)``: the minimum-norm solution, which weight decay would reach), so it
    has CES 0; they are listed in ``unidentified``. A nearly constant latent is not caught:
    its weights barely train and its retrained CES is partly the initialisation's.

    The training budget is not the model's (analysis cannot know a foreign model's): the
    default is small and fixed, a study passes its own steps to match its training.
    Raises :class:`ModelContractError` when no decoder module can be re-initialised.
    """
    twin, names, reset, kept = _reset_twin(model, lens, s.seed)
    modules = dict(twin.named_modules())
    params = list({id(p): p for n in names for p in modules[n].parameters(recurse=False)}.values())
    tlens = Lens(twin, output=lens.output_map, example=inp.x[:2])
    mu = _batched_mu(tlens, train_x, max_batch)  # the encoder is the original's, frozen
    unidentified = _unidentified(mu, vq=vq)
    _pin_latents(twin, mu, unidentified)
    losses, bs = _train_decoder(twin, modules, names, params, mu, train_x, lens.output_map, s)
    fit = _Fit(losses, bs, unidentified, reset, kept)
    return _retrained_block(twin, lens, inp, train_x, s, trained, fit, vq=vq, max_batch=max_batch)


# --------------------------------------------------------------------------- 2. sources


def draw_latents(z: torch.Tensor, source: str, *, seed: int) -> torch.Tensor:
    """Codes ``(N, L)`` in place of the encoder's ``z`` ``(N, L)``, seeded by ``seed``.

    - ``"shuffle"`` (aggregate posterior, product of marginals): column ``i`` is ``z[:, i]``
      permuted independently of the other columns, so each latent keeps its marginal over the
      data and loses its dependence on the other latents and on the image;
    - ``"gaussian"`` (aggregate posterior, moment-matched): ``N(mean_i, s_i^2)`` per latent,
      ``mean_i, s_i^2`` the mean and variance of ``z[:, i]``;
    - ``"prior"``: ``N(0, I)``.
    """
    g = torch.Generator().manual_seed(int(seed))
    n, dim = z.shape
    if source == "shuffle":
        perms = torch.stack([torch.randperm(n, generator=g) for _ in range(dim)], dim=1)
        return torch.gather(z, 0, perms.to(z.device))
    noise = torch.randn(n, dim, generator=g, dtype=z.dtype).to(z.device)
    if source == "gaussian":
        std = z.std(0, unbiased=False) if n > 1 else torch.zeros_like(z[0])
        return z.mean(0) + std * noise
    if source == "prior":
        return noise
    raise ArgumentError(f"source: expected 'shuffle', 'gaussian' or 'prior', got {source!r}")


def _source_effects(lens: Lens, z: torch.Tensor, s: AnalysisSettings, max_batch: int):
    with torch.no_grad():
        base = lens.decode_output(z).numpy()
        t = latent_traversal(lens, z, values=s.latent_values, max_batch=max_batch).numpy()
    return _latent_block(base, t.transpose(1, 2, 0, *range(3, t.ndim)), s, vq=False)


def posterior_source_control(
    lens: Lens, inp: Inputs, s: AnalysisSettings, trained: ModelAnalysis, *, max_batch: int
) -> PosteriorSourceControl:
    """Control 2: the latent intervention on codes from the aggregate posterior and the prior.

    With ``z^src`` drawn by :func:`draw_latents` (seed ``seed + 1`` for the aggregate,
    ``seed + 2`` for the prior), ``CES_src(i) = E_{n,v} ||D(z^src_n with z_i := v) -
    D(z^src_n)||_2`` over the same values as the encoder's CES, beside ``ces_encoder`` (the
    trained model's). For a decoder linear in ``z_i`` with column ``w_i``,
    ``CES_src(i) = ||w_i|| E_{n,v} |v - z^src_{n,i}|``: it depends on the source only through
    the marginal of ``z_i``, so ``shuffle`` equals the encoder's exactly. A gap between the
    encoder's CES and the aggregate's (same marginals) means the decoder's response to ``z_i``
    depends on where the *other* latents are (interactions the data's joint sets up); a gap to
    the prior's means it depends on where ``z`` sits (the region the encoder fills vs the one
    the prior covers).
    """
    with torch.no_grad():
        z = lens.encode_mean(inp.x)
    agg = draw_latents(z, s.control_aggregate, seed=s.seed + 1)
    prior = draw_latents(z, "prior", seed=s.seed + 2)
    return PosteriorSourceControl(
        ces_encoder=trained.latent.ces,
        aggregate=_source_effects(lens, agg, s, max_batch),
        prior=_source_effects(lens, prior, s, max_batch),
        aggregate_method=s.control_aggregate,
    )


# --------------------------------------------------------------------------- 3. normalised


def recon_normalised_ces(lens: Lens, x: torch.Tensor, ces: np.ndarray) -> ReconNormalisedCES:
    """Control 3: CES in units of the model's reconstruction distance and output spread.

    ``recon_distance = E_x ||out(D(E(x))) - x||_2`` (the mean L2 distance of a reconstruction
    to its image, the same norm as CES) and ``ces_recon_normalised[i] = CES_i /
    recon_distance``: how far an intervention on ``z_i`` moves the output in units of how far
    the output is from the data. A model with blurry or wrong outputs (a large
    ``recon_distance``) cannot score a high normalised CES merely by moving large outputs;
    above 1, the intervention's effect exceeds the model's own error. Undefined (NaN) for a
    perfect reconstruction (``recon_distance <= RTOL * E_x ||x||_2``).

    ``output_spread = E_x ||out(D(E(x))) - mean_x out(D(E(x)))||_2`` and ``ces_spread_normalised
    = CES_i / output_spread``: the effect as a share of how much the reconstructions vary across
    the data; invariant to a rescaling of the output. NaN when all reconstructions are equal
    (``output_spread <= RTOL * E_x ||out||_2``).
    """
    with torch.no_grad():
        out = lens.forward(x).reshape(x.shape).double()
    xd = x.double()
    dist = float((out - xd).flatten(1).norm(dim=1).mean())
    spread = float((out - out.mean(0, keepdim=True)).flatten(1).norm(dim=1).mean())
    ces = np.asarray(ces, np.float64)
    nan = np.full_like(ces, np.nan)
    by_recon = ces / dist if dist > RTOL * float(xd.flatten(1).norm(dim=1).mean()) else nan
    by_spread = ces / spread if spread > RTOL * float(out.flatten(1).norm(dim=1).mean()) else nan
    return ReconNormalisedCES(
        recon_distance=dist,
        output_spread=spread,
        ces_recon_normalised=by_recon,
        ces_spread_normalised=by_spread,
    )


# --------------------------------------------------------------------------- all


def _train_images(ds: object, s: AnalysisSettings) -> torch.Tensor:
    """``control_n_train`` dataset images, from their own stream (seed ``[seed, 1]``)."""
    rng = np.random.default_rng([s.seed, 1])
    factors = ds.sample_factors(s.control_n_train, rng)
    return torch.from_numpy(np.ascontiguousarray(ds.images(factors), dtype=np.float32))


def run_controls(
    model: nn.Module,
    lens: Lens,
    ds: object,
    inp: Inputs,
    s: AnalysisSettings,
    trained: ModelAnalysis,
    *,
    vq: bool,
    max_batch: int,
) -> Controls:
    """The three controls on the trained model (VQ models: no posterior-source control)."""
    notes = []
    train_x = _train_images(ds, s)
    retrain = decoder_retrain_control(
        model, lens, inp, train_x, s, trained, vq=vq, max_batch=max_batch
    )
    if retrain.unidentified:
        notes.append(
            f"decoder retrain: latents {retrain.unidentified} do not vary on the training "
            "images; the retrained decoder reads them at their training value (CES 0)"
        )
    sources = None
    if vq:
        notes.append("posterior sources: not run on a VQ model (its latent units are codes)")
    else:
        sources = posterior_source_control(lens, inp, s, trained, max_batch=max_batch)
    return Controls(
        decoder_retrain=retrain,
        posterior_sources=sources,
        recon_normalised=recon_normalised_ces(lens, inp.x, trained.latent.ces),
        notes=notes,
    )
