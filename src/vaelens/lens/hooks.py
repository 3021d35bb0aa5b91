"""The lens: named hook points on any ``encode``/``decode`` model, caches, hooks, suffix runs.

A :class:`Lens` wraps any :class:`torch.nn.Module` with ``encode(x)`` and ``decode(z)`` (or
``encoder``/``decoder`` sub-modules, or explicit ``encode(model, x)``/``decode(model, z)``
callables, or a named ``adapter``: :mod:`vaelens.lens.adapters`); no subclassing, no config.
The pass it analyses is::

    z   = mean(encode(x))         # posterior mean: a tensor, (mean, logvar)[0], obj.mu, ...
    out = output_map(decode(z))   # e.g. sigmoid of Bernoulli logits: the image-space output

What ``encode`` and ``decode`` return is read by the rules of :mod:`vaelens.lens.adapters`
(tuples, lists, dicts, dataclasses, ModelOutput-like objects by the usual field names; a
single ``2L``-wide tensor split into mean | log-variance when the decoder takes width ``L``).

Hook points
-----------
Every sub-module (``named_modules()``, the root excluded) whose output is a tensor and that
fires during one traced pass is a hook point, named by its module path (``"encoder.0"``);
a module that fires several times in one pass gets one hook point per call
(``"act:0"``, ``"act:1"``, ...). ``lens.hook_names`` lists them in the order their outputs
are produced; ``encoder_hook_names`` fired inside ``encode``, ``decoder_hook_names`` inside
``decode``. The virtual hook point ``lens.latent_name`` (``"latent"``) is the latent mean
``z`` between the two calls. Modules that never fire (a FactorVAE discriminator) are not
hook points. Activation "units" are always index ``1`` of an activation (channels of a
``(N, C, H, W)`` map, features of a ``(N, F)`` one).

Suffix runs
-----------
:meth:`Lens.capture` records every module output of one pass; :meth:`Lens.run_from` then
runs the network *from* a hook point: every module that completed before it (in the same
call) returns its recorded output instead of computing, and the hook point's module returns
the activation given. The activation may hold ``K * N`` rows (``K`` stacked variants of
the ``N`` captured examples, variant-major): the rest of the network then runs once on the
stacked batch. So that batch-size idioms hold in a stacked run (``x.view(x.size(0), -1)``,
``assert out.shape[0] == x.shape[0]``, skip connections from before the hook point), the
input ``x`` (or the latent, for a decoder hook point) is repeated ``K`` times, and, where
that is not enough, every replayed prefix output with ``N`` rows too. A model that still cannot run stacked (state kept
between ``encode`` and ``decode``, say) raises some exception or returns a wrong batch:
:meth:`Lens.run_variants` then falls back, for good for that hook point, to full passes on
the input repeated ``K`` times (exact, slower), and says so once per hook point: a
:class:`FallbackWarning` naming the layer and the exception, recorded in ``lens.fallbacks``.

Boundary checks
---------------
Every pass checks, by shape comparisons only: that ``encode(x)``'s mean is a floating tensor
``(N, ...)`` for an input of batch ``N`` (and a log-variance, if given, of the mean's shape)
and that ``decode(z)`` returns one row per row of ``z`` (:class:`ModelContractError`); for a
phase whose activations a suffix run replays or a hook edits, the stacked rows are checked on
the output instead (:meth:`Lens.run_from`). An input ``x`` must have the traced example's
per-example shape, a latent ``z`` the traced latent's width (:class:`ArgumentError`).

The lens puts the model in ``eval()`` mode (batch-norm statistics and dropout would mix or
randomise the stacked variants); pass ``eval_mode=False`` to leave it as it is.

Memory layout
-------------
Stacked sweeps run inside :meth:`Lens.sweep_layout`: on CPU, the model's 4-D (conv) weights
are put in channels-last memory format for the sweep and restored afterwards. Values are
untouched, only strides change; oneDNN's channels-last convolutions (transposed ones above
all) ran exact patching of the roy2025 network 1.1x to 1.3x faster on 2 CPU cores
(``benchmarks/analysis.py --layout-ab``, interleaved runs). A model that cannot run in that
layout (``x.view(...)`` on a conv output, say) is detected on a probe pass and left as it is;
``Lens(model, channels_last=False)`` turns it off.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from vaelens.errors import ArgumentError, ModelContractError, VaelensError
from vaelens.lens.adapters import (
    Adapter,
    DecodeFn,
    EncodeFn,
    find_image_shape,
    read_image,
    read_posterior,
    resolve_adapter,
)

__all__ = [
    "ActivationCache",
    "AdaptedModel",
    "Capture",
    "FallbackWarning",
    "HookFn",
    "HookPoint",
    "Lens",
    "latent_mean",
]

#: A hook function: ``fn(activation, hook_name)`` returns a replacement tensor or ``None``.
HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]
Target = Literal["output", "latent"]
_Key = tuple[str, str, int]  # (phase, module name, call index within the phase)

LATENT_MODULE = "<latent>"


class FallbackWarning(UserWarning):
    """A stacked suffix run failed on a hook point: its sweeps now use full passes (exact)."""


def posterior(
    encoded: Any, *, batch: int | None = None, split: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(mean, logvar | None)`` from what ``encode`` returned.

    Read by :func:`vaelens.lens.adapters.read_posterior` (a tensor, ``(mean, logvar, ...)``,
    or a dict/object with ``mean``/``mu``/... fields); ``split``: the mean is ``2L`` wide and
    its halves are mean and log-variance. With ``batch`` (the input's batch size), also checks
    that the mean is a floating tensor ``(batch, ...)`` and that a log-variance has the mean's
    shape; raises :class:`ModelContractError` otherwise.
    """
    mean, logvar = read_posterior(encoded)
    if split and logvar is None and mean.ndim == 2:
        half = int(mean.shape[1]) // 2
        mean, logvar = mean[:, :half], mean[:, half:]
    if batch is not None:
        if not mean.is_floating_point() or mean.ndim < 1 or mean.shape[0] != batch:
            raise ModelContractError(
                f"encode(x) returned a mean of shape {tuple(mean.shape)} and dtype "
                f"{mean.dtype} for an input of batch {batch}; expected a floating tensor "
                f"({batch}, ...)"
            )
        if isinstance(logvar, torch.Tensor) and logvar.shape != mean.shape:
            raise ModelContractError(
                f"encode(x) returned a logvar of shape {tuple(logvar.shape)} beside a mean of "
                f"shape {tuple(mean.shape)}; expected the mean's shape"
            )
    return mean, logvar


def latent_mean(encoded: Any, *, batch: int | None = None) -> torch.Tensor:
    """The posterior mean from what ``encode`` returned (:func:`posterior`'s first element)."""
    return posterior(encoded, batch=batch)[0]


def _repeat_rows(value: Any, k: int, n: int) -> Any:
    """``value`` with every tensor of ``n`` rows repeated ``k`` times (variant-major)."""
    if isinstance(value, torch.Tensor):
        if value.ndim >= 1 and value.shape[0] == n:
            return value.repeat(k, *([1] * (value.ndim - 1)))
        return value
    if isinstance(value, tuple | list) and not hasattr(value, "_fields"):
        return type(value)(_repeat_rows(v, k, n) for v in value)
    if isinstance(value, dict):
        items = {key: _repeat_rows(v, k, n) for key, v in value.items()}
        try:
            return type(value)(items)
        except Exception:
            return items
    return value


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


@dataclass(frozen=True)
class HookPoint:
    """One named activation: where it fires and its per-example shape.

    ``phase`` is ``"encode"``, ``"latent"`` or ``"decode"``; ``call`` is the index of this
    call of ``module`` within its phase; ``order`` its completion index in the traced pass
    (global, increasing through encode, latent, decode); ``shape`` the activation's shape
    without the batch axis.
    """

    name: str
    module: str
    phase: str
    call: int
    order: int
    shape: tuple[int, ...]

    @property
    def key(self) -> _Key:
        return (self.phase, self.module, self.call)

    @property
    def units(self) -> int:
        """Number of units (index 1 of the activation: channels or features)."""
        return int(self.shape[0]) if self.shape else 1


class ActivationCache(dict[str, torch.Tensor]):
    """Activations by hook name, each ``(N, *hook_point.shape)`` (a plain ``dict``)."""


@dataclass
class Capture:
    """Everything one pass produced, enough to run any suffix of it again (:meth:`Lens.run_from`).

    ``x``: the input ``(N, ...)`` (``None`` when the pass started from ``z``); ``latent``: the
    latent mean ``(N, L)``; ``output``: the output-mapped reconstruction; ``activations``: by
    hook name; ``modules``: every module output by ``(phase, module, call)`` key.
    """

    x: torch.Tensor | None
    latent: torch.Tensor
    output: torch.Tensor | None
    activations: ActivationCache
    modules: dict[_Key, Any] = field(repr=False)

    @property
    def batch(self) -> int:
        return int(self.latent.shape[0])


class _Run:
    """Per-pass state of the hook dispatcher (installed for one pass, then removed)."""

    def __init__(
        self,
        edits: dict[_Key, list[tuple[str, HookFn]]] | None = None,
        replay: dict[_Key, Any] | None = None,
        record_modules: bool = False,
        record_keys: set[_Key] | None = None,
        label_errors: bool = False,
        repeat: tuple[int, int] = (1, 0),
        point: _Key | None = None,
    ) -> None:
        self.phase = "encode"
        self.label_errors = label_errors  # name the failing call (encode/decode) in errors
        self.repeat = repeat  # (K, N): replayed prefix outputs of N rows are repeated K times
        self.point = point  # the hook point a suffix run starts from (replayed as given)
        self.counts: dict[tuple[str, str], int] = defaultdict(int)
        self.stacks: dict[str, list[int]] = defaultdict(list)
        self.edits = edits or {}
        self.replay = replay or {}
        self.record_modules = record_modules
        self.record_keys = record_keys
        self.recorded: dict[_Key, Any] = {}
        self.order: list[_Key] = []
        self.clone = False  # set for models with in-place modules (ReLU(inplace=True))
        # batch checks of encode/decode, off for a phase whose activations are replayed or
        # edited (a suffix run may carry K * N stacked rows through it; see run_from)
        touched = {k[0] for k in self.replay} | {k[0] for k in self.edits}
        self.check_encode = "encode" not in touched
        self.check_decode = "decode" not in touched


class Lens:
    """Named hooks, caches, suffix runs and stacked variants on any ``encode``/``decode`` model.

    Parameters
    ----------
    model: any module with callable ``encode(x)`` and ``decode(z)``, or with ``encoder`` and
        ``decoder`` sub-modules (:mod:`vaelens.lens.adapters`).
    encode, decode: explicit calls ``encode(model, x)``, ``decode(model, z)``, given the model
        first (a deep copy of the model then calls its own modules); default: the adapter's,
        else found automatically.
    output: map from ``decode``'s output to image space: ``"sigmoid"``, ``"identity"`` or a
        callable; default: the adapter's, else the model's ``output_mean`` if it has one,
        else identity.
    adapter: a name of :data:`vaelens.lens.adapters.ADAPTERS` (``"pythae"``, ``"disent"``,
        ``"pytorch_vae"``, ``"disentangling_vae"``) or an :class:`Adapter`.
    example: an input batch used to trace the hook points; default: traced on the first
        input the lens sees, or on zeros of the model's declared input shape
        (:func:`vaelens.lens.adapters.find_image_shape`) when that is needed first.
    eval_mode: call ``model.eval()`` (default ``True``).
    channels_last: run stacked sweeps with conv weights in channels-last memory format
        (:meth:`sweep_layout`); ``None`` (default): on CPU when the model has 4-D weights and
        a probe pass works in that layout; ``False``: never.
    """

    latent_name = "latent"

    def __init__(
        self,
        model: nn.Module,
        *,
        encode: EncodeFn | None = None,
        decode: DecodeFn | None = None,
        output: str | Callable[[torch.Tensor], torch.Tensor] | None = None,
        adapter: str | Adapter | None = None,
        example: torch.Tensor | None = None,
        eval_mode: bool = True,
        channels_last: bool | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ModelContractError(
                f"model: expected a torch.nn.Module, got {type(model).__name__}"
            )
        self.adapter = resolve_adapter(
            model, encode=encode, decode=decode, output=output, adapter=adapter
        )
        self.model = model
        self.output_map = self._resolve_output(model, self.adapter.output)
        self._split: bool | None = None  # encode's 2L-wide tensor is mean | logvar
        #: hook points whose stacked suffix runs fell back to full passes: name -> why
        self.fallbacks: dict[str, str] = {}
        if channels_last not in (None, True, False):
            raise ArgumentError(
                f"channels_last: expected None, True or False, got {channels_last!r}"
            )
        if eval_mode:
            model.eval()
        self._channels_last = channels_last
        self._layout_works: bool | None = None  # the channels-last probe's verdict
        self._points: dict[str, HookPoint] | None = None
        self._input_shape: tuple[int, ...] | None = None  # per-example shape of the traced x
        self._by_key: dict[_Key, str] = {}
        # per hook point, how stacked suffix runs work: "input" (the input repeated K times),
        # "prefix" (the replayed prefix outputs too), "full" (fallback: full passes)
        self._stack_mode: dict[str, str] = {}
        self._modules = {name: mod for name, mod in model.named_modules() if name}
        # in-place modules overwrite the tensors they receive: cached tensors are then cloned
        self._inplace = any(getattr(m, "inplace", False) is True for m in self._modules.values())
        if example is not None:
            self.trace(example)

    # ------------------------------------------------------------------ set-up

    @staticmethod
    def _resolve_output(
        model: nn.Module, output: str | Callable[[torch.Tensor], torch.Tensor] | None
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        if output is None:
            own = getattr(model, "output_mean", None)
            return own if callable(own) else (lambda t: t)
        if callable(output):
            return output
        if output == "sigmoid":
            return torch.sigmoid
        if output == "identity":
            return lambda t: t
        raise ArgumentError(f"output: expected 'sigmoid', 'identity' or a callable, got {output!r}")

    def trace(self, x: torch.Tensor) -> list[str]:
        """Record the hook points from one pass on ``x`` (its first two rows); return their names."""
        x = self._check_input(x, trace=False)[:2]
        run = _Run(record_modules=True, label_errors=True)
        with torch.no_grad():
            self._split = self._detect_split(x)
            self._execute(run, x=x, target="output")
        # count calls per (phase, module) to know which modules fire more than once
        calls: dict[tuple[str, str], int] = defaultdict(int)
        module_calls: dict[str, int] = defaultdict(int)
        for phase, mod, _ in run.order:
            calls[(phase, mod)] += 1
            module_calls[mod] += 1
        points: dict[str, HookPoint] = {}
        seen: dict[str, int] = defaultdict(int)
        for i, key in enumerate(run.order):
            phase, mod, call = key
            out = run.recorded[key]
            k = seen[mod]
            seen[mod] += 1
            if not isinstance(out, torch.Tensor) or out.ndim < 1:
                continue
            if mod == LATENT_MODULE:
                name = self.latent_name
                if name in self._modules:
                    name = "lens.latent"
                    self.latent_name = name
            else:
                name = mod if module_calls[mod] == 1 else f"{mod}:{k}"
            points[name] = HookPoint(name, mod, phase, call, i, tuple(out.shape[1:]))
        self._points = points
        self._input_shape = tuple(x.shape[1:])
        self._by_key = {p.key: n for n, p in points.items()}
        self._stack_mode = {}
        self.fallbacks = {}
        return list(points)

    def _detect_split(self, x: torch.Tensor) -> bool:
        """Whether encode's output is one ``2L``-wide tensor of mean | log-variance.

        Only for a single 2-D tensor of even width with no log-variance beside it: ``True``
        when ``decode`` accepts its first half (width ``L``) and rejects the whole (width
        ``2L``); each width is tried once, on the first two rows, any exception a rejection.
        """
        enc = self._call(_Run(label_errors=True), "encode", x)
        mean, logvar = read_posterior(enc)
        if logvar is not None or mean.ndim != 2 or mean.shape[1] % 2 or not mean.shape[1]:
            return False

        def accepts(z: torch.Tensor) -> bool:
            try:
                read_image(self.adapter.decode(self.model, z))
            except Exception:
                return False
            return True

        half = int(mean.shape[1]) // 2
        return accepts(mean[:, :half]) and not accepts(mean)

    def _call(self, run: _Run, which: str, arg: torch.Tensor) -> Any:
        """``adapter.encode(model, x)`` or ``adapter.decode(model, z)``; errors named on a trace."""
        fn = self.adapter.encode if which == "encode" else self.adapter.decode
        if not run.label_errors:
            return fn(self.model, arg)
        try:
            return fn(self.model, arg)
        except VaelensError:
            raise
        except Exception as err:
            var = "x" if which == "encode" else "z"
            raise ModelContractError(
                f"{which}({var}) of {type(self.model).__name__} (adapter {self.adapter.name!r}) "
                f"failed on {var} of shape {tuple(arg.shape)}: {_first_line(err)}"
            ) from err

    def _ensure_traced(self, x: torch.Tensor | None = None) -> dict[str, HookPoint]:
        if self._points is None:
            if x is None:
                own = self.adapter.image_shape
                shape = own(self.model) if own is not None else None
                shape = shape or find_image_shape(self.model)
                if shape is None:
                    raise ModelContractError(
                        "the lens has not seen an input yet and the model declares no input "
                        "shape (image_shape, input_shape, x_shape, img_size, input_dim, "
                        "model_config.input_dim): pass Lens(model, example=x) or call lens.trace(x)"
                    )
                x = torch.zeros(2, *tuple(shape))
            self.trace(x)
        assert self._points is not None
        return self._points

    @staticmethod
    def _check_input(x: Any, *, trace: bool = True, argument: str = "x") -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise ArgumentError(f"{argument}: expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim < 2 or x.shape[0] < 1:
            raise ArgumentError(
                f"{argument}: expected a batch (N, ...) with N >= 1, got shape {tuple(x.shape)}"
            )
        return x

    def _traced_input(self, x: Any, argument: str = "x") -> torch.Tensor:
        """``x`` checked as a batch of the traced input's per-example shape (tracing on it first)."""
        x = self._check_input(x, argument=argument)
        self._ensure_traced(x)
        if tuple(x.shape[1:]) != self._input_shape:
            dims = ", ".join(map(str, self._input_shape or ()))
            raise ArgumentError(
                f"{argument}: expected inputs of shape (N, {dims}) like the traced example, "
                f"got {tuple(x.shape)}"
            )
        return x

    def _check_latent(self, z: Any, argument: str = "z") -> torch.Tensor:
        """``z`` checked as a floating batch of latent codes of the traced latent's width."""
        z = self._check_input(z, argument=argument)
        shape = self.hook_point(self.latent_name).shape
        if tuple(z.shape[1:]) != shape or not z.is_floating_point():
            dims = ", ".join(map(str, shape))
            raise ArgumentError(
                f"{argument}: expected floating latent codes of shape (N, {dims}) (the width of "
                f"encode's mean), got shape {tuple(z.shape)} and dtype {z.dtype}"
            )
        return z

    # ------------------------------------------------------------------ names

    @property
    def hook_names(self) -> list[str]:
        """Every hook point (module paths and ``latent``) in the order their outputs are produced."""
        return list(self._ensure_traced())

    @property
    def encoder_hook_names(self) -> list[str]:
        """Hook points that fire inside ``encode`` (forward order)."""
        return [n for n, p in self._ensure_traced().items() if p.phase == "encode"]

    @property
    def decoder_hook_names(self) -> list[str]:
        """Hook points that fire inside ``decode`` (forward order)."""
        return [n for n, p in self._ensure_traced().items() if p.phase == "decode"]

    def hook_point(self, name: str) -> HookPoint:
        """The :class:`HookPoint` called ``name`` (a clear error listing the names otherwise)."""
        points = self._ensure_traced()
        if name not in points:
            raise ArgumentError(
                f"hook name {name!r} is not a hook point of {type(self.model).__name__}; "
                f"expected one of {list(points)}"
            )
        return points[name]

    def units(self, name: str) -> int:
        """Number of units (index 1: channels or features) of hook point ``name``."""
        return self.hook_point(name).units

    def _resolve_names(self, names: str | Sequence[str] | None) -> list[str]:
        if names is None:
            return self.hook_names
        if isinstance(names, str):
            names = [names]
        return [self.hook_point(n).name for n in names]

    # ------------------------------------------------------------------ the engine

    @contextlib.contextmanager
    def sweep_layout(self, probe: torch.Tensor | None = None) -> Iterator[bool]:
        """Within: the model's 4-D weights in channels-last memory format; restored after, always.

        Yields whether that layout is in use: with ``channels_last=True``, or ``None`` when
        every parameter is on CPU, some weight is 4-D and the model runs in that layout. The
        first time, ``probe`` (a few input rows) is run once in it; a model that fails (a
        ``.view`` of a conv output, say) is left as it is from then on. Only strides change,
        never values; the parameters keep their identity and get their own tensors back.
        """
        weights = [p for p in self.model.parameters() if p.ndim == 4]
        if self._channels_last is None:
            use = (
                bool(weights)
                and self._layout_works is not False
                and all(p.device.type == "cpu" for p in self.model.parameters())
            )
        else:
            use = self._channels_last and bool(weights)
        saved = {
            p: p.data for p in weights if not p.is_contiguous(memory_format=torch.channels_last)
        }
        first = self._channels_last is None and self._layout_works is None
        if use and saved and first and probe is not None:
            with self._channels_last_weights(saved):
                try:
                    with torch.no_grad():
                        self._execute(_Run(), x=self._check_input(probe)[:2])
                    self._layout_works = True
                except RuntimeError:
                    self._layout_works = False
            use = bool(self._layout_works)
        if not use or not saved:
            yield use
            return
        with self._channels_last_weights(saved):
            yield True

    @staticmethod
    @contextlib.contextmanager
    def _channels_last_weights(saved: dict[nn.Parameter, torch.Tensor]) -> Iterator[None]:
        """Within: each parameter of ``saved`` (parameter -> its own data) in channels-last."""
        try:
            for p in saved:
                p.data = p.data.contiguous(memory_format=torch.channels_last)
            yield
        finally:
            for p, data in saved.items():
                p.data = data

    @contextlib.contextmanager
    def _installed(self, run: _Run) -> Iterator[None]:
        """Install the dispatcher on every sub-module; always remove it (also on error)."""
        handles: list[Any] = []
        overridden: list[tuple[nn.Module, Any]] = []
        replay_modules = {k[1] for k in run.replay}
        run.clone = self._inplace
        try:
            for name, module in self._modules.items():
                handles.append(module.register_forward_pre_hook(self._pre_hook(run, name)))
                handles.append(module.register_forward_hook(self._post_hook(run, name)))
                if name in replay_modules:
                    overridden.append((module, module.__dict__.get("forward", _MISSING)))
                    module.forward = self._replaying_forward(run, name, module.forward)
            yield
        finally:
            for h in handles:
                h.remove()
            for module, old in overridden:
                if old is _MISSING:
                    module.__dict__.pop("forward", None)
                else:
                    module.forward = old

    @staticmethod
    def _pre_hook(run: _Run, name: str) -> Callable[..., None]:
        def pre(module: nn.Module, args: Any) -> None:
            key = (run.phase, name)
            run.stacks[name].append(run.counts[key])
            run.counts[key] += 1

        return pre

    @staticmethod
    def _replaying_forward(run: _Run, name: str, forward: Callable[..., Any]) -> Callable[..., Any]:
        def replaying(*args: Any, **kwargs: Any) -> Any:
            key = (run.phase, name, run.stacks[name][-1])
            if key in run.replay:
                out = run.replay[key]
                k, n = run.repeat
                if k > 1 and key != run.point:
                    return _repeat_rows(out, k, n)  # fresh tensors: no clone needed
                return out.clone() if run.clone and isinstance(out, torch.Tensor) else out
            return forward(*args, **kwargs)

        return replaying

    def _post_hook(self, run: _Run, name: str) -> Callable[..., Any]:
        def post(module: nn.Module, args: Any, output: Any) -> Any:
            call = run.stacks[name].pop()
            key = (run.phase, name, call)
            return self._dispatch(run, key, output)

        return post

    @staticmethod
    def _dispatch(run: _Run, key: _Key, output: Any) -> Any:
        run.order.append(key)
        new = output
        for hook_name, fn in run.edits.get(key, ()):
            res = fn(new, hook_name)
            if res is not None:
                if not isinstance(res, torch.Tensor):
                    raise ArgumentError(
                        f"hook on {hook_name!r} returned {type(res).__name__}; expected a tensor or None"
                    )
                new = res
        if run.record_modules or (run.record_keys is not None and key in run.record_keys):
            run.recorded[key] = new.clone() if run.clone and isinstance(new, torch.Tensor) else new
        return new if new is not output else None

    def _execute(
        self,
        run: _Run,
        *,
        x: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        target: Target = "output",
    ) -> torch.Tensor:
        """One pass under ``run``: encode (unless ``z`` given), latent hook, decode, output map."""
        if target not in ("output", "latent"):
            raise ArgumentError(f"target: expected 'output' or 'latent', got {target!r}")
        with self._installed(run):
            if z is None:
                run.phase = "encode"
                assert x is not None
                batch = int(x.shape[0]) if run.check_encode else None
                z = posterior(self._call(run, "encode", x), batch=batch, split=bool(self._split))[0]
            run.phase = "latent"
            key = ("latent", LATENT_MODULE, 0)
            new = self._dispatch(run, key, z)
            z = z if new is None else new
            if target == "latent":
                return z
            run.phase = "decode"
            decoded = read_image(self._call(run, "decode", z))
            if run.check_decode and (decoded.ndim < 1 or decoded.shape[0] != z.shape[0]):
                raise ModelContractError(
                    f"decode(z) returned shape {tuple(decoded.shape)} for z of shape "
                    f"{tuple(z.shape)}; expected {z.shape[0]} rows, one output per latent code"
                )
            return self.output_map(decoded)

    def _edits(self, hooks: Sequence[tuple[str, HookFn]]) -> dict[_Key, list[tuple[str, HookFn]]]:
        edits: dict[_Key, list[tuple[str, HookFn]]] = defaultdict(list)
        for item in hooks:
            if not (isinstance(item, tuple | list) and len(item) == 2 and callable(item[1])):
                raise ArgumentError(
                    f"hooks: expected (hook_name, fn) pairs with fn(activation, name), got {item!r}"
                )
            name, fn = item
            edits[self.hook_point(name).key].append((name, fn))
        return edits

    # ------------------------------------------------------------------ public runs

    def forward(self, x: torch.Tensor, *, target: Target = "output") -> torch.Tensor:
        """``output_map(decode(mean(encode(x))))`` (or the latent mean for ``target="latent"``)."""
        x = self._traced_input(x)
        return self._execute(_Run(), x=x, target=target)

    __call__ = forward

    def encode_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Latent mean ``(N, L)`` of ``x``."""
        return self.forward(x, target="latent")

    def decode_output(self, z: torch.Tensor) -> torch.Tensor:
        """``output_map(decode(z))`` for latent codes ``z`` ``(N, L)``."""
        self._ensure_traced()
        z = self._check_latent(z)
        return self._execute(_Run(), z=z, target="output")

    def encode_posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(mean, logvar | None)`` of ``x`` as the lens reads ``encode`` (no hooks)."""
        x = self._traced_input(x)
        return posterior(
            self._call(_Run(), "encode", x), batch=int(x.shape[0]), split=bool(self._split)
        )

    def decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        """``decode(z)``'s image tensor before the output map (no hooks)."""
        self._ensure_traced()
        return read_image(self._call(_Run(), "decode", self._check_latent(z)))

    @property
    def adapted(self) -> AdaptedModel:
        """The model as the lens calls it: ``encode(x) -> (mean, logvar)``, ``decode(z) -> tensor``."""
        return AdaptedModel(self)

    def run_with_hooks(
        self,
        x: torch.Tensor,
        hooks: Sequence[tuple[str, HookFn]],
        *,
        target: Target = "output",
        z: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run once with temporary hooks ``[(hook_name, fn)]``; they are removed afterwards, always.

        ``fn(activation, hook_name)`` may return a replacement tensor (it flows on) or ``None``.
        Pass ``z`` instead of ``x`` (``x=None``) to run the decoder only.
        """
        if z is None:
            x = self._traced_input(x)
        else:
            self._ensure_traced()
            z = self._check_latent(z)
        run = _Run(edits=self._edits(hooks))
        return self._execute(run, x=x if z is None else None, z=z, target=target)

    def run_with_cache(
        self,
        x: torch.Tensor,
        names: str | Sequence[str] | None = None,
        *,
        hooks: Sequence[tuple[str, HookFn]] = (),
        target: Target = "output",
    ) -> tuple[torch.Tensor, ActivationCache]:
        """Run once and return ``(output, cache)``; ``cache[name]`` is ``(N, *shape)``.

        ``names``: hook names to keep (default all). With ``target="latent"`` the pass stops
        after ``encode`` (decoder names then cannot be cached). Cached activations are what
        flowed on, i.e. after any ``hooks``.
        """
        x = self._traced_input(x)
        wanted = self._resolve_names(names)
        if target == "latent":
            bad = [n for n in wanted if self.hook_point(n).phase == "decode"]
            if bad and names is not None:
                raise ArgumentError(
                    f"names: {bad} fire in decode, but target='latent' stops before it"
                )
            wanted = [n for n in wanted if self.hook_point(n).phase != "decode"]
        keys = {self.hook_point(n).key: n for n in wanted}
        run = _Run(edits=self._edits(hooks), record_keys=set(keys))
        out = self._execute(run, x=x, target=target)
        cache = ActivationCache()
        for n in wanted:
            cache[n] = run.recorded[self.hook_point(n).key]
        return out, cache

    def capture(self, x: torch.Tensor, *, target: Target = "output", grad: bool = False) -> Capture:
        """One pass recording every module output (for :meth:`run_from`) and every activation."""
        x = self._traced_input(x)
        run = _Run(record_modules=True)
        with torch.set_grad_enabled(grad):
            out = self._execute(run, x=x, target=target)
        points = self._ensure_traced()
        acts = ActivationCache()
        for n, p in points.items():
            if p.key in run.recorded:
                acts[n] = run.recorded[p.key]
        latent = acts[self.latent_name]
        return Capture(
            x=x,
            latent=latent,
            output=out if target == "output" else None,
            activations=acts,
            modules=run.recorded,
        )

    def run_from(
        self,
        name: str,
        activation: torch.Tensor,
        capture: Capture,
        *,
        target: Target = "output",
        repeat_prefix: bool = True,
    ) -> torch.Tensor:
        """Run the network from hook point ``name`` given its ``activation``, skipping the prefix.

        Every module that completed before ``name`` in the same call returns its output from
        ``capture`` (the pass must be on the same examples); a decoder or latent hook point
        skips ``encode`` altogether. ``activation`` has ``K * N`` rows (``N = capture.batch``,
        ``K >= 1`` variants, variant-major: row ``k * N + n``); the result has ``K * N`` rows.
        With ``K > 1`` the input (the latent, for a decoder hook point) and, with
        ``repeat_prefix`` (default), every replayed prefix output of ``N`` rows are repeated
        ``K`` times, so that batch-size idioms and skip connections from the prefix see
        ``K * N`` rows. Raises
        :class:`ModelContractError` if the run fails or the output batch is not ``K * N``
        (see :meth:`run_variants`, which falls back).
        """
        point = self.hook_point(name)
        n = capture.batch
        rows = int(activation.shape[0])
        if rows % n or tuple(activation.shape[1:]) != point.shape:
            raise ArgumentError(
                f"activation for {name!r}: expected shape (K*{n}, {', '.join(map(str, point.shape))}), "
                f"got {tuple(activation.shape)}"
            )
        if point.phase == "decode" and target == "latent":
            raise ArgumentError(f"target='latent' cannot be measured from decoder layer {name!r}")
        k = rows // n
        if point.phase == "latent":
            out = self._run_suffix(name, rows, _Run(), z=activation, target=target)
        elif point.phase == "decode":
            run = self._suffix_run(point, activation, capture, k if repeat_prefix else 1)
            z = _repeat_rows(capture.latent, k, n)
            out = self._run_suffix(name, rows, run, z=z, target=target)
        else:
            if capture.x is None:
                raise ArgumentError("capture has no input x: it cannot replay an encoder layer")
            run = self._suffix_run(point, activation, capture, k if repeat_prefix else 1)
            x = _repeat_rows(capture.x, k, n)
            out = self._run_suffix(name, rows, run, x=x, target=target)
        return self._check_rows(name, rows, out)

    def _suffix_run(self, point: HookPoint, activation: torch.Tensor, capture: Capture, k: int):
        replay = self._replay_dict(point, activation, capture)
        return _Run(replay=replay, repeat=(k, capture.batch), point=point.key)

    def _run_suffix(self, name: str, rows: int, run: _Run, **kwargs: Any) -> torch.Tensor:
        try:
            return self._execute(run, **kwargs)
        except VaelensError:
            raise
        except Exception as err:
            raise ModelContractError(
                f"running from {name!r} on {rows} stacked rows failed ({_first_line(err)}); "
                "use run_variants, which falls back to full passes"
            ) from err

    @staticmethod
    def _check_rows(name: str, rows: int, out: torch.Tensor) -> torch.Tensor:
        if out.shape[0] != rows:
            raise ModelContractError(
                f"running from {name!r} on {rows} stacked rows gave {out.shape[0]} output rows: "
                "later layers combine tensors from before this layer"
            )
        return out

    def _replay_dict(
        self, point: HookPoint, activation: torch.Tensor, capture: Capture
    ) -> dict[_Key, Any]:
        points_order = {k: i for i, k in enumerate(capture.modules)}
        target_idx = points_order.get(point.key)
        if target_idx is None:
            raise ArgumentError(f"capture does not hold hook point {point.name!r}")
        replay = {
            k: v
            for k, v in capture.modules.items()
            if k[0] == point.phase and points_order[k] < target_idx and k[1] != LATENT_MODULE
        }
        replay[point.key] = activation
        return replay

    def run_variants(
        self,
        name: str,
        variants: torch.Tensor,
        capture: Capture,
        *,
        target: Target = "output",
    ) -> torch.Tensor:
        """Outputs ``(K, N, ...)`` of ``K`` variants ``(K, N, *shape)`` of hook point ``name``.

        Runs the suffix once on the ``K * N`` stacked rows (:meth:`run_from`), with only the
        input repeated ``K`` times first (no copies of the prefix outputs: the cheapest), then
        with the replayed prefix outputs repeated too; the first that works is kept for this
        hook point. If both raise an exception (bad arguments aside) or return a wrong batch,
        falls back, for good for this hook point, to a full pass (``encode`` included, unless
        the capture started from ``z``) on the input repeated ``K`` times with the activation
        replaced (exact, slower). The first fallback of a hook point emits a
        :class:`FallbackWarning` naming it and the exception, and records it in
        ``lens.fallbacks[name]``. Chunk ``K`` yourself to bound memory.
        """
        k, n = int(variants.shape[0]), int(variants.shape[1])
        point = self.hook_point(name)
        if n != capture.batch or tuple(variants.shape[2:]) != point.shape:
            dims = ", ".join(map(str, point.shape))
            raise ArgumentError(
                f"variants: expected shape (K, {capture.batch}, {dims}), got "
                f"{tuple(variants.shape)}"
            )
        flat = variants.reshape(k * n, *variants.shape[2:])
        mode = self._stack_mode.get(name, "input" if k > 1 else "prefix")
        while mode != "full":
            try:
                out = self.run_from(
                    name, flat, capture, target=target, repeat_prefix=mode == "prefix"
                )
            except ArgumentError:
                raise
            except Exception as err:
                if mode == "input":  # try again with the prefix outputs repeated too
                    mode = "prefix"
                    continue
                mode = self._stack_mode[name] = "full"
                cause = err.__cause__ if isinstance(err.__cause__, Exception) else err
                why = _first_line(cause)
                self.fallbacks[name] = why
                warnings.warn(
                    f"lens: stacked suffix runs from {name!r} of {type(self.model).__name__} "
                    f"failed ({why}); falling back to full passes for this layer (exact, slower)",
                    FallbackWarning,
                    stacklevel=2,
                )
                break
            if k > 1:  # K = 1 cannot tell the modes apart
                self._stack_mode[name] = mode
            return out.reshape(k, n, *out.shape[1:])

        def replace(a: torch.Tensor, _: str) -> torch.Tensor:
            return flat

        run = _Run(edits=self._edits([(name, replace)]))
        if capture.x is not None:  # a full pass, encode included (it may leave state for decode)
            xr = capture.x.repeat(k, *([1] * (capture.x.ndim - 1)))
            out = self._execute(run, x=xr, target=target)
        else:
            assert point.phase in ("latent", "decode")
            z = capture.latent.repeat(k, *([1] * (capture.latent.ndim - 1)))
            out = self._execute(run, z=z, target=target)
        return out.reshape(k, n, *out.shape[1:])


class AdaptedModel:
    """A model seen through its lens's adapter; every other attribute is the model's.

    ``encode(x)`` returns ``(mean, logvar | None)`` (:meth:`Lens.encode_posterior`) and
    ``decode(z)`` the image tensor before the output map (:meth:`Lens.decode_raw`), whatever
    the model's own calls are named or return.
    """

    def __init__(self, lens: Lens) -> None:
        self._lens = lens

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self._lens.encode_posterior(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self._lens.decode_raw(z)

    def __getattr__(self, name: str) -> Any:
        if name == "_lens":
            raise AttributeError(name)
        return getattr(self._lens.model, name)


class _Missing:
    pass


_MISSING = _Missing()
