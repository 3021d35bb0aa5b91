"""Fetching disentanglement_lib's pretrained models (unsupervised_study_v1).

disentanglement_lib's README documents 10,800 trained models, model numbers 0..10799 (the
study's 12,600 less the Shapes3D ones), each one zip at
``https://storage.googleapis.com/disentanglement_lib/unsupervised_study_v1/<n>.zip``.
:func:`download_model` stores it as ``<cache>/zoo/unsupervised_study_v1/<n>.zip`` (the data
cache of :func:`vaelens.data.download.cache_dir`: ``--root``, ``$VAELENS_DATA_DIR`` or
``~/.cache/vaelens``). No checksum is published, so none is checked; the zip is read
member by member later (:mod:`vaelens.zoo.archive`). Offline, one
:class:`~vaelens.errors.DownloadError` line says which address failed and where to put the
zip by hand.
"""

from __future__ import annotations

import os
from pathlib import Path

from vaelens.data.download import cache_dir
from vaelens.errors import ConfigError, DownloadError

__all__ = ["N_MODELS", "STUDY", "ZOO_URL", "download_model", "model_path", "model_url"]

STUDY = "unsupervised_study_v1"
#: number of published models: numbers 0 .. N_MODELS - 1
N_MODELS = 10_800
ZOO_URL = "https://storage.googleapis.com/disentanglement_lib/{study}/{n}.zip"


def _check_number(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < N_MODELS:
        raise ConfigError(
            f"model number: expected an integer in 0..{N_MODELS - 1} "
            f"(disentanglement_lib's {STUDY}), got {n!r}"
        )
    return n


def model_url(n: int) -> str:
    """The download address of model ``n`` of unsupervised_study_v1."""
    return ZOO_URL.format(study=STUDY, n=_check_number(n))


def model_path(n: int, root: str | os.PathLike[str] | None = None) -> Path:
    """Where :func:`download_model` puts model ``n``'s zip."""
    return cache_dir(root) / "zoo" / STUDY / f"{_check_number(n)}.zip"


def download_model(
    n: int, root: str | os.PathLike[str] | None = None, *, force: bool = False
) -> Path:
    """Fetch model ``n``'s zip into the cache (kept if already there) and return its path."""
    dest = model_path(n, root)
    if dest.is_file() and not force:
        return dest
    url = model_url(n)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    import pooch

    try:
        path = pooch.retrieve(
            url, known_hash=None, fname=dest.name, path=dest.parent, progressbar=False
        )
    except Exception as exc:
        raise DownloadError(
            f"{url}: could not download ({type(exc).__name__}); are you offline? "
            f"Fetch it by hand and place it at {dest} (or pass the zip's path)"
        ) from None
    return Path(path)
