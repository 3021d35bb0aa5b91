"""How the lens calls a model and reads what it returns: found automatically, or given.

Automatic (no argument)
-----------------------
- **What to call**: ``model.encode(x)`` / ``model.decode(z)`` when callable; otherwise the
  ``encoder`` / ``decoder`` sub-modules (``model.encoder(x)``, ``model.decoder(z)``).
- **The encoder's output** (:func:`read_posterior`): a tensor is the mean; a tuple or list is
  ``(mean, logvar, ...)``; a dict, dataclass, namedtuple or ModelOutput-like object (key or
  attribute access) is read by name: the mean from the first of :data:`MEAN_NAMES`
  (``mean``, ``mu``, ``z_mean``, ``loc``, ``embedding``), the log-variance from the first of
  :data:`LOGVAR_NAMES` (``logvar``, ``log_var``, ``log_variance``, ``log_covariance``,
  ``z_logvar``), or ``2 log(scale | std)``.
- **Concatenated mean | log-variance**: when the mean is a single 2-D tensor of even width
  ``2L`` and no log-variance was given, the decoder is probed once with each width (the
  first two rows of the traced input): if it accepts width ``L`` and rejects width ``2L``
  (any exception), the first half is the mean and the second the log-variance; otherwise the
  whole tensor is the mean.
- **The decoder's output** (:func:`read_image`): a tensor; the first element of a tuple or
  list; else by name, the first of :data:`IMAGE_NAMES` (``reconstruction``, ``recon``,
  ``x_recon``, ``x_hat``, ``output``, ``logits``).
- **The image shape** (:func:`find_image_shape`, for ``Lens(model).hook_names`` without an
  example): ``image_shape``, ``input_shape``, ``x_shape``, ``img_size`` (a 3-tuple, or with
  ``in_channels``), ``input_dim`` on the model, then on its ``model_config`` (pythae) and on
  its ``encoder`` / ``_encoder``.

Explicit
--------
``Lens(model, encode=..., decode=..., output=..., adapter=...)`` (and the same keywords of
:func:`vaelens.analyze`): ``encode(model, x)`` and ``decode(model, z)`` receive the model
first, so a deep copy (the random twin) gets calls on its own modules; ``adapter`` names an
entry of :data:`ADAPTERS` (``"pythae"``, ``"disent"``, ``"pytorch_vae"``,
``"disentangling_vae"``); explicit callables override the entry's.

Imports from: errors.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vaelens.errors import ArgumentError, ModelContractError

__all__ = [
    "ADAPTERS",
    "IMAGE_NAMES",
    "LOGVAR_NAMES",
    "MEAN_NAMES",
    "Adapter",
    "find_image_shape",
    "read_image",
    "read_posterior",
    "register_adapter",
    "resolve_adapter",
]

MEAN_NAMES = ("mean", "mu", "z_mean", "loc", "embedding")
LOGVAR_NAMES = ("logvar", "log_var", "log_variance", "log_covariance", "z_logvar")
STD_NAMES = ("scale", "std")
IMAGE_NAMES = ("reconstruction", "recon", "x_recon", "x_hat", "output", "logits")

EncodeFn = Callable[[nn.Module, torch.Tensor], Any]
DecodeFn = Callable[[nn.Module, torch.Tensor], Any]
OutputSpec = str | Callable[[torch.Tensor], torch.Tensor] | None


# --------------------------------------------------------------------------- reading outputs


def _field(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    try:
        return getattr(obj, name, None)
    except Exception:  # a property that fails is a field that is not there
        return None


def _first_tensor(obj: Any, names: tuple[str, ...]) -> torch.Tensor | None:
    for n in names:
        v = _field(obj, n)
        if isinstance(v, torch.Tensor):
            return v
    return None


def _positional(obj: Any) -> bool:
    return isinstance(obj, tuple | list) and not hasattr(obj, "_fields")


def read_posterior(encoded: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(mean, logvar | None)`` from what an encoder returned (rules: the module docstring)."""
    if isinstance(encoded, torch.Tensor):
        return encoded, None
    if _positional(encoded):
        if encoded and isinstance(encoded[0], torch.Tensor):
            second = encoded[1] if len(encoded) > 1 else None
            return encoded[0], second if isinstance(second, torch.Tensor) else None
    else:
        mean = _first_tensor(encoded, MEAN_NAMES)
        if mean is not None:
            logvar = _first_tensor(encoded, LOGVAR_NAMES)
            if logvar is None:
                std = _first_tensor(encoded, STD_NAMES)
                logvar = 2.0 * torch.log(std) if std is not None else None
            return mean, logvar
        if isinstance(encoded, tuple) and encoded and isinstance(encoded[0], torch.Tensor):
            return read_posterior(tuple(encoded))  # a namedtuple with other field names
    raise ModelContractError(
        f"encode(x) returned {type(encoded).__name__}; expected a tensor (the mean), a "
        f"(mean, logvar) tuple/list, or a dict/object with one of {', '.join(MEAN_NAMES)}"
    )


def read_image(decoded: Any) -> torch.Tensor:
    """The image tensor from what a decoder returned (rules: the module docstring)."""
    if isinstance(decoded, torch.Tensor):
        return decoded
    if _positional(decoded):
        if decoded and isinstance(decoded[0], torch.Tensor):
            return decoded[0]
    else:
        img = _first_tensor(decoded, IMAGE_NAMES)
        if img is not None:
            return img
    raise ModelContractError(
        f"decode(z) returned {type(decoded).__name__}; expected a tensor, a tuple/list led by "
        f"one, or a dict/object with one of {', '.join(IMAGE_NAMES)}"
    )


# --------------------------------------------------------------------------- image shape


def _int_tuple(v: Any) -> tuple[int, ...] | None:
    if (
        isinstance(v, torch.Size | tuple | list)
        and v
        and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in v)
    ):
        return tuple(int(d) for d in v)
    return None


def _shape_on(owner: Any) -> tuple[int, ...] | None:
    for attr in ("image_shape", "input_shape", "x_shape"):
        shape = _int_tuple(_field(owner, attr))
        if shape is not None:
            return shape
    size, chans = _field(owner, "img_size"), _field(owner, "in_channels")
    chans = chans if isinstance(chans, int) and not isinstance(chans, bool) else None
    if isinstance(size, int) and not isinstance(size, bool) and size > 0 and chans:
        return (chans, size, size)
    shape = _int_tuple(size)
    if shape is not None and len(shape) == 3:
        return shape
    if shape is not None and len(shape) == 2 and chans:
        return (chans, *shape)
    dim = _field(owner, "input_dim")
    if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0:
        return (dim,)
    return _int_tuple(dim)


def find_image_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The per-example input shape a model declares (names: the module docstring), or ``None``."""
    owners = [model, _field(model, "model_config")]
    owners += [m for m in (_field(model, "encoder"), _field(model, "_encoder")) if m is not None]
    for owner in owners:
        if owner is not None:
            shape = _shape_on(owner)
            if shape is not None:
                return shape
    return None


# --------------------------------------------------------------------------- adapters


@dataclass(frozen=True)
class Adapter:
    """How to run one family of models: what to call, how to read it, the output map.

    ``encode(model, x)`` / ``decode(model, z)`` call the model handed in (never a captured
    one); their results are read by :func:`read_posterior` / :func:`read_image`. ``output``:
    the map to image space (``"sigmoid"``, ``"identity"``, a callable or ``None``: the model's
    ``output_mean`` if any, else identity). ``image_shape(model)``: the input shape, or
    ``None`` for :func:`find_image_shape`.
    """

    name: str
    encode: EncodeFn
    decode: DecodeFn
    output: OutputSpec = None
    image_shape: Callable[[nn.Module], tuple[int, ...] | None] | None = None
    doc: str = ""


def _call_encode(m: nn.Module, x: torch.Tensor) -> Any:
    return m.encode(x)


def _call_decode(m: nn.Module, z: torch.Tensor) -> Any:
    return m.decode(z)


def _call_encoder(m: nn.Module, x: torch.Tensor) -> Any:
    return m.encoder(x)


def _call_decoder(m: nn.Module, z: torch.Tensor) -> Any:
    return m.decoder(z)


def _pytorch_vae_shape(m: nn.Module) -> tuple[int, ...] | None:
    first = next((c for c in m.modules() if isinstance(c, nn.Conv2d)), None)
    return (first.in_channels, 64, 64) if first is not None else None  # its nets are 64x64


ADAPTERS: dict[str, Adapter] = {}


def register_adapter(adapter: Adapter) -> Adapter:
    """Add (or replace) a named adapter in :data:`ADAPTERS`; returns it."""
    if not isinstance(adapter, Adapter):
        raise ArgumentError(f"adapter: expected an Adapter, got {type(adapter).__name__}")
    ADAPTERS[adapter.name] = adapter
    return adapter


register_adapter(Adapter(
    "pythae", _call_encoder, _call_decoder,
    image_shape=lambda m: _int_tuple(_field(_field(m, "model_config"), "input_dim")),
    doc="pythae models: encoder/decoder return ModelOutput (embedding, log_covariance, "
    "reconstruction); input_dim in model_config",
))  # fmt: skip
register_adapter(Adapter(
    "disent", lambda m, x: m.encode(x, chunk=True), _call_decode, output="sigmoid",
    image_shape=lambda m: _int_tuple(_field(m, "x_shape")),
    doc="disent AutoEncoder: encode(x, chunk=True) -> (mean, logvar); decode returns logits",
))  # fmt: skip
register_adapter(Adapter(
    "pytorch_vae", _call_encode, _call_decode, image_shape=_pytorch_vae_shape,
    doc="PyTorch-VAE (AntixK): encode -> [mu, log_var], decode -> image; 64x64 inputs",
))  # fmt: skip
register_adapter(Adapter(
    "disentangling_vae", _call_encoder, _call_decoder,
    image_shape=lambda m: _int_tuple(_field(m, "img_size")),
    doc="disentangling-vae (YannDubs): encoder -> (mu, logvar), decoder -> sigmoid image",
))  # fmt: skip


def _check_callable(argument: str, fn: Any, second: str) -> Any:
    if not callable(fn):
        raise ArgumentError(
            f"{argument}: expected a callable {argument}(model, {second}), got {type(fn).__name__}"
        )
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        raise ArgumentError(
            f"{argument}: expected a callable {argument}(model, {second}) taking the model "
            f"first, got one with signature {inspect.signature(fn)}"
        ) from None
    except ValueError:  # builtins without a signature: trust them
        pass
    return fn


def _auto(model: nn.Module, call: str, module: str) -> Callable[..., Any] | None:
    if callable(getattr(model, call, None)):
        return _call_encode if call == "encode" else _call_decode
    if isinstance(getattr(model, module, None), nn.Module):
        return _call_encoder if module == "encoder" else _call_decoder
    return None


def resolve_adapter(
    model: nn.Module,
    *,
    encode: EncodeFn | None = None,
    decode: DecodeFn | None = None,
    output: OutputSpec = None,
    adapter: str | Adapter | None = None,
) -> Adapter:
    """The :class:`Adapter` the lens uses on ``model``: explicit callables, else ``adapter``'s,
    else found automatically (the module docstring); raises :class:`ModelContractError` when
    there is nothing to call."""
    base: Adapter | None
    if adapter is None or isinstance(adapter, Adapter):
        base = adapter
    elif isinstance(adapter, str) and adapter in ADAPTERS:
        base = ADAPTERS[adapter]
    else:
        raise ArgumentError(
            f"adapter: expected one of {sorted(ADAPTERS)} or an Adapter, got {adapter!r}"
        )
    enc = _check_callable("encode", encode, "x") if encode is not None else None
    dec = _check_callable("decode", decode, "z") if decode is not None else None
    enc = enc or (base.encode if base else _auto(model, "encode", "encoder"))
    dec = dec or (base.decode if base else _auto(model, "decode", "decoder"))
    missing = [n for n, f in (("encode", enc), ("decode", dec)) if f is None]
    if missing:
        what = " and ".join(f"{n}() or an {n}r sub-module" for n in missing)
        raise ModelContractError(
            f"model {type(model).__name__} lacks {what}: pass "
            f"{'=..., '.join(missing)}=... callables taking the model first, or "
            f"adapter= one of {sorted(ADAPTERS)}"
        )
    name = base.name if base else "auto"
    if encode is not None or decode is not None:
        name = f"{name}+custom" if base else "custom"
    out = output if output is not None else (base.output if base else None)
    shape = base.image_shape if base else None
    doc = base.doc if base else ""
    return Adapter(name, enc, dec, output=out, image_shape=shape, doc=doc)
