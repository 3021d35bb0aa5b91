"""CelebA (Liu et al., 2015): 202,599 aligned face photographs with 40 binary attributes.

Files (distributed by the authors on Google Drive only; download them by hand):

- ``img_align_celeba/000001.jpg .. 202599.jpg`` (178x218 JPEG), or the zip
  ``img_align_celeba.zip`` holding that folder;
- ``list_attr_celeba.txt``: line 1 the image count, line 2 the 40 attribute names, then
  one row a image, ``000001.jpg -1  1 ...`` (uneven spacing: split on whitespace),
  values -1 / 1;
- ``list_eval_partition.txt``: ``000001.jpg 0`` with 0 train, 1 valid, 2 test.

The files are untrusted input: every image name in the text files must be a plain file
name (no ``/`` or ``\\``, no ``..``, no NUL), only zip members ``img_align_celeba/<name>``
are read (a member whose name escapes the archive is refused), and a text file over
:data:`MAX_TEXT_BYTES` is refused before it is read.

Images are cut to 64x64 the usual way: a centre crop of 148x148, then a resize to 64x64
with PIL's antialiased bilinear filter (as ``CenterCrop(148), Resize(64)`` in torchvision).
The preprocessed uint8 images are cached once as ``celeba_crop148_64.npy`` and
memory-mapped afterwards.

CelebA is **not** a factorial grid: its attributes are observed labels, most
combinations have no image, and attributes are correlated. Here the 40 attributes are
exposed as observed binary factors (``factor_sizes = (2,) * 40``, level 0 = -1, level 1
= +1). An input intervention on attribute ``k`` is approximated by a *matched pair of
real images* (:meth:`CelebA.intervention_pairs`): images that differ in ``k`` and
agree on as many of the other 39 attributes as possible (nearest Hamming distance).
Such pairs are confounded by whatever the other attributes and identity do not hold
fixed; :meth:`CelebA.mean_other_differences` reports how many other attributes differ
on average.
"""

from __future__ import annotations

import contextlib
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from vaelens.data.base import validate_factors
from vaelens.data.download import cache_dir, find_file
from vaelens.data.registry import DatasetSpec, RemoteFile, register_dataset
from vaelens.errors import DatasetError
from vaelens.io import atomic_path

__all__ = [
    "CELEBA_ATTRIBUTES",
    "CelebA",
    "load_celeba",
    "manual_download_message",
    "preprocess_face",
    "read_attr_file",
    "read_partition_file",
]

log = logging.getLogger(__name__)

CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)
_N_ATTR = len(CELEBA_ATTRIBUTES)
_SPLITS = {"train": 0, "valid": 1, "test": 2}
_INTERVENTIONS = (
    "matched pairs of real images (attribute k flipped, others matched by nearest Hamming distance)"
)
_MANUAL = "the authors' Google Drive (https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html)"
_FILES = (
    RemoteFile(
        name="img_align_celeba.zip", urls=(), md5="00d2c5bc6d35e252742224ab0c1e8fcb", manual=_MANUAL
    ),
    RemoteFile(
        name="list_attr_celeba.txt", urls=(), md5="75e246fa4810816ffd6ee81facbd244c", manual=_MANUAL
    ),
    RemoteFile(
        name="list_eval_partition.txt",
        urls=(),
        md5="d32c9cbf5e040fd4025c592c306e6668",
        manual=_MANUAL,
    ),
)


def manual_download_message(root: str | os.PathLike[str] | None = None) -> str:
    """Where to put the CelebA files by hand (they have no direct public URL)."""
    dest = cache_dir(root) / "celeba"
    names = ", ".join(f.name for f in _FILES)
    return (
        f"CelebA is distributed from Google Drive by its authors "
        f"(https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html): download {names} by hand and "
        f"place them in {dest} (the zip may be extracted there as img_align_celeba/)"
    )


# --------------------------------------------------------------------------- text files

#: largest text file read (bytes): the official list_attr_celeba.txt is 26.7 MB and
#: list_eval_partition.txt 2.8 MB; a bigger file is refused before it is read
MAX_TEXT_BYTES = 64 << 20


def _lines(path: Path) -> list[str]:
    try:
        size = path.stat().st_size
        if size > MAX_TEXT_BYTES:
            raise DatasetError(
                f"{path}: {size} bytes, over the {MAX_TEXT_BYTES}-byte limit of a CelebA text file"
            )
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None


def _name_problem(name: str) -> str | None:
    """Why ``name`` is not a plain image file name (``None`` when it is one).

    A plain name has no path separator (``/`` or ``\\``), no ``..``, no NUL and is not
    empty: it names a file directly inside the image folder (or the zip's folder).
    """
    if not name:
        return "is empty"
    if "/" in name or "\\" in name:
        return "has a path separator"
    if ".." in name:
        return "has '..'"
    if "\0" in name:
        return "has a NUL character"
    if name == ".":
        return "is '.'"
    return None


def _all_plain(names: list[str]) -> bool:
    """Whether every name is plain (see :func:`_name_problem`), in one pass over their text."""
    joined = "\n".join(names)
    return not any(bad in joined for bad in ("/", "\\", "..", "\0")) and all(
        n and n != "." for n in names
    )


def _check_name(path: Path, lineno: int, name: str) -> None:
    problem = _name_problem(name)
    if problem is not None:
        raise DatasetError(
            f"{path}, line {lineno}: image name {name[:80]!r} {problem}; expected a plain file "
            "name such as '000001.jpg'"
        )


def read_attr_file(path: str | os.PathLike[str]) -> tuple[list[str], tuple[str, ...], np.ndarray]:
    """Parse ``list_attr_celeba.txt`` -> ``(filenames, attribute_names, values)``.

    ``values`` is ``(N, 40)`` int8 with entries -1 / +1, rows in file order. The count on
    line 1 must equal the number of rows, line 2 must hold 40 names, every row a file
    name and 40 values. Each violation raises :class:`DatasetError` naming the file and
    line number.
    """
    p = Path(path)
    lines = _lines(p)
    if len(lines) < 2:
        raise DatasetError(
            f"{p}: expected a count line and an attribute-name line, got {len(lines)} lines"
        )
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DatasetError(
            f"{p}, line 1: expected the image count, got {lines[0][:40]!r}"
        ) from None
    names = tuple(lines[1].split())
    if len(names) != _N_ATTR:
        raise DatasetError(f"{p}, line 2: expected {_N_ATTR} attribute names, got {len(names)}")
    fast = _fast_rows(p)
    if fast is not None and not _all_plain(fast[0]):
        fast = None  # _checked_rows names the line of the bad image name
    filenames, values_arr = fast if fast is not None else _checked_rows(p, lines, names)
    if len(filenames) != count:
        raise DatasetError(
            f"{p}: line 1 gives {count} images, but the file has {len(filenames)} rows"
        )
    if len(set(filenames)) != len(filenames):
        raise DatasetError(f"{p}: an image file name is listed twice")
    return filenames, names, values_arr


def _fast_rows(path: Path) -> tuple[list[str], np.ndarray] | None:
    """The rows of a well-formed attribute file via pandas' C parser; ``None`` at any doubt.

    ``None`` sends the caller to :func:`_checked_rows`, which reports the exact line.
    """
    import pandas as pd

    try:
        df = pd.read_csv(path, sep=r"\s+", skiprows=2, header=None, dtype={0: str}, engine="c")
    except Exception:
        return None
    if df.shape[1] != _N_ATTR + 1:
        return None
    values = df.iloc[:, 1:].to_numpy()
    if values.dtype.kind not in "iu" or not np.isin(values, (-1, 1)).all():
        return None
    return df.iloc[:, 0].tolist(), values.astype(np.int8)


def _checked_rows(
    path: Path, lines: list[str], names: tuple[str, ...]
) -> tuple[list[str], np.ndarray]:
    """Parse the rows token by token, raising :class:`DatasetError` at the first bad line."""
    filenames: list[str] = []
    flat: list[str] = []
    allowed = {"1", "-1"}
    for lineno, line in enumerate(lines[2:], start=3):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != _N_ATTR + 1:
            raise DatasetError(
                f"{path}, line {lineno}: expected {_N_ATTR + 1} columns (file name and {_N_ATTR} "
                f"values), got {len(tokens)}"
            )
        values = tokens[1:]
        if not allowed.issuperset(values):
            j = next(i for i, v in enumerate(values) if v not in allowed)
            raise DatasetError(
                f"{path}, line {lineno}: attribute {names[j]} is {values[j]!r}, expected -1 or 1"
            )
        _check_name(path, lineno, tokens[0])
        filenames.append(tokens[0])
        flat.extend(values)
    return filenames, np.where(np.asarray(flat) == "1", 1, -1).astype(np.int8).reshape(-1, _N_ATTR)


def read_partition_file(path: str | os.PathLike[str]) -> dict[str, int]:
    """Parse ``list_eval_partition.txt`` -> ``{filename: 0 train | 1 valid | 2 test}``.

    Raises :class:`DatasetError` naming the file and line of a malformed row (a file name
    that is not a plain name included).
    """
    p = Path(path)
    out: dict[str, int] = {}
    for lineno, line in enumerate(_lines(p), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != 2 or tokens[1] not in ("0", "1", "2"):
            raise DatasetError(
                f"{p}, line {lineno}: expected '<file name> <0|1|2>', got {line.strip()[:60]!r}"
            )
        _check_name(p, lineno, tokens[0])
        out[tokens[0]] = int(tokens[1])
    return out


# --------------------------------------------------------------------------- images


def preprocess_face(image: object, crop: int | None = 148, size: int = 64) -> np.ndarray:
    """Centre-crop a PIL image to ``crop`` x ``crop`` and resize it to ``size`` x ``size``.

    The crop box starts at ``(round((W - crop) / 2), round((H - crop) / 2))`` (torchvision's
    ``CenterCrop``); the resize is PIL bilinear, which antialiases when shrinking. Returns
    uint8 ``(size, size, 3)``. ``crop=None`` skips the crop.
    """
    from PIL import Image

    img = image.convert("RGB")  # type: ignore[attr-defined]
    w, h = img.size
    if crop is not None:
        if crop > w or crop > h:
            raise DatasetError(f"crop: {crop} is larger than the image ({w}x{h})")
        left, top = round((w - crop) / 2), round((h - crop) / 2)
        img = img.crop((left, top, left + crop, top + crop))
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


_ZIP_FOLDER = "img_align_celeba"


def _zip_members(archive: Path, names: list[str]) -> dict[str, str]:
    """``{image name: member}`` of the members ``img_align_celeba/<plain name>`` of the zip.

    Other members (the folder entry, ``__MACOSX/`` leftovers) are ignored; a member whose
    name escapes the archive (absolute, a drive, a backslash, a ``..`` part) or a name
    listed twice is refused with :class:`DatasetError` naming the archive and the member.
    """
    out: dict[str, str] = {}
    for member in names:
        parts = member.split("/")
        if (
            member.startswith("/")
            or "\\" in member
            or ".." in parts
            or (len(member) > 1 and member[1] == ":")
        ):
            raise DatasetError(
                f"{archive}: member {member[:80]!r} escapes the archive (absolute path, "
                f"backslash or '..'); expected members {_ZIP_FOLDER}/<file name>"
            )
        if len(parts) != 2 or parts[0] != _ZIP_FOLDER or _name_problem(parts[1]) is not None:
            continue
        if parts[1] in out:
            raise DatasetError(f"{archive}: member {member[:80]!r} is listed twice")
        out[parts[1]] = member
    return out


class _FaceFiles:
    """The JPEGs, from an ``img_align_celeba/`` folder or an ``img_align_celeba.zip``."""

    def __init__(self, folder: Path | None, archive: Path | None) -> None:
        self.folder = folder
        self.archive = archive
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}

    def __enter__(self) -> _FaceFiles:
        if self.folder is None and self.archive is not None:
            try:
                self._zip = zipfile.ZipFile(self.archive)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DatasetError(f"{self.archive}: not a readable zip archive ({exc})") from None
            try:
                self._members = _zip_members(self.archive, self._zip.namelist())
            except DatasetError:
                self._zip.close()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._zip is not None:
            self._zip.close()

    def load(self, filename: str, crop: int | None, size: int) -> np.ndarray:
        from PIL import Image

        if self._zip is not None:
            where = f"{self.archive}:{self._members.get(filename, filename)}"
            if filename not in self._members:
                raise DatasetError(
                    f"{where}: image listed in list_attr_celeba.txt is missing from the zip"
                )
            opener = self._zip.open(self._members[filename])
        else:
            assert self.folder is not None
            path = self.folder / filename
            where = str(path)
            if not path.is_file():
                raise DatasetError(f"{where}: image listed in list_attr_celeba.txt is missing")
            opener = open(path, "rb")  # noqa: SIM115 (closed just below)
        try:
            with opener as fh, Image.open(fh) as img:
                img.load()
                return preprocess_face(img, crop, size)
        except DatasetError as exc:
            raise DatasetError(f"{where}: {exc}") from None
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DatasetError(f"{where}: corrupt or unreadable image ({exc})") from None


def _build_cache(
    npy: Path, filenames: list[str], faces: _FaceFiles, crop: int | None, size: int
) -> None:
    """Preprocess every image into ``npy`` (written to a temporary file, then renamed)."""
    with atomic_path(npy) as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(filenames), size, size, 3)
        )
        with faces:
            for i, name in enumerate(filenames):
                out[i] = faces.load(name, crop, size)
                if i and i % 20000 == 0:
                    log.info("celeba: preprocessed %d / %d images", i, len(filenames))
        out.flush()
        del out


# --------------------------------------------------------------------------- the dataset


def _weighted_choice(weight: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per row of non-negative ``weight`` ``(R, C)`` (each row with a positive sum), one
    column drawn with probability proportional to its weight."""
    cum = np.cumsum(weight, axis=1)
    u = rng.random(weight.shape[0]) * cum[:, -1]
    return (cum <= u[:, None]).sum(axis=1)


class CelebA:
    """CelebA faces with their 40 attributes as observed binary factors.

    ``array`` is the ``(M, S, S, 3)`` uint8 cache (every row of the attribute file) and
    ``rows`` ``(N,)`` the rows of the loaded split; ``attributes`` ``(N, 40)`` holds level
    indices (0 for -1, 1 for +1) and ``filenames`` the JPEG names. ``factor_values[f]`` is
    ``[-1, 1]``.

    :meth:`images` returns, for each requested attribute row, a real image with exactly
    those attributes (``match_rule="first"``: the first such image in file order;
    ``"random"``: uniform among them from the dataset's own generator, ``seed``), and
    raises :class:`DatasetError` when no image has them.
    """

    name = "celeba"
    factorial = False
    interventions = _INTERVENTIONS

    def __init__(
        self,
        array: np.ndarray,
        attributes: np.ndarray,
        filenames: list[str],
        *,
        rows: np.ndarray | None = None,
        attribute_names: tuple[str, ...] = CELEBA_ATTRIBUTES,
        partition: np.ndarray | None = None,
        match_rule: str = "first",
        seed: int = 0,
        source: str = "file",
    ) -> None:
        if array.ndim != 4 or array.shape[3] != 3 or array.dtype != np.uint8:
            raise DatasetError(
                f"celeba: images must be uint8 (M, S, S, 3), got {array.dtype} {array.shape}"
            )
        self.factor_names = tuple(attribute_names)
        if not 1 <= len(self.factor_names) <= 63:
            raise DatasetError(
                f"attribute_names: expected 1..63 names, got {len(self.factor_names)}"
            )
        self.factor_sizes = (2,) * len(self.factor_names)
        attrs = validate_factors(attributes, self.factor_sizes, argument="attributes")
        n = attrs.shape[0]
        self.rows = (
            np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
        )
        if n == 0:
            raise DatasetError("celeba: no images in the selected split")
        if self.rows.shape != (n,) or len(filenames) != n or self.rows.max() >= array.shape[0]:
            raise DatasetError(
                f"celeba: {n} attribute rows but {len(filenames)} file names, rows {self.rows.shape} "
                f"into {array.shape[0]} images"
            )
        if match_rule not in ("first", "random"):
            raise DatasetError(f"match_rule: expected 'first' or 'random', got {match_rule!r}")
        self.array = array
        self.attributes = attrs
        self.filenames = list(filenames)
        self.partition = partition
        self.match_rule = match_rule
        self.source = source
        self._rng = np.random.default_rng(seed)
        self.factor_values = [np.array([-1, 1]) for _ in self.factor_names]
        self.image_shape = (3, int(array.shape[1]), int(array.shape[2]))
        self._weights = np.left_shift(
            np.uint64(1), np.arange(len(self.factor_names), dtype=np.uint64)
        )
        self._keys = self._pack(attrs)
        self._order = np.argsort(self._keys, kind="stable")
        self._sorted_keys = self._keys[self._order]
        self._uniq, self._counts = np.unique(self._keys, return_counts=True)

    def _pack(self, attrs: np.ndarray) -> np.ndarray:
        """Attribute rows ``(N, F)`` of 0/1 -> one uint64 key a row (bit ``f`` = attribute ``f``)."""
        return (attrs.astype(np.uint64) * self._weights[None, :]).sum(axis=1, dtype=np.uint64)

    def __len__(self) -> int:
        return int(self.attributes.shape[0])

    # ------------------------------------------------------------------ images

    def index_of(self, factors: np.ndarray) -> np.ndarray:
        """Indices ``(N,)`` (into this split) of real images with exactly these attributes."""
        arr = validate_factors(factors, self.factor_sizes)
        key = self._pack(arr)
        lo = np.searchsorted(self._sorted_keys, key, side="left")
        hi = np.searchsorted(self._sorted_keys, key, side="right")
        missing = hi == lo
        if missing.any():
            row = int(np.argmax(missing))
            on = [self.factor_names[f] for f in np.flatnonzero(arr[row])]
            raise DatasetError(
                f"factors: row {row} (attributes set: {on or 'none'}) matches no CelebA image in "
                "the loaded split; CelebA is not a factorial grid"
            )
        if self.match_rule == "random":
            lo = lo + self._rng.integers(0, hi - lo)
        return self._order[lo]

    def uint8_at(self, index: np.ndarray) -> np.ndarray:
        """Raw uint8 images ``(N, 3, S, S)`` at indices into this split (sorted reads)."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise DatasetError(f"index: expected values in [0, {len(self) - 1}]")
        rows = self.rows[idx]
        order = np.argsort(rows, kind="stable")
        out = np.empty((idx.size, *self.array.shape[1:]), dtype=np.uint8)
        out[order] = self.array[rows[order]]
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))

    def images(self, factors: np.ndarray) -> np.ndarray:
        """Attribute rows ``(N, 40)`` -> float32 images ``(N, 3, S, S)`` in ``[0, 1]``."""
        return self.uint8_at(self.index_of(factors)).astype(np.float32) / np.float32(255)

    def sample_indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` image indices drawn uniformly over the split."""
        if not isinstance(n, int | np.integer) or n < 0:
            raise DatasetError(f"n: expected a non-negative int, got {n!r}")
        return rng.integers(0, len(self), size=int(n))

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Attribute rows ``(n, 40)`` of ``n`` real images drawn uniformly (the empirical law)."""
        return self.attributes[self.sample_indices(n, rng)].copy()

    # ------------------------------------------------------------------ matched pairs

    def _factor(self, factor: int | str) -> int:
        if isinstance(factor, str):
            if factor not in self.factor_names:
                raise DatasetError(f"factor: {factor!r} is not a CelebA attribute")
            return self.factor_names.index(factor)
        k = int(factor)
        if not 0 <= k < len(self.factor_names):
            raise DatasetError(
                f"factor: expected an index in [0, {len(self.factor_names) - 1}], got {factor}"
            )
        return k

    def intervention_pair_indices(
        self, factor: int | str, n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` matched pairs of image indices ``(base, changed)`` for attribute ``factor``.

        ``base`` is drawn uniformly over the split. ``changed`` is a real image whose
        attribute ``k`` differs from the base's and whose other attributes are nearest in
        Hamming distance ``d = sum_{f != k} [a_f(base) != a_f(changed)]``; ties are broken
        uniformly at random over the images at that distance. Raises :class:`DatasetError`
        when attribute ``k`` takes a single value in the split.
        """
        k = self._factor(factor)
        base = self.sample_indices(n, rng)
        bit = np.uint64(1) << np.uint64(k)
        if np.all((self._uniq & bit) == (self._uniq[0] & bit)):
            raise DatasetError(
                f"factor: attribute {self.factor_names[k]} has one value in every loaded image; "
                "no matched pair can change it"
            )
        uniq, counts = self._uniq, self._counts
        target = self._keys[base] ^ bit  # the base with attribute k flipped
        chosen = np.empty(base.size, dtype=np.uint64)
        todo = np.arange(base.size)
        # 1) exact probes at distance 0, 1, 2: flip 0, 1 or 2 of the other attributes
        flips = [np.uint64(1) << np.uint64(f) for f in range(len(self.factor_names)) if f != k]
        levels = (
            np.zeros(1, dtype=np.uint64),
            np.array(flips, dtype=np.uint64),
            np.array([a | b for i, a in enumerate(flips) for b in flips[i + 1 :]], dtype=np.uint64),
        )
        for masks in levels:
            step = max(1, 2_000_000 // masks.size)
            left = []
            for s in range(0, todo.size, step):
                rows = todo[s : s + step]
                cand = target[rows][:, None] ^ masks[None, :]
                pos = np.minimum(np.searchsorted(uniq, cand), uniq.size - 1)
                weight = np.where(uniq[pos] == cand, counts[pos], 0)
                hit = weight.sum(axis=1) > 0
                col = _weighted_choice(weight[hit], rng)
                chosen[rows[hit]] = cand[hit, col]
                left.append(rows[~hit])
            todo = np.concatenate(left) if left else todo
        # 2) the rest (3 or more others differ): brute force over every distinct key
        other = np.uint64((1 << len(self.factor_names)) - 1) ^ bit
        flipped = (uniq & bit) != 0
        step = max(1, 4_000_000 // uniq.size)
        for s in range(0, todo.size, step):
            rows = todo[s : s + step]
            dist = np.bitwise_count((target[rows][:, None] ^ uniq[None, :]) & other).astype(
                np.int32
            )
            dist[flipped[None, :] != ((target[rows] & bit) != 0)[:, None]] = np.iinfo(np.int32).max
            weight = np.where(dist == dist.min(axis=1, keepdims=True), counts[None, :], 0)
            chosen[rows] = uniq[_weighted_choice(weight, rng)]
        # 3) one image uniformly among those with the chosen key
        lo = np.searchsorted(self._sorted_keys, chosen, side="left")
        hi = np.searchsorted(self._sorted_keys, chosen, side="right")
        return base, self._order[lo + rng.integers(0, hi - lo)]

    def intervention_pairs(
        self, factor: int | str, n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Attribute rows ``(base, changed)``, each ``(n, 40)``, of matched real-image pairs.

        See :meth:`intervention_pair_indices`; ``changed`` differs from ``base`` in
        attribute ``factor`` and, where no perfect match exists, in a few others too.
        """
        b, c = self.intervention_pair_indices(factor, n, rng)
        return self.attributes[b].copy(), self.attributes[c].copy()

    def other_differences(
        self, base: np.ndarray, changed: np.ndarray, factor: int | str
    ) -> np.ndarray:
        """Per pair, the number of attributes other than ``factor`` on which rows differ."""
        k = self._factor(factor)
        b = validate_factors(base, self.factor_sizes, argument="base")
        c = validate_factors(changed, self.factor_sizes, argument="changed")
        if b.shape != c.shape:
            raise DatasetError(f"changed: expected shape {b.shape} like base, got {c.shape}")
        diff = b != c
        diff[:, k] = False
        return diff.sum(axis=1)

    def mean_other_differences(self, factor: int | str, n: int = 1000, seed: int = 0) -> float:
        """Mean number of *other* attributes that differ in matched pairs for ``factor``.

        0 means every pair changes attribute ``factor`` alone (as far as the labels see);
        larger values measure the confounding of the CelebA "intervention".
        """
        base, changed = self.intervention_pairs(factor, n, np.random.default_rng(seed))
        return float(self.other_differences(base, changed, factor).mean())

    def __repr__(self) -> str:
        return (
            f"CelebA(n={len(self)}, image_shape={self.image_shape}, match_rule={self.match_rule!r})"
        )


# --------------------------------------------------------------------------- loader


def _find_text(filename: str, folder: str, root: str | os.PathLike[str] | None) -> Path | None:
    path = find_file("celeba", filename, root)
    if path is None:
        base = cache_dir(root)
        for cand in (base / folder / filename, base / "celeba" / folder / filename):
            if cand.is_file():
                return cand
    return path


def _find_images(root: str | os.PathLike[str] | None) -> tuple[Path | None, Path | None]:
    base = cache_dir(root)
    for cand in (base / "img_align_celeba", base / "celeba" / "img_align_celeba"):
        if cand.is_dir():
            return cand, None
    return None, find_file("celeba", "img_align_celeba.zip", root)


def _check_load_args(source: str, split: str, image_size: object, crop: object) -> None:
    if source not in ("file", "auto"):
        raise DatasetError(
            f"source: celeba is read from files only ('file' or 'auto'), got {source!r}"
        )
    if split != "all" and split not in _SPLITS:
        raise DatasetError(f"split: expected 'all' or one of {tuple(_SPLITS)}, got {split!r}")
    if not isinstance(image_size, int | np.integer) or image_size < 1:
        raise DatasetError(f"image_size: expected a positive int, got {image_size!r}")
    if crop is not None and (not isinstance(crop, int | np.integer) or crop < 1):
        raise DatasetError(f"crop: expected a positive int or None, got {crop!r}")


def _load_partition(
    filenames: list[str], split: str, root: str | os.PathLike[str] | None
) -> np.ndarray | None:
    """Each image's partition (0 train, 1 valid, 2 test), or None without the partition file."""
    part_path = _find_text("list_eval_partition.txt", "Eval", root)
    if part_path is None:
        if split != "all":
            raise DatasetError(
                f"celeba: split={split!r} needs list_eval_partition.txt. "
                f"{manual_download_message(root)}"
            )
        return None
    table = read_partition_file(part_path)
    missing = [f for f in filenames if f not in table]
    if missing:
        raise DatasetError(
            f"{part_path}: has no row for {missing[0]} (and {len(missing) - 1} more)"
        )
    return np.array([table[f] for f in filenames], dtype=np.int8)


def _cached_faces(npy: Path, attr_path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """The memory-mapped cache ``npy`` if it is readable, no older than the attribute file
    and of ``shape`` in uint8; else None."""
    array = None
    if npy.is_file() and npy.stat().st_mtime >= attr_path.stat().st_mtime:
        with contextlib.suppress(ValueError, OSError):
            array = np.load(npy, mmap_mode="r", allow_pickle=False)
        if array is not None and (array.shape != shape or array.dtype != np.uint8):
            array = None
    return array


def _load_faces(
    npy: Path,
    attr_path: Path,
    filenames: list[str],
    crop: int | None,
    image_size: int,
    root: str | os.PathLike[str] | None,
) -> np.ndarray:
    """The preprocessed images ``(N, size, size, 3)`` uint8, from the cache ``npy`` (built first
    from the image folder or zip when missing or stale)."""
    array = _cached_faces(npy, attr_path, (len(filenames), image_size, image_size, 3))
    if array is not None:
        return array
    img_dir, archive = _find_images(root)
    if img_dir is None and archive is None:
        raise DatasetError(
            f"celeba: neither img_align_celeba/ nor img_align_celeba.zip found. "
            f"{manual_download_message(root)}"
        )
    _build_cache(npy, filenames, _FaceFiles(img_dir, archive), crop, image_size)
    return np.load(npy, mmap_mode="r", allow_pickle=False)


def load_celeba(
    source: str = "file",
    root: str | os.PathLike[str] | None = None,
    *,
    split: str = "all",
    image_size: int = 64,
    crop: int | None = 148,
    match_rule: str = "first",
    seed: int = 0,
    cache: str | os.PathLike[str] | None = None,
) -> CelebA:
    """Load CelebA from ``root`` (or ``root/celeba``) as 64x64 faces with 40 attributes.

    Parameters
    ----------
    source: ``"file"`` or ``"auto"`` (no procedural renderer).
    split: ``"all"`` (default), ``"train"``, ``"valid"`` or ``"test"`` (needs
        ``list_eval_partition.txt``).
    image_size, crop: centre crop ``crop`` then resize to ``image_size`` (see :func:`preprocess_face`).
    match_rule, seed: see :class:`CelebA`.
    cache: directory of ``celeba_crop<crop>_<size>.npy`` (default: beside the attribute file);
        built once from every image of the attribute file, rebuilt when older than it.
    """
    _check_load_args(source, split, image_size, crop)
    attr_path = _find_text("list_attr_celeba.txt", "Anno", root)
    if attr_path is None:
        raise DatasetError(
            f"celeba: list_attr_celeba.txt not found. {manual_download_message(root)}"
        )
    filenames, names, values = read_attr_file(attr_path)
    partition = _load_partition(filenames, split, root)
    folder = attr_path.parent if cache is None else Path(cache)
    npy = folder / f"celeba_crop{crop if crop is not None else 'none'}_{int(image_size)}.npy"
    array = _load_faces(npy, attr_path, filenames, crop, int(image_size), root)
    rows = np.arange(len(filenames), dtype=np.int64)
    if split != "all":
        assert partition is not None
        rows = np.flatnonzero(partition == _SPLITS[split])
    attrs = (values[rows] > 0).astype(np.int64)
    return CelebA(
        array,
        attrs,
        [filenames[i] for i in rows],
        rows=rows,
        attribute_names=names,
        partition=None if partition is None else partition[rows],
        match_rule=match_rule,
        seed=seed,
    )


register_dataset(
    DatasetSpec(
        name="celeba",
        description=(
            "CelebA aligned faces (Liu et al. 2015), 202,599 images cut to 64x64 (centre crop 148); "
            "40 observed binary attributes, not a factorial grid; files must be downloaded by hand "
            "from the authors' Google Drive"
        ),
        factor_names=CELEBA_ATTRIBUTES,
        factor_sizes=(2,) * _N_ATTR,
        image_shape=(3, 64, 64),
        loader=load_celeba,
        sources=("file",),
        files=_FILES,
        factorial=False,
        interventions=_INTERVENTIONS,
    )
)
