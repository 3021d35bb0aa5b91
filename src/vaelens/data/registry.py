"""Registry of ground-truth datasets: build any of them by name.

Each dataset module declares a :class:`DatasetSpec` with a ``loader(source, root, **kwargs)``
and registers it here. ``source`` is ``"procedural"`` (rendered on the fly, no files),
``"file"`` (the official files under ``root``) or ``"auto"`` (files when present, else the
procedural renderer when the dataset has one).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vaelens.data.base import GroundTruthDataset, check_dataset
from vaelens.errors import DatasetError

__all__ = [
    "DatasetSpec",
    "check_source",
    "get_spec",
    "list_datasets",
    "load_dataset",
    "register_dataset",
]


@dataclass(frozen=True)
class RemoteFile:
    """One official file: its name, download URLs (first that works wins) and checksum."""

    name: str
    urls: tuple[str, ...]
    md5: str | None = None
    size_bytes: int | None = None
    #: the dataset variant this file belongs to (``None``: every variant needs it)
    variant: str | None = None
    #: where to get the file by hand when it has no direct download address
    manual: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """What the registry, the CLI and the docs know about a dataset."""

    name: str
    description: str
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    image_shape: tuple[int, int, int]
    loader: Callable[..., GroundTruthDataset]
    sources: tuple[str, ...] = ("file",)
    files: tuple[RemoteFile, ...] = ()
    factorial: bool = True
    interventions: str = "exact pairs: any factor changed, the others held (factorial grid)"
    variants: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_images(self) -> int:
        n = 1
        for s in self.factor_sizes:
            n *= s
        return n


_REGISTRY: dict[str, DatasetSpec] = {}
# Modules that register a dataset on import; loaded lazily on first use of the registry.
_BUILTIN_MODULES = (
    "vaelens.data.synthetic",
    "vaelens.data.dsprites",
    "vaelens.data.shapes3d",
    "vaelens.data.mpi3d",
    "vaelens.data.smallnorb",
    "vaelens.data.celeba",
)
_loaded = False


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add ``spec`` to the registry (a later registration of the same name replaces it)."""
    _REGISTRY[spec.name] = spec
    return spec


def _ensure_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a dataset module not written yet
            if exc.name != module:
                raise


def list_datasets() -> list[DatasetSpec]:
    """Every registered dataset's spec, in registration order."""
    _ensure_builtins()
    return list(_REGISTRY.values())


def get_spec(name: str) -> DatasetSpec:
    """The spec registered as ``name``; :class:`DatasetError` listing the known names otherwise."""
    _ensure_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise DatasetError(f"dataset: unknown name {name!r}; expected one of {known}") from None


def check_source(name: str, source: str) -> DatasetSpec:
    """The spec of dataset ``name`` if it can be loaded from ``source``, else DatasetError."""
    spec = get_spec(name)
    allowed = ("auto", *spec.sources)
    if source not in allowed:
        raise DatasetError(f"source: {name} supports {allowed}, got {source!r}")
    return spec


def load_dataset(
    name: str,
    source: str = "auto",
    root: str | Path | None = None,
    **kwargs: Any,
) -> GroundTruthDataset:
    """Build the dataset registered as ``name``.

    Parameters
    ----------
    name: registry name (``vaelens data list`` shows them).
    source: ``"auto"``, ``"procedural"`` or ``"file"``.
    root: directory holding the official files (default: the data cache, see
        :func:`vaelens.data.download.cache_dir`).
    kwargs: dataset-specific options (e.g. ``variant="toy"`` for MPI3D).
    """
    spec = check_source(name, source)
    ds = spec.loader(source=source, root=None if root is None else Path(root), **kwargs)
    return check_dataset(ds)
