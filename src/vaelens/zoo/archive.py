"""Reading one disentanglement_lib model (a zoo zip or its unpacked directory), safely.

A zoo zip is one run of ``dlib_reproduce``; what is read from it, relative to the run's
root (the zip's top folder, if any, e.g. ``0/``):

- ``model/tfhub/variables/variables.index`` and ``variables.data-0000i-of-0000N``: the
  trained weights (the TF Hub module's checkpoint);
- ``model/results/gin/train.gin``: the training configuration;
- ``model/results/json/train_results.json`` and
  ``metrics/<representation>/<metric>/results/json/evaluation_results.json``: the
  library's own results and scores.

Nothing else is touched and nothing is extracted: members are read into memory one by one
through :mod:`zipfile`, each capped in size (also while reading, in case the zip's header
lies), names validated (no absolute paths, ``..``, backslashes or control characters).
No code from the model is ever run (the TF Hub graph, ``saved_model.pb``, is not read).
A directory is read the same way, its files resolved inside it (no symlink escapes).
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from vaelens.errors import CheckpointError

__all__ = [
    "MAX_MEMBER_BYTES",
    "ModelFiles",
    "read_model",
    "validate_member_name",
]

#: largest member read (a dlib model's variables are ~3 MB; the cap leaves room)
MAX_MEMBER_BYTES = 256 * 1024 * 1024
#: largest text member (gin, JSON) read
MAX_TEXT_BYTES = 4 * 1024 * 1024

VARIABLES = "model/tfhub/variables/variables"
TRAIN_GIN = "model/results/gin/train.gin"
TRAIN_RESULTS = "model/results/json/train_results.json"
_SHARD = re.compile(r"^model/tfhub/variables/variables\.data-(\d{5})-of-(\d{5})$")
_SCORES = re.compile(r"^metrics/([\w.-]+)/([\w.-]+)/results/json/evaluation_results\.json$")
_BAD = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass
class ModelFiles:
    """The members of one model that vaelens reads, as bytes / text."""

    source: str
    index: bytes
    shards: dict[int, bytes]
    num_shards: int
    gin: str
    train_results: str | None = None
    #: ``"<representation>/<metric>" -> evaluation_results.json text``
    scores: dict[str, str] = field(default_factory=dict)

    def shard(self, i: int) -> bytes:
        """Shard ``i``'s bytes (for :class:`~vaelens.zoo.tfckpt.CheckpointReader`)."""
        if i not in self.shards:
            raise CheckpointError(
                f"{self.source}: missing {VARIABLES}.data-{i:05d}-of-{self.num_shards:05d} "
                "(expected every shard of the TF Hub module's variables)"
            )
        return self.shards[i]


def validate_member_name(name: str, source: str) -> PurePosixPath:
    """``name`` as a relative POSIX path, or :class:`CheckpointError` if it is unsafe."""
    p = PurePosixPath(name)
    if (
        not name
        or len(name) > 1024
        or _BAD.search(name)
        or p.is_absolute()
        or re.match(r"^[A-Za-z]:", name)
        or any(part == ".." for part in p.parts)
    ):
        raise CheckpointError(f"{source}: unsafe member name {name!r} (expected a relative path)")
    return p


def _root(names: Iterable[str], source: str) -> str:
    """The folder holding ``model/`` (``""`` or e.g. ``"0/"``), from the variables index."""
    roots = sorted(
        n[: -len(VARIABLES + ".index")] for n in names if n.endswith(VARIABLES + ".index")
    )
    roots = [r for r in roots if r == "" or r.endswith("/")]
    if not roots:
        raise CheckpointError(
            f"{source}: no {VARIABLES}.index (expected a disentanglement_lib model: "
            "a dlib_reproduce output zip or directory)"
        )
    if len(roots) > 1:
        raise CheckpointError(f"{source}: holds {len(roots)} models ({roots[:3]}); expected one")
    return roots[0]


def _wanted(rel: str) -> bool:
    return (
        rel in (VARIABLES + ".index", TRAIN_GIN, TRAIN_RESULTS)
        or _SHARD.match(rel) is not None
        or _SCORES.match(rel) is not None
    )


def _collect(source: str, items: dict[str, bytes]) -> ModelFiles:
    if TRAIN_GIN not in items:
        raise CheckpointError(f"{source}: no {TRAIN_GIN} (expected the model's gin config)")
    shards: dict[int, bytes] = {}
    counts = set()
    for rel, data in items.items():
        m = _SHARD.match(rel)
        if m:
            shards[int(m.group(1))] = data
            counts.add(int(m.group(2)))
    if len(counts) > 1:
        raise CheckpointError(f"{source}: variables shards disagree on their count {counts}")
    scores = {}
    for rel, data in items.items():
        m = _SCORES.match(rel)
        if m:
            scores[f"{m.group(1)}/{m.group(2)}"] = _text(data, rel, source)
    train = items.get(TRAIN_RESULTS)
    return ModelFiles(
        source=source,
        index=items[VARIABLES + ".index"],
        shards=shards,
        num_shards=counts.pop() if counts else 1,
        gin=_text(items[TRAIN_GIN], TRAIN_GIN, source),
        train_results=None if train is None else _text(train, TRAIN_RESULTS, source),
        scores=scores,
    )


def _text(data: bytes, rel: str, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CheckpointError(f"{source}: {rel} is not UTF-8 text") from None


def _cap(rel: str) -> int:
    return MAX_MEMBER_BYTES if rel.startswith("model/tfhub/") else MAX_TEXT_BYTES


def _read_zip(path: Path) -> ModelFiles:
    source = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{source}: not a readable zip ({exc}); truncated?") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        for info in infos:
            validate_member_name(info.filename, source)
        root = _root([i.filename for i in infos], source)
        items: dict[str, bytes] = {}
        for info in infos:
            if not info.filename.startswith(root):
                continue
            rel = info.filename[len(root) :]
            if not _wanted(rel):
                continue
            cap = _cap(rel)
            if info.file_size > cap:
                raise CheckpointError(
                    f"{source}: member {info.filename} is {info.file_size} bytes "
                    f"(expected at most {cap})"
                )
            try:
                with zf.open(info) as fh:
                    data = fh.read(cap + 1)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise CheckpointError(
                    f"{source}: cannot read member {info.filename} ({exc}); truncated?"
                ) from None
            if len(data) > cap:
                raise CheckpointError(f"{source}: member {info.filename} expands past {cap} bytes")
            items[rel] = data
    return _collect(source, items)


def _read_dir(path: Path) -> ModelFiles:
    source = str(path)
    base = path.resolve()
    names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    root = _root(names, source)
    items: dict[str, bytes] = {}
    for name in names:
        if not name.startswith(root) or not _wanted(name[len(root) :]):
            continue
        rel = name[len(root) :]
        file = (path / name).resolve()
        if not file.is_relative_to(base):
            raise CheckpointError(f"{source}: {name} points outside the model directory")
        size, cap = file.stat().st_size, _cap(rel)
        if size > cap:
            raise CheckpointError(f"{source}: {name} is {size} bytes (expected at most {cap})")
        items[rel] = file.read_bytes()
    return _collect(source, items)


def read_model(path: str | os.PathLike[str]) -> ModelFiles:
    """The needed files of the disentanglement_lib model at ``path`` (a zip or a directory)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return _read_dir(p)
    if p.is_file():
        return _read_zip(p)
    raise CheckpointError(f"{p}: no such file or directory (expected a model zip or directory)")
