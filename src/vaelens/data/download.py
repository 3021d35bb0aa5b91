"""Fetching and verifying the official dataset files.

Files land in the data cache: ``--root`` when given, else ``$VAELENS_DATA_DIR``, else
``~/.cache/vaelens`` (pooch's per-OS cache). Every file is checked against its MD5 when
one is known. Offline, :func:`download` raises :class:`DownloadError` with one line that
says which file could not be fetched and where to put it by hand.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from vaelens.data.registry import DatasetSpec, RemoteFile, get_spec
from vaelens.errors import DatasetError, DownloadError

__all__ = ["cache_dir", "dataset_dir", "download", "file_md5", "find_file", "verify"]

ENV_VAR = "VAELENS_DATA_DIR"


def cache_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The directory that holds dataset files: ``root``, ``$VAELENS_DATA_DIR`` or the OS cache."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("vaelens"))


def dataset_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir(root) / name``: where the files of dataset ``name`` live."""
    return cache_dir(root) / name


def find_file(name: str, filename: str, root: str | os.PathLike[str] | None = None) -> Path | None:
    """The path of ``filename`` under ``root`` or ``root/name``, or ``None`` if absent."""
    base = cache_dir(root)
    for candidate in (base / filename, base / name / filename):
        if candidate.is_file():
            return candidate
    return None


def file_md5(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """Hex MD5 of a file, read in chunks."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _fetch(remote: RemoteFile, dest_dir: Path) -> Path:
    import pooch

    if not remote.urls:
        where = remote.manual or "its authors' site"
        raise DownloadError(
            f"{remote.name}: has no direct download address; fetch it by hand from {where} "
            f"and place it in {dest_dir}"
        )
    known_hash = f"md5:{remote.md5}" if remote.md5 else None
    errors: list[str] = []
    for url in remote.urls:
        try:
            path = pooch.retrieve(
                url,
                known_hash=known_hash,
                fname=remote.name,
                path=dest_dir,
                progressbar=False,
            )
            return Path(path)
        except ValueError as exc:  # pooch: hash mismatch
            raise DownloadError(
                f"{remote.name}: checksum mismatch after download from {url} ({exc})"
            ) from None
        except Exception as exc:
            errors.append(f"{url}: {type(exc).__name__}")
    raise DownloadError(
        f"{remote.name}: could not download ({'; '.join(errors)}); are you offline? "
        f"Place the file by hand in {dest_dir}"
    )


def _selected(spec: DatasetSpec, variant: str | None) -> list[RemoteFile]:
    variants = sorted({f.variant for f in spec.files if f.variant is not None})
    if variant is not None and variant not in variants:
        raise DatasetError(
            f"variant: {spec.name} has variants {variants or '(none)'}, got {variant!r}"
        )
    return [f for f in spec.files if variant is None or f.variant in (None, variant)]


def download(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    variant: str | None = None,
) -> list[Path]:
    """Fetch the official files of dataset ``name`` into ``dataset_dir(name, root)``.

    ``variant`` restricts the download to one variant's files (e.g. MPI3D's ``"toy"``).
    Files already present with the right checksum are not fetched again.
    """
    spec: DatasetSpec = get_spec(name)
    if not spec.files:
        raise DatasetError(
            f"dataset {name}: has no files to download (it is generated procedurally)"
        )
    dest = dataset_dir(name, root)
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for remote in _selected(spec, variant):
        target = dest / remote.name
        if (
            target.is_file()
            and not force
            and (remote.md5 is None or file_md5(target) == remote.md5)
        ):
            paths.append(target)
            continue
        if target.is_file():
            target.unlink()
        paths.append(_fetch(remote, dest))
    return paths


def verify(
    name: str, root: str | os.PathLike[str] | None = None, *, variant: str | None = None
) -> dict[str, str]:
    """Check the files of dataset ``name``: ``{filename: "ok" | "missing" | "checksum mismatch ..."}``."""
    spec = get_spec(name)
    report: dict[str, str] = {}
    for remote in _selected(spec, variant):
        path = find_file(name, remote.name, root)
        if path is None:
            report[remote.name] = "missing"
        elif remote.md5 is None:
            report[remote.name] = "ok (no checksum known)"
        else:
            got = file_md5(path)
            report[remote.name] = (
                "ok"
                if got == remote.md5
                else f"checksum mismatch: expected {remote.md5}, got {got}"
            )
    return report
