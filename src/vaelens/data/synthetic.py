"""The synthetic causal dataset: procedural 64x64 grayscale shapes with a known causal graph.

Roy (2025) (section 4.1) uses "a custom dataset with known causal relationships between
factors (e.g. shape influences size, background influences contrast)" and intervene on
shape, background and position (section 4.2). This module builds one such dataset as a
*structural causal model* (SCM) on a full factorial grid of exogenous levels, so that
every pair of images "differing only in factor k" exists.

Exogenous factors (integer level indices, last factor fastest in the flat index)::

    shape       3   square, circle, triangle
    size        5   base size s0 in px: 6, 7.5, 9, 10.5, 12
    background  4   background intensity b: 0.0, 0.2, 0.4, 0.6
    contrast    4   contrast gain g: 0.25, 0.5, 0.75, 1.0
    posX       10   centroid x in px: 18.5, 21.5, ..., 45.5 (step 3)
    posY       10   centroid y in px: 18.5, 21.5, ..., 45.5 (step 3, grows downwards)

Structural equations (endogenous, rendered attributes)::

    size     := s0[size] * k[shape],         k = (1.0, 1.2, 1.4) for (square, circle, triangle)
    area     := size**2                       (px^2; every shape is drawn with this area)
    bg       := b[background]
    contrast := g[contrast] * (1 - bg)        (a brighter background leaves less headroom)
    fg       := bg + contrast                 (foreground intensity, <= 1)
    x, y     := posX value, posY value        (the shape's centroid; independent)
    pixel    := bg + contrast * coverage(shape, size, x, y)

Causal graph over the factor names: ``shape -> size`` and ``background -> contrast``;
``posX`` and ``posY`` have no parents or children. Intervening on a parent (``shape``)
changes its child's rendered value (``size``) by the ratio of the shape gains; intervening
on the child's own exogenous level (``size``) changes only the child.

Geometry (pixel ``(row i, col j)`` has centre ``(x, y) = (j + 0.5, i + 0.5)``): a square of
side ``size``; a circle of diameter ``2 size / sqrt(pi)``; an upright isosceles triangle with
base = height = ``sqrt(2) size`` (apex up), placed so that its centroid is at ``(x, y)``.
Edges are anti-aliased: a pixel's coverage is its exact overlap with the square
(``clip(s/2 + 0.5 - |dx|, 0, 1) * clip(s/2 + 0.5 - |dy|, 0, 1)``), and ``clip(0.5 - d, 0, 1)``
with ``d`` the signed distance to the boundary for the circle and the triangle, so that the
summed coverage equals the area (up to about 1 % at the triangle's corners), and a move of the centroid by an integer number of
pixels translates the image exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vaelens.data.base import (
    factor_index,
    index_to_factors,
    sample_factors_uniform,
    validate_factors,
)
from vaelens.data.registry import DatasetSpec, register_dataset
from vaelens.errors import DatasetError

__all__ = [
    "BACKGROUND_LEVELS",
    "CAUSAL_GRAPH",
    "CONTRAST_LEVELS",
    "FACTOR_NAMES",
    "FACTOR_SIZES",
    "IMAGE_SHAPE",
    "POSITION_LEVELS",
    "SHAPE_GAINS",
    "SHAPE_NAMES",
    "SIZE_LEVELS",
    "STRUCTURAL_EQUATIONS",
    "SyntheticCausalDataset",
    "causal_adjacency",
    "endogenous",
    "render_float",
]

IMAGE_SIZE = 64
IMAGE_SHAPE: tuple[int, int, int] = (1, IMAGE_SIZE, IMAGE_SIZE)
SHAPE_NAMES: tuple[str, ...] = ("square", "circle", "triangle")
#: Shape gain k[shape] of the structural equation ``size = s0[size] * k[shape]``.
SHAPE_GAINS = np.array([1.0, 1.2, 1.4], dtype=np.float64)
#: Base size s0 (px, the side of the equal-area square) of each ``size`` level.
SIZE_LEVELS = np.linspace(6.0, 12.0, 5)
#: Background intensity b of each ``background`` level.
BACKGROUND_LEVELS = np.array([0.0, 0.2, 0.4, 0.6], dtype=np.float64)
#: Contrast gain g of each ``contrast`` level: contrast = g * (1 - b).
CONTRAST_LEVELS = np.array([0.25, 0.5, 0.75, 1.0], dtype=np.float64)
#: Centroid coordinate (px) of each ``posX`` / ``posY`` level: 18.5, 21.5, ..., 45.5.
POSITION_LEVELS = 18.5 + 3.0 * np.arange(10, dtype=np.float64)

FACTOR_NAMES: tuple[str, ...] = ("shape", "size", "background", "contrast", "posX", "posY")
FACTOR_SIZES: tuple[int, ...] = (
    len(SHAPE_NAMES),
    SIZE_LEVELS.size,
    BACKGROUND_LEVELS.size,
    CONTRAST_LEVELS.size,
    POSITION_LEVELS.size,
    POSITION_LEVELS.size,
)
#: ``{child: (parents...)}`` over the factor names (roots have no parents).
CAUSAL_GRAPH: dict[str, tuple[str, ...]] = {
    "shape": (),
    "size": ("shape",),
    "background": (),
    "contrast": ("background",),
    "posX": (),
    "posY": (),
}

STRUCTURAL_EQUATIONS = """\
Exogenous levels (indices): shape in {0: square, 1: circle, 2: triangle}, size in 0..4,
background in 0..3, contrast in 0..3, posX in 0..9, posY in 0..9.
  size     := s0[size] * k[shape]        s0 = (6, 7.5, 9, 10.5, 12) px, k = (1.0, 1.2, 1.4)
  area     := size^2                     px^2 (square side size; circle diameter 2 size/sqrt(pi);
                                         triangle base = height = sqrt(2) size)
  bg       := b[background]              b = (0.0, 0.2, 0.4, 0.6)
  contrast := g[contrast] * (1 - bg)     g = (0.25, 0.5, 0.75, 1.0)
  fg       := bg + contrast
  x        := 18.5 + 3 posX              px, centroid column (x grows to the right)
  y        := 18.5 + 3 posY              px, centroid row (y grows downwards)
  pixel    := bg + contrast * coverage(shape, size, x, y)
Causal graph: shape -> size, background -> contrast; posX, posY independent."""

_SQRT5 = float(np.sqrt(5.0))


def causal_adjacency(
    factor_names: tuple[str, ...] = FACTOR_NAMES,
    graph: Mapping[str, tuple[str, ...]] = CAUSAL_GRAPH,
) -> np.ndarray:
    """Adjacency matrix ``A`` (F, F) of ``graph``: ``A[i, j] = 1`` iff factor ``i`` causes ``j``.

    ``graph`` maps each child name to its parents' names; every name must be in
    ``factor_names`` (:class:`DatasetError` otherwise).
    """
    names = tuple(factor_names)
    pos = {n: i for i, n in enumerate(names)}
    adj = np.zeros((len(names), len(names)), dtype=np.int64)
    for child, parents in graph.items():
        for name in (child, *parents):
            if name not in pos:
                raise DatasetError(f"graph: factor {name!r} is not one of {names}")
        for parent in parents:
            adj[pos[parent], pos[child]] = 1
    return adj


def endogenous(factors: np.ndarray) -> dict[str, np.ndarray]:
    """The rendered (endogenous) attributes of factor index vectors ``(N, 6)``.

    Returns float64 arrays ``(N,)`` keyed by name (``shape`` is int64)::

        shape       the shape index (unchanged)
        size        s0[size] * k[shape]            px (side of the equal-area square)
        area        size**2                        px^2
        background  b[background]                  intensity in [0, 1]
        contrast    g[contrast] * (1 - background) intensity difference
        foreground  background + contrast          intensity in [0, 1]
        posX, posY  centroid x and y               px (pixel centres at j + 0.5)

    Raises :class:`DatasetError` naming ``factors`` for a malformed or out-of-range array.
    """
    arr = validate_factors(factors, FACTOR_SIZES, argument="factors")
    shape, size_lv, bg_lv, con_lv, x_lv, y_lv = arr.T
    size = SIZE_LEVELS[size_lv] * SHAPE_GAINS[shape]
    bg = BACKGROUND_LEVELS[bg_lv]
    contrast = CONTRAST_LEVELS[con_lv] * (1.0 - bg)
    return {
        "shape": shape.copy(),
        "size": size,
        "area": size**2,
        "background": bg,
        "contrast": contrast,
        "foreground": bg + contrast,
        "posX": POSITION_LEVELS[x_lv],
        "posY": POSITION_LEVELS[y_lv],
    }


def _coverage(shape: np.ndarray, size: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage ``(N, H, W)`` float32 in [0, 1]; vectorised over the batch.

    One pass per shape kind (three at most), each over every image of that kind.
    """
    n = shape.shape[0]
    centres = np.arange(IMAGE_SIZE, dtype=np.float32) + np.float32(0.5)
    cov = np.empty((n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    for kind in range(len(SHAPE_NAMES)):
        sel = np.flatnonzero(shape == kind)
        if sel.size == 0:
            continue
        s = size[sel].astype(np.float32)[:, None, None]
        dx = centres[None, None, :] - cx[sel].astype(np.float32)[:, None, None]
        dy = centres[None, :, None] - cy[sel].astype(np.float32)[:, None, None]
        if kind == 0:  # square of side s: exact box-filter coverage, separable in x and y
            half = s / 2 + np.float32(0.5)
            cov[sel] = np.clip(half - np.abs(dx), 0.0, 1.0) * np.clip(half - np.abs(dy), 0.0, 1.0)
            continue
        if kind == 1:  # circle of area s^2: radius s / sqrt(pi)
            d = np.sqrt(dx * dx + dy * dy) - s / np.float32(np.sqrt(np.pi))
        else:  # triangle, base = height = h = sqrt(2) s, apex up, centroid at the origin
            h = s * np.float32(np.sqrt(2.0))
            # vertices: apex (0, -2h/3), base corners (+-h/2, h/3); outward normals of the
            # slanted edges are (+-2, -1)/sqrt(5), at distance 2h/(3 sqrt(5)) from the centroid.
            d_base = dy - h / 3
            d_side = (2 * np.abs(dx) - dy - 2 * h / 3) / np.float32(_SQRT5)
            d = np.maximum(d_base, d_side)
        cov[sel] = np.clip(np.float32(0.5) - d, 0.0, 1.0)
    return cov


def render_float(factors: np.ndarray) -> np.ndarray:
    """Unquantised float32 images ``(N, 1, 64, 64)``: ``bg + contrast * coverage``.

    :meth:`SyntheticCausalDataset.images` returns these rounded to 8 bits (so that the
    float and uint8 views of the dataset agree); this function is the exact SCM output.
    """
    endo = endogenous(factors)
    cov = _coverage(endo["shape"], endo["size"], endo["posX"], endo["posY"])
    bg = endo["background"].astype(np.float32)[:, None, None]
    contrast = endo["contrast"].astype(np.float32)[:, None, None]
    img = bg + contrast * cov
    np.clip(img, 0.0, 1.0, out=img)
    return img[:, None]


class SyntheticCausalDataset:
    """Procedural grayscale shapes whose factors follow a known structural causal model.

    See the module docstring (or ``docs/synthetic.md``) for the structural equations.
    Meets the :class:`vaelens.data.base.GroundTruthDataset` contract; factor indices
    ``(N, 6)`` in the order of :data:`FACTOR_NAMES`.
    """

    name = "synthetic"
    pixel_max = 255
    source = "procedural"
    shape_names = SHAPE_NAMES
    structural_equations = STRUCTURAL_EQUATIONS

    def __init__(self) -> None:
        self.factor_names: tuple[str, ...] = FACTOR_NAMES
        self.factor_sizes: tuple[int, ...] = FACTOR_SIZES
        self.factor_values: list[np.ndarray] = [
            np.arange(len(SHAPE_NAMES), dtype=np.float64),
            SIZE_LEVELS.copy(),
            BACKGROUND_LEVELS.copy(),
            CONTRAST_LEVELS.copy(),
            POSITION_LEVELS.copy(),
            POSITION_LEVELS.copy(),
        ]
        self.image_shape: tuple[int, int, int] = IMAGE_SHAPE
        self.causal_graph: dict[str, tuple[str, ...]] = dict(CAUSAL_GRAPH)

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    def adjacency(self) -> np.ndarray:
        """``(F, F)`` 0/1 int array, ``A[i, j] = 1`` iff factor ``i`` causes factor ``j``."""
        return causal_adjacency(self.factor_names, self.causal_graph)

    def endogenous(self, factors: np.ndarray) -> dict[str, np.ndarray]:
        """Rendered attributes in physical units; see :func:`endogenous`."""
        return endogenous(factors)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` factor vectors ``(n, 6)`` drawn uniformly from the full grid."""
        if not isinstance(rng, np.random.Generator):
            raise DatasetError(f"rng: expected a numpy Generator, got {type(rng).__name__}")
        return sample_factors_uniform(n, self.factor_sizes, rng)

    def do(self, factors: np.ndarray, **levels: int) -> np.ndarray:
        """Copy of ``factors`` with the named exogenous levels set: ``do(f, shape=2, posX=0)``.

        Raises :class:`DatasetError` for an unknown factor name or a level out of range.
        """
        out = validate_factors(factors, self.factor_sizes, argument="factors").copy()
        for name, level in levels.items():
            k = factor_index(self, name)
            size = self.factor_sizes[k]
            if not isinstance(level, int | np.integer) or not 0 <= int(level) < size:
                raise DatasetError(
                    f"{name}: expected a level index in [0, {size - 1}], got {level!r}"
                )
            out[:, k] = int(level)
        return out

    def render_float(self, factors: np.ndarray) -> np.ndarray:
        """Unquantised float32 images ``(N, 1, 64, 64)``; see :func:`render_float`."""
        return render_float(factors)

    def uint8_images(self, factors: np.ndarray) -> np.ndarray:
        """uint8 images ``(N, 1, 64, 64)``, ``round(255 * render_float(factors))``."""
        img = render_float(factors)
        return np.rint(img * np.float32(self.pixel_max)).astype(np.uint8)

    def uint8_at(self, index: np.ndarray) -> np.ndarray:
        """uint8 images ``(N, 1, 64, 64)`` at flat indices (last factor fastest)."""
        return self.uint8_images(index_to_factors(index, self.factor_sizes))

    def images(self, factors: np.ndarray) -> np.ndarray:
        """Factor indices ``(N, 6)`` -> float32 images ``(N, 1, 64, 64)`` in ``[0, 1]``.

        Equal to ``uint8_images(factors) / 255`` (8-bit quantised, like a file-backed dataset).
        """
        return self.uint8_images(factors).astype(np.float32) / np.float32(self.pixel_max)

    def __repr__(self) -> str:
        sizes = dict(zip(self.factor_names, self.factor_sizes, strict=True))
        return f"SyntheticCausalDataset(n={len(self)}, factors={sizes})"


def _load(source: str = "auto", root: Path | None = None, **kwargs: Any) -> SyntheticCausalDataset:
    """Registry loader: the dataset is procedural only and takes no options."""
    if source not in ("auto", "procedural"):
        raise DatasetError(f"source: synthetic is procedural only, got {source!r}")
    if kwargs:
        raise DatasetError(f"synthetic: takes no options, got {sorted(kwargs)}")
    return SyntheticCausalDataset()


SPEC = register_dataset(
    DatasetSpec(
        name="synthetic",
        description=(
            "Procedural 64x64 grayscale shapes with a known causal graph "
            "(shape -> size, background -> contrast; position independent)"
        ),
        factor_names=FACTOR_NAMES,
        factor_sizes=FACTOR_SIZES,
        image_shape=IMAGE_SHAPE,
        loader=_load,
        sources=("procedural",),
        files=(),
        factorial=True,
        interventions=(
            "exact pairs: any factor changed, the others held (factorial grid); "
            "changing shape also changes the rendered size, changing background the contrast"
        ),
    )
)
