"""Checkpoints: safetensors for every tensor, a JSON sidecar for everything else.

A checkpoint of step ``s`` is two files in the run's ``checkpoints/`` folder:

``step_00000s.safetensors``
    ``model.<name>`` (the model's ``state_dict``), ``optim.<opt>.state.<param>.<key>``
    (optimiser state tensors, e.g. Adam's ``exp_avg``), ``rng.torch_cpu`` and
    ``rng.torch_cuda.<i>`` (uint8 RNG states).
``step_00000s.json``
    format version, step, epoch, the tensors file's size and SHA-256, each optimiser's
    ``param_groups`` and scalar state, the numpy and Python RNG states as lists, plus
    whatever the trainer adds (config, scheduler, data order, model name and hparams).

Both are written atomically (:mod:`vaelens.io`: temporary file + rename), tensors first
and the JSON last: the JSON is the commit marker, so a checkpoint without its JSON never
counts. Nothing is pickled. :func:`load_checkpoint` checks size and hash and raises
:class:`~vaelens.errors.CheckpointError` naming the file on truncation or mismatch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from torch import nn

from vaelens.errors import CheckpointError
from vaelens.io import atomic_write_bytes, atomic_write_json

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "capture_rng_state",
    "checkpoint_paths",
    "clean_partial",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "restore_model",
    "restore_optimizer",
    "restore_rng_state",
    "save_checkpoint",
    "weights_only",
    "write_checkpoint",
]

FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d+)\.json$")


@dataclass
class Checkpoint:
    """A loaded checkpoint: its JSON sidecar ``meta`` and its ``tensors`` (on the CPU)."""

    path: Path
    step: int
    meta: dict[str, Any]
    tensors: dict[str, torch.Tensor]

    def model_state(self) -> dict[str, torch.Tensor]:
        """The model's ``state_dict`` (keys without the ``model.`` prefix)."""
        return {k[6:]: v for k, v in self.tensors.items() if k.startswith("model.")}


def checkpoint_paths(directory: str | Path, step: int) -> tuple[Path, Path]:
    """``(tensors_path, json_path)`` of the checkpoint of ``step`` in ``directory``."""
    d = Path(directory)
    stem = f"step_{int(step):09d}"
    return d / f"{stem}.safetensors", d / f"{stem}.json"


# --------------------------------------------------------------------------- RNG


def capture_rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Torch (CPU and every CUDA device) RNG states as uint8 tensors; numpy/Python as lists."""
    tensors = {"rng.torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.torch_cuda.{i}"] = state
    name, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002 (the global state is saved)
    version, py_state, gauss = random.getstate()
    meta = {
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(py_state), gauss],
    }
    return tensors, meta


def restore_rng_state(ckpt: Checkpoint) -> None:
    """Set the torch, numpy and Python global RNGs to the states saved in ``ckpt``."""
    try:
        torch.set_rng_state(ckpt.tensors["rng.torch_cpu"])
        cuda = sorted(
            (int(k.rsplit(".", 1)[1]), v)
            for k, v in ckpt.tensors.items()
            if k.startswith("rng.torch_cuda.")
        )
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([v for _, v in cuda][: torch.cuda.device_count()])
        name, keys, pos, has_gauss, cached = ckpt.meta["rng"]["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))  # noqa: NPY002
        version, py_state, gauss = ckpt.meta["rng"]["python"]
        random.setstate((version, tuple(py_state), gauss))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {ckpt.path}: bad RNG state ({exc})") from None


# --------------------------------------------------------------------------- optimisers


def _flatten_optimizer(
    name: str, opt: torch.optim.Optimizer
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{name}.state.{pid}.{key}"] = value
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalar_state": scalars}


def restore_optimizer(ckpt: Checkpoint, name: str, optimizer: torch.optim.Optimizer) -> None:
    """Load optimiser ``name``'s state from ``ckpt`` into ``optimizer``."""
    info = ckpt.meta.get("optimizers", {}).get(name)
    if info is None:
        raise CheckpointError(f"checkpoint {ckpt.path}: no state for optimiser {name!r}")
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim.{name}.state."
    for key, value in ckpt.tensors.items():
        if key.startswith(prefix):
            pid, field = key[len(prefix) :].split(".", 1)
            state.setdefault(int(pid), {})[field] = value.clone()
    for pid, fields in info["scalar_state"].items():
        state.setdefault(int(pid), {}).update(fields)
    groups = []
    for g in info["param_groups"]:
        g = dict(g)
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint {ckpt.path}: optimiser {name!r} does not match ({exc})"
        ) from None
    # The saved tensors are contiguous; give each state tensor its parameter's memory layout
    # (channels-last weights): the fused Adam kernel needs matching strides to reproduce the
    # uninterrupted run bit for bit.
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            for key, value in st.items():
                if (
                    isinstance(value, torch.Tensor)
                    and value.shape == p.shape
                    and value.stride() != p.stride()
                ):
                    st[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def restore_model(ckpt: Checkpoint, model: nn.Module) -> None:
    """Load the model weights of ``ckpt`` into ``model`` (strict: same names and shapes)."""
    state = ckpt.model_state()
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        if wrong:
            k = wrong[0]
            parts.append(
                f"shape of {k}: saved {tuple(state[k].shape)}, model {tuple(own[k].shape)}"
            )
        raise CheckpointError(
            f"checkpoint {ckpt.path}: weights do not match the model: " + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- save / load


def save_checkpoint(
    directory: str | Path,
    step: int,
    *,
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write the checkpoint of ``step``: tensors first, then the JSON commit marker.

    ``meta`` (JSON-serialisable) is stored in the sidecar next to the optimisers' scalar
    state and the RNG states captured now. Returns the JSON path.
    """
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v
    opt_meta: dict[str, Any] = {}
    for name, opt in optimizers.items():
        t, m = _flatten_optimizer(name, opt)
        tensors.update(t)
        opt_meta[name] = m
    rng_tensors, rng_meta = capture_rng_state()
    tensors.update(rng_tensors)
    return write_checkpoint(
        directory, step, tensors, {**(meta or {}), "optimizers": opt_meta, "rng": rng_meta}
    )


def write_checkpoint(
    directory: str | Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Write ``tensors`` and the sidecar ``meta`` (which must hold ``optimizers`` and ``rng``)
    as the checkpoint of ``step``: tensors first, then the JSON commit marker (with the
    format version, step, and the tensors file's name, size and SHA-256). Returns the JSON
    path."""
    tensors_path, json_path = checkpoint_paths(directory, step)
    # safetensors refuses shared storage and wants contiguous CPU tensors
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    blob = safetensors.torch.save(
        tensors, metadata={"format": "vaelens-checkpoint", "step": str(int(step))}
    )
    atomic_write_bytes(tensors_path, blob)
    sidecar = {
        **meta,
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "tensors_file": tensors_path.name,
        "tensors_bytes": len(blob),
        "tensors_sha256": hashlib.sha256(blob).hexdigest(),
    }
    atomic_write_json(json_path, sidecar, indent=None)
    return json_path


def weights_only(ckpt: Checkpoint, directory: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``ckpt`` without its optimiser state into ``directory`` (same step): the model's
    tensors and the RNG states, the sidecar's fields updated by ``meta`` and with no
    optimisers. Such a checkpoint loads a model (:meth:`Run.load_model`) but cannot resume
    training. Returns the JSON path."""
    tensors = {k: v for k, v in ckpt.tensors.items() if not k.startswith("optim.")}
    kept = {k: v for k, v in ckpt.meta.items() if k not in _SIDECAR_FIELDS}
    return write_checkpoint(directory, ckpt.step, tensors, {**kept, **meta, "optimizers": {}})


#: the sidecar fields :func:`write_checkpoint` sets itself
_SIDECAR_FIELDS = frozenset(
    {"format_version", "step", "tensors_file", "tensors_bytes", "tensors_sha256", "optimizers"}
)


def _plain_tensors_file(json_path: Path, name: Any) -> str:
    """``name`` if it is a plain ``.safetensors`` file name (no directory part, no ``..``,
    no NUL), so that it names a file inside the checkpoint's own directory."""
    if (
        not isinstance(name, str)
        or not name.endswith(".safetensors")
        or name.startswith(".")
        or any(c in name for c in "/\\\0")
        or ".." in name
    ):
        raise CheckpointError(
            f"checkpoint {json_path}: field 'tensors_file' is {str(name)[:80]!r}, expected a "
            "plain file name '<name>.safetensors' in the checkpoint's directory"
        )
    return name


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint (its ``.json`` path or the ``.safetensors`` path).

    Raises :class:`CheckpointError` naming the file if either file is missing, unparsable,
    truncated or altered (size or SHA-256 differ from the sidecar), or if the sidecar's
    ``tensors_file`` is not a plain ``.safetensors`` file name in its own directory.
    """
    p = Path(path)
    json_path = p.with_suffix(".json")
    if not json_path.is_file():
        raise CheckpointError(f"checkpoint {json_path}: not found (no committed checkpoint there)")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint {json_path}: the JSON sidecar is not valid JSON ({exc})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {json_path}: expected format_version {FORMAT_VERSION}, "
            f"got {meta.get('format_version') if isinstance(meta, dict) else meta!r}"
        )
    for key in ("step", "tensors_file", "tensors_bytes", "tensors_sha256", "optimizers", "rng"):
        if key not in meta:
            raise CheckpointError(f"checkpoint {json_path}: the sidecar lacks the field {key!r}")
    tensors_path = json_path.parent / _plain_tensors_file(json_path, meta["tensors_file"])
    size = meta["tensors_bytes"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise CheckpointError(
            f"checkpoint {json_path}: field 'tensors_bytes' is {repr(size)[:40]}, expected a "
            "non-negative int"
        )
    try:
        actual = tensors_path.stat().st_size
        if actual != size:  # compared before reading: a stray huge file is never loaded
            raise CheckpointError(
                f"checkpoint {tensors_path}: truncated or altered: {actual} bytes, "
                f"the sidecar {json_path.name} records {size}"
            )
        blob = tensors_path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {tensors_path}: tensors file missing") from None
    except OSError as exc:
        raise CheckpointError(f"checkpoint {tensors_path}: cannot read ({exc})") from None
    if len(blob) != meta["tensors_bytes"]:
        raise CheckpointError(
            f"checkpoint {tensors_path}: truncated or altered: {len(blob)} bytes, "
            f"the sidecar {json_path.name} records {meta['tensors_bytes']}"
        )
    if hashlib.sha256(blob).hexdigest() != meta["tensors_sha256"]:
        raise CheckpointError(
            f"checkpoint {tensors_path}: SHA-256 differs from the sidecar {json_path.name}"
        )
    try:
        tensors = safetensors.torch.load(blob)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(
            f"checkpoint {tensors_path}: unreadable safetensors file ({exc})"
        ) from None
    return Checkpoint(path=json_path, step=int(meta["step"]), meta=meta, tensors=tensors)


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Committed checkpoints (JSON paths) in ``directory``, oldest step first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The committed checkpoint of the highest step in ``directory``, or ``None``."""
    found = list_checkpoints(directory)
    return found[-1] if found else None


def prune_checkpoints(directory: str | Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest checkpoints (JSON first); return the deleted JSONs."""
    found = list_checkpoints(directory)
    gone = found[: max(len(found) - int(keep), 0)]
    for json_path in gone:
        json_path.unlink(missing_ok=True)
        json_path.with_suffix(".safetensors").unlink(missing_ok=True)
    return gone


def clean_partial(directory: str | Path) -> list[Path]:
    """Remove leftovers of interrupted writes: temporary files and tensors without a sidecar."""
    d = Path(directory)
    removed: list[Path] = []
    if not d.is_dir():
        return removed
    for p in d.iterdir():
        orphan = p.suffix == ".safetensors" and not p.with_suffix(".json").exists()
        if (p.name.startswith(".") and p.name.endswith(".tmp")) or orphan:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed
