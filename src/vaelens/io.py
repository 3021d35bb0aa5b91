"""File input and output beneath every package: atomic writes and config-file reading.

Atomic writes: a reader never sees a half-written file. Every writer goes through a
temporary file in the destination's directory, flushed and fsynced, then ``os.replace``-d
over the destination (atomic on POSIX and Windows).

Config files: :func:`read_config_file` turns a TOML, YAML or JSON file into a mapping and
:func:`format_validation_error` turns a pydantic :class:`~pydantic.ValidationError` into one
line; both name the file, so that ``vaelens train --config``, ``vaelens study --config`` and
every other reader report bad input the same way.

Imports from: errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import tomllib
import typing
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml
from pydantic import BaseModel, ValidationError

from vaelens.errors import ArgumentError, ConfigError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling path of ``path``; fsync it and rename it over ``path`` on success.

    For writers that need a file name rather than a file object (``np.lib.format.open_memmap``).
    The temporary file exists (empty) with the mode an ordinary ``open()`` would give; on an
    exception it is removed and ``path`` is left untouched.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    # mkstemp creates 0600; give the file the mode an ordinary open() would (0666 & ~umask)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ArgumentError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    with (
        atomic_path(path) as tmp,
        open(tmp, mode, encoding=None if "b" in mode else "utf-8") as fh,
    ):
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def to_jsonable(obj: Any) -> Any:
    """Convert numpy arrays/scalars and paths nested in ``obj`` to plain JSON types.

    Non-finite floats become ``None`` so that the output is strict JSON.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    """Serialise ``obj`` as strict JSON (NaN/Inf written as null) and write it atomically."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, default=_json_default)
    atomic_write_text(path, text + "\n")


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Save ``array`` in ``.npy`` format atomically (loadable with ``mmap_mode='r'``)."""
    with atomic_open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(array), allow_pickle=False)


# --------------------------------------------------------------------------- config files

#: file suffix -> format
SUFFIXES = {".toml": "toml", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error condensed to one line with its (1-based) line and column."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    detail = f"{problem} ({context})" if context else problem
    return f"YAML error at {where}{_one_line(detail)}"


def _parse(text: str, kind: str) -> Any:
    if kind == "toml":
        return tomllib.loads(text)
    if kind == "yaml":
        return yaml.safe_load(text)
    return json.loads(text)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a ``.toml``, ``.yaml``/``.yml`` or ``.json`` file.

    Raises :class:`ConfigError` (one line, starting with the path) for a missing file, an
    unknown suffix, bytes that are not UTF-8, a parse error (with its line and column) or a
    top level that is not a mapping. An empty YAML file reads as ``{}``.
    """
    p = Path(path)
    kind = SUFFIXES.get(p.suffix.lower())
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    if kind is None:
        raise ConfigError(f"{p}: expected a .toml, .yaml/.yml or .json file, got {p.suffix!r}")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{p}: cannot parse: not UTF-8 text (byte {exc.object[exc.start]:#04x} "
            f"at offset {exc.start})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read ({exc.strerror or exc})") from None
    try:
        data = _parse(text, kind)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: cannot parse: {_yaml_problem(exc)}") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: cannot parse: {kind.upper()} error: {_one_line(exc)}") from None
    if data is None and kind == "yaml":
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: expected a mapping of settings at the top level, got {type(data).__name__}"
        )
    return data


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``Model`` or ``Model | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _submodel(arg)
        if found is not None:
            return found
    return None


def _known_keys(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str] | None:
    """Field names of the (sub)model found by following ``loc`` from ``model``."""
    cls = model
    for part in loc:
        if cls is None or not isinstance(part, str) or part not in cls.model_fields:
            return None
        cls = _submodel(cls.model_fields[part].annotation)
    return list(cls.model_fields) if cls is not None else None


def _dotted(prefix: str, loc: tuple[Any, ...]) -> str:
    return ".".join([*([prefix] if prefix else []), *(str(x) for x in loc)])


def _describe(err: Any, path: str) -> str:
    msg = err["msg"].removeprefix("Value error, ")
    if not err["loc"]:
        return f"{path}: {msg}"
    return f"field {path!r}: {msg} (got {err.get('input')!r})"


def format_validation_error(
    exc: ValidationError,
    source: str,
    model: type[BaseModel] | None = None,
    *,
    prefix: str = "",
    hide: Collection[str] = (),
    also_known: Collection[str] = (),
) -> str:
    """One line for ``exc``: ``"SOURCE: unknown key 'a.b'; field 'c': ... (got ...); known keys: ..."``.

    Locations are dotted paths, under ``prefix`` when given (e.g. ``"train"`` for a
    section validated on its own). For unknown keys the keys known at that level are
    listed, found by following the path through ``model``'s fields; ``hide`` is left out
    of and ``also_known`` added to the top-level list.
    """
    parts: list[str] = []
    hints: dict[tuple[Any, ...], list[str]] = {}
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = _dotted(prefix, loc) or "(config)"
        if err["type"] != "extra_forbidden":
            parts.append(_describe(err, path))
            continue
        parts.append(f"unknown key {path!r}")
        known = _known_keys(model, loc[:-1])
        if known is not None:
            if not loc[:-1]:
                known = [k for k in known if k not in hide] + list(also_known)
            hints[loc[:-1]] = known
    for parent, known in hints.items():
        label = _dotted(prefix, parent)
        of = f" of {label!r}" if label and len(hints) > 1 else ""
        parts.append(f"known keys{of}: {', '.join(known)}")
    return f"{source}: " + "; ".join(parts)
