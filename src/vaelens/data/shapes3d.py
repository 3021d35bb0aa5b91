"""3DShapes (Burgess & Kim, 2018): an object in a room, 480,000 images of 64x64x3.

Official file ``3dshapes.h5`` (HDF5): ``images`` ``(480000, 64, 64, 3)`` uint8 and ``labels``
``(480000, 6)`` float64, in flat-index order with the last factor fastest::

    idx = ((((floor_hue * 10 + wall_hue) * 10 + object_hue) * 8 + scale) * 4 + shape) * 15 + orientation

=============  ======  ==========================================
factor         levels  label values
=============  ======  ==========================================
floor_hue      10      0.0, 0.1, ..., 0.9
wall_hue       10      0.0, 0.1, ..., 0.9
object_hue     10      0.0, 0.1, ..., 0.9
scale          8       ``linspace(0.75, 1.25, 8)``
shape          4       0 cube, 1 cylinder, 2 sphere, 3 capsule
orientation    15      ``linspace(-30, 30, 15)`` (camera azimuth, degrees)
=============  ======  ==========================================

Two sources:

* ``"file"``: :func:`open_shapes3d_h5` reads the official file lazily through h5py (the
  5.9 GB of uint8 images are never loaded whole, nor converted to float in bulk).
* ``"procedural"``: :func:`render_shapes3d` ray-casts the same scene with numpy (floor,
  back and side walls, sky, the object and its shadow), vectorised over the batch. Its
  geometry and lighting were fitted by eye and by a few pixel measurements to the real
  frames of ``shared/data/3dshapes.gif``; it is *not* pixel-identical to the MuJoCo
  renders (no wall/floor texture, simpler lights), but every factor acts as in the data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaelens.data.base import (
    ArrayDataset,
    check_dataset,
    index_to_factors,
    sample_factors_uniform,
    validate_factors,
)
from vaelens.data.download import cache_dir, find_file
from vaelens.data.registry import DatasetSpec, RemoteFile, register_dataset
from vaelens.errors import DatasetError

__all__ = [
    "SHAPES3D_FACTOR_NAMES",
    "SHAPES3D_FACTOR_SIZES",
    "SHAPES3D_FILE",
    "SHAPES3D_SHAPE_NAMES",
    "Shapes3D",
    "Shapes3DFile",
    "hue_to_rgb",
    "load_shapes3d",
    "open_shapes3d_h5",
    "render_shapes3d",
    "shapes3d_factor_values",
]

SHAPES3D_FACTOR_NAMES: tuple[str, ...] = (
    "floor_hue",
    "wall_hue",
    "object_hue",
    "scale",
    "shape",
    "orientation",
)
SHAPES3D_FACTOR_SIZES: tuple[int, ...] = (10, 10, 10, 8, 4, 15)
SHAPES3D_SHAPE_NAMES: tuple[str, ...] = ("cube", "cylinder", "sphere", "capsule")
SHAPES3D_FILE = RemoteFile(
    name="3dshapes.h5",
    urls=("https://storage.googleapis.com/3d-shapes/3dshapes.h5",),
    md5="099a2078d58cec4daad0702c55d06868",
)
_IMAGE_HW = (64, 64)
_LABEL_ATOL = 1e-4


def shapes3d_factor_values(factor_sizes: Sequence[int] | None = None) -> list[np.ndarray]:
    """Label values of every factor level (float64), as stored in ``3dshapes.h5``.

    Hues ``0.0 .. 0.9`` in steps of 0.1, scale ``linspace(0.75, 1.25, 8)``, shape ``0..3``,
    orientation ``linspace(-30, 30, 15)`` degrees. With ``factor_sizes`` (a smaller grid,
    used by tests to write tiny files in the official layout) factor ``f`` keeps its first
    ``factor_sizes[f]`` levels.
    """
    full = [
        np.round(np.arange(10) * 0.1, 10),
        np.round(np.arange(10) * 0.1, 10),
        np.round(np.arange(10) * 0.1, 10),
        np.linspace(0.75, 1.25, 8),
        np.arange(4, dtype=np.float64),
        np.linspace(-30.0, 30.0, 15),
    ]
    sizes = _check_sizes(factor_sizes)
    return [v[:s].astype(np.float64) for v, s in zip(full, sizes, strict=True)]


def _check_sizes(factor_sizes: Sequence[int] | None) -> tuple[int, ...]:
    if factor_sizes is None:
        return SHAPES3D_FACTOR_SIZES
    try:
        sizes = tuple(int(s) for s in factor_sizes)
    except (TypeError, ValueError):
        raise DatasetError(f"factor_sizes: expected 6 ints, got {factor_sizes!r}") from None
    if len(sizes) != 6 or any(
        not 1 <= s <= full for s, full in zip(sizes, SHAPES3D_FACTOR_SIZES, strict=True)
    ):
        raise DatasetError(
            f"factor_sizes: expected 6 ints with 1 <= s_f <= {list(SHAPES3D_FACTOR_SIZES)} "
            f"({', '.join(SHAPES3D_FACTOR_NAMES)}), got {list(factor_sizes)}"
        )
    return sizes


# --------------------------------------------------------------------------- colour


def hue_to_rgb(hue: np.ndarray) -> np.ndarray:
    """``HSV(h, 1, 1)`` -> RGB in ``[0, 1]``, shape ``hue.shape + (3,)``.

    ``r = clip(|6h - 3| - 1)``, ``g = clip(2 - |6h - 2|)``, ``b = clip(2 - |6h - 4|)``
    with ``h`` taken modulo 1 (``h = 0`` red, ``1/3`` green, ``2/3`` blue).
    """
    h = np.mod(np.asarray(hue, dtype=np.float64), 1.0)[..., None] * 6.0
    rgb = np.concatenate(
        [np.abs(h - 3.0) - 1.0, 2.0 - np.abs(h - 2.0), 2.0 - np.abs(h - 4.0)], axis=-1
    )
    return np.clip(rgb, 0.0, 1.0)


# --------------------------------------------------------------------------- the scene
#
# World frame: z up, the object stands on the floor (z = 0) at the origin. The camera
# orbits the object at horizontal distance _CAM_DIST and height _CAM_HEIGHT, at azimuth
# ``phi`` (the orientation factor): position (R sin phi, -R cos phi, h), looking
# horizontally at the object's axis (the horizon is the image's middle row). The room is
# the box |x| <= _ROOM, y <= _ROOM, 0 <= z <= _WALL_HEIGHT; above the walls is the sky.
# Units: camera height = 1. Measured on the real frames (in 64-pixel units): wall from
# row 17.5 to 40.5 at phi = 0, the room corner at column ~44 at phi = -30, a scale-0.75
# cube 16 px wide with its front-bottom edge at row ~54, focal length ~70 px.

_CAM_DIST = 3.5
_CAM_HEIGHT = 1.0
_FOCAL = 70.0 / 64.0  # focal length / image width
_ROOM = 4.7
_WALL_HEIGHT = 2.7
_SKY = np.array([153.0, 226.0, 249.0]) / 255.0

# object dimensions at scale 1 (multiplied by the scale factor's value)
_CUBE_HALF = 0.48
_CYL_RADIUS = 0.52
_CYL_HEIGHT = 0.98
_SPHERE_RADIUS = 0.56
_CAPSULE_RADIUS = 0.46
_CAPSULE_HEIGHT = 1.75

# Lights. A headlight (from the camera, no shadow) and a key light: a spot high above and
# to the left of the object, slightly behind it, fixed relative to the camera, that casts
# the shadow (to the lower right in the image). Intensities are clipped to 1.
# Position of the key light in the camera frame (right, forward, up), relative to the object.
_KEY_POS = np.array([-1.0, 0.4, 7.75])
_KEY_TARGET = np.array([-1.3, -0.8, 0.0])  # where the spot's axis meets the floor
_KEY_EXPONENT = 2.7
# (ambient, headlight, key) per surface, fitted (Nelder-Mead, MAE) to 53 real gif frames
_OBJ_LIGHT = (0.46, 0.5, 0.83)
_FLOOR_LIGHT = (0.22, 0.37, 1.16)
_WALL_LIGHT = (0.45, 0.6)  # (ambient, headlight): the spot does not reach the walls

_EPS = 1e-4
_F32 = np.float32


def _first_root(b: np.ndarray, c: np.ndarray, a: np.ndarray | float = 1.0) -> np.ndarray:
    """Smallest root ``t > eps`` of ``a t^2 + 2 b t + c = 0``, ``inf`` where there is none."""
    disc = b * b - a * c
    sq = np.sqrt(np.maximum(disc, 0.0))
    t0 = (-b - sq) / a
    t1 = (-b + sq) / a
    t = np.where(t0 > _EPS, t0, np.where(t1 > _EPS, t1, np.inf))
    return np.where(disc >= 0.0, t, np.inf).astype(_F32, copy=False)


# A ray bundle: origin and unit direction as six 1-D float32 arrays (ox, oy, oz, dx, dy, dz).
_Rays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
# A hit: ray parameter t (inf for a miss) and the unit normal (nx, ny, nz) at o + t d.
_Hit = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _hit_sphere(rays: _Rays, cz: np.ndarray, r: np.ndarray) -> _Hit:
    """Sphere of radius ``r`` centred at ``(0, 0, cz)``."""
    ox, oy, oz, dx, dy, dz = rays
    qz = oz - cz
    t = _first_root(ox * dx + oy * dy + qz * dz, ox * ox + oy * oy + qz * qz - r * r)
    tt = np.where(np.isfinite(t), t, 0.0)
    return t, (ox + tt * dx) / r, (oy + tt * dy) / r, (qz + tt * dz) / r


def _hit_side(rays: _Rays, r: np.ndarray, z0: np.ndarray, z1: np.ndarray) -> _Hit:
    """Side of the vertical cylinder ``x^2 + y^2 = r^2`` between heights ``z0`` and ``z1``."""
    ox, oy, oz, dx, dy, dz = rays
    a = np.maximum(dx * dx + dy * dy, 1e-12)
    t = _first_root(ox * dx + oy * dy, ox * ox + oy * oy - r * r, a)
    tt = np.where(np.isfinite(t), t, 0.0)
    z = oz + tt * dz
    t = np.where((z >= z0) & (z <= z1), t, np.inf)
    return t, (ox + tt * dx) / r, (oy + tt * dy) / r, np.zeros_like(t)


def _closest(*hits: _Hit) -> _Hit:
    """The union of convex pieces: per ray, the hit with the smallest ``t``."""
    t = np.stack([h[0] for h in hits])
    k = np.argmin(t, axis=0)[None]
    return tuple(  # type: ignore[return-value]
        np.take_along_axis(np.stack([h[i] for h in hits]), k, 0)[0] for i in range(4)
    )


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    return num / den


def _hit_object(shape: int, scale: np.ndarray, rays: _Rays) -> _Hit:
    """First hit of each ray with the object ``shape`` (0 cube, 1 cylinder, 2 sphere, 3 capsule).

    Every object stands on the floor, its vertical axis through the origin; ``scale``
    (one value per ray) multiplies its size.
    """
    ox, oy, oz, dx, dy, dz = rays
    if shape == 0:  # cube aligned with the room: slab test, t = max of the entries
        a = _CUBE_HALF * scale
        slabs = ((ox, dx, -a, a), (oy, dy, -a, a), (oz, dz, np.zeros_like(a), 2 * a))
        near = np.full(ox.shape, -np.inf, dtype=_F32)
        far = np.full(ox.shape, np.inf, dtype=_F32)
        axis = np.zeros(ox.shape, dtype=np.int8)  # the slab entered last gives the normal
        for k, (o, d, lo, hi) in enumerate(slabs):
            t1 = _safe_div(lo - o, d)
            t2 = _safe_div(hi - o, d)
            tmin = np.minimum(t1, t2)
            axis = np.where(tmin > near, np.int8(k), axis)
            near = np.maximum(near, tmin)
            far = np.minimum(far, np.maximum(t1, t2))
        t = np.where((near <= far) & (near > _EPS), near, np.inf).astype(_F32, copy=False)
        sign = -np.sign(np.where(axis == 0, dx, np.where(axis == 1, dy, dz)))
        return t, (axis == 0) * sign, (axis == 1) * sign, (axis == 2) * sign
    if shape == 1:  # cylinder: side and top disc
        r = _CYL_RADIUS * scale
        h = _CYL_HEIGHT * scale
        t_top = _safe_div(h - oz, dz)
        px = ox + t_top * dx
        py = oy + t_top * dy
        t_top = np.where((t_top > _EPS) & (px * px + py * py <= r * r), t_top, np.inf)
        zero = np.zeros_like(t_top)
        top = (t_top.astype(_F32), zero, zero, zero + 1.0)
        return _closest(_hit_side(rays, r, zero, h), top)
    if shape == 2:
        r = _SPHERE_RADIUS * scale
        return _hit_sphere(rays, r, r)
    r = _CAPSULE_RADIUS * scale  # capsule: a cylinder between two hemispheres
    z1 = _CAPSULE_HEIGHT * scale - r
    return _closest(_hit_side(rays, r, r, z1), _hit_sphere(rays, r, r), _hit_sphere(rays, z1, r))


def _bounding_sphere(shape: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre height and radius (float32) of a sphere holding the object, to skip rays missing it."""
    centre = np.array(
        [_CUBE_HALF, _CYL_HEIGHT / 2, _SPHERE_RADIUS, _CAPSULE_HEIGHT / 2], dtype=_F32
    )[shape]
    radius = np.array(
        [
            _CUBE_HALF * np.sqrt(3.0),
            np.hypot(_CYL_RADIUS, _CYL_HEIGHT / 2),
            _SPHERE_RADIUS,
            _CAPSULE_HEIGHT / 2,
        ],
        dtype=_F32,
    )[shape]
    return centre * scale, radius * scale * _F32(1.01)


def _trace_object(shape: np.ndarray, scale: np.ndarray, rays: _Rays) -> _Hit:
    """:func:`_hit_object` for 1-D ray arrays with one ``shape`` and ``scale`` per ray.

    Rays that miss the object's bounding sphere are not traced further.
    """
    n = rays[0].shape[0]
    t = np.full(n, np.inf, dtype=_F32)
    normal = [np.zeros(n, dtype=_F32) for _ in range(3)]
    cz, rb = _bounding_sphere(shape, scale)
    cand = np.isfinite(_hit_sphere(rays, cz, rb)[0])
    for s in np.unique(shape[cand]):
        idx = np.flatnonzero(cand & (shape == s))
        hit = _hit_object(int(s), scale[idx], tuple(a[idx] for a in rays))  # type: ignore[arg-type]
        t[idx] = hit[0]
        for k in range(3):
            normal[k][idx] = hit[k + 1]
    return t, normal[0], normal[1], normal[2]


def _render_linear(factors: np.ndarray, size: int, supersample: int) -> np.ndarray:
    """Render validated factor indices ``(N, 6)`` to float RGB ``(N, 3, size, size)``."""
    values = shapes3d_factor_values()
    n = factors.shape[0]
    fine = size * supersample
    p = fine * fine
    phi = np.deg2rad(values[5][factors[:, 5]])
    sin, cos = np.sin(phi).astype(_F32), np.cos(phi).astype(_F32)
    shape_i = factors[:, 4]
    scale_i = values[3][factors[:, 3]].astype(_F32)
    floor_rgb = hue_to_rgb(values[0][factors[:, 0]]).astype(_F32)
    wall_rgb = hue_to_rgb(values[1][factors[:, 1]]).astype(_F32)
    obj_rgb = hue_to_rgb(values[2][factors[:, 2]]).astype(_F32)

    # Camera at (R sin phi, -R cos phi, h), forward (-sin, cos, 0), right (cos, sin, 0), up z.
    # Sub-pixel rays on the fine grid, row-major; arrays (N, P) float32.
    coords = (((np.arange(fine) + 0.5) / fine - 0.5) / _FOCAL).astype(_F32)
    u = np.tile(coords, fine)[None, :]
    v = np.repeat(coords, fine)[None, :]
    s_, c_ = sin[:, None], cos[:, None]
    inv = 1.0 / np.sqrt(1.0 + u * u + v * v)  # |forward + u right - v up|, the same for all
    dx = (-s_ + u * c_) * inv
    dy = (c_ + u * s_) * inv
    dz = np.broadcast_to(-v * inv, (n, p))
    ox = _F32(_CAM_DIST) * s_
    oy = _F32(-_CAM_DIST) * c_
    oz = _F32(_CAM_HEIGHT)

    # room: the nearest of the walls x = +-ROOM and y = +ROOM (the camera is inside the box)
    room = _F32(_ROOM)
    tx = (np.copysign(room, dx) - ox) / np.where(dx == 0, _F32(1e-12), dx)
    ty = np.where(dy > 0, (room - oy) / np.maximum(dy, _F32(1e-12)), _F32(np.inf))
    t_floor = np.where(dz < 0, -oz / np.minimum(dz, _F32(-1e-12)), _F32(np.inf))
    side = tx < ty
    t_wall = np.minimum(tx, ty)
    is_floor = t_floor < t_wall
    is_wall = ~is_floor & (oz + t_wall * dz <= _F32(_WALL_HEIGHT))
    t_bg = np.where(is_floor, t_floor, np.where(is_wall, t_wall, _F32(np.inf)))

    # object: bounding-sphere test on all rays, exact test on the candidates
    cz, rb = _bounding_sphere(shape_i, scale_i)
    qz = oz - cz[:, None]
    b = ox * dx + oy * dy + qz * dz
    c = ox * ox + oy * oy + qz * qz - rb[:, None] ** 2
    cand = np.flatnonzero((b * b >= c) & (b < 0))
    img = cand // p
    hit_rays = (
        ox[img, 0],
        oy[img, 0],
        np.full(cand.size, oz),
        dx.ravel()[cand],
        dy.ravel()[cand],
        dz.ravel()[cand],
    )
    t_c, nx, ny, nz = _trace_object(shape_i[img], scale_i[img], hit_rays)
    front = t_c < t_bg.ravel()[cand]
    is_obj = np.zeros(n * p, dtype=bool)
    is_obj[cand[front]] = True

    # the key light, fixed in the camera frame: world = a * right + b * forward + c * up
    def cam_to_world(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray, _F32]:
        return vec[0] * cos - vec[1] * sin, vec[0] * sin + vec[1] * cos, _F32(vec[2])

    kx, ky, kz = cam_to_world(_KEY_POS)
    ax, ay, az = cam_to_world(_KEY_TARGET - _KEY_POS)
    anorm = np.sqrt(ax * ax + ay * ay + az * az)
    ax, ay, az = ax / anorm, ay / anorm, az / anorm

    intensity = np.ones(n * p, dtype=_F32)
    colour = np.broadcast_to(_SKY.astype(_F32), (n * p, 3)).copy()
    img_all = np.repeat(np.arange(n), p)

    # floor: headlight, spot key light, and the object's shadow
    fl = np.flatnonzero(is_floor.ravel() & ~is_obj)
    fi = img_all[fl]
    t = t_floor.ravel()[fl]
    fdx, fdy, fdz = dx.ravel()[fl], dy.ravel()[fl], dz.ravel()[fl]
    px, py = ox[fi, 0] + t * fdx, oy[fi, 0] + t * fdy
    lx, ly, lz = kx[fi] - px, ky[fi] - py, np.full_like(px, kz)
    ln = np.sqrt(lx * lx + ly * ly + lz * lz)
    lx, ly, lz = lx / ln, ly / ln, lz / ln
    spot = np.maximum(-(lx * ax[fi] + ly * ay[fi] + lz * az[fi]), 0.0) ** _KEY_EXPONENT
    shadow_rays = (px, py, np.full_like(px, _EPS), lx, ly, lz)
    lit = ~np.isfinite(_trace_object(shape_i[fi], scale_i[fi], shadow_rays)[0])
    a0, a1, a2 = _FLOOR_LIGHT
    intensity[fl] = a0 + a1 * np.maximum(-fdz, 0.0) + a2 * lz * spot * lit
    colour[fl] = floor_rgb[fi]

    # walls: a directional headlight only, n . (-forward) (side walls face -+x, the back wall -y)
    wl = np.flatnonzero(is_wall.ravel() & ~is_obj)
    wi = img_all[wl]
    facing = np.where(side.ravel()[wl], np.abs(sin[wi]), cos[wi])
    intensity[wl] = _WALL_LIGHT[0] + _WALL_LIGHT[1] * facing
    colour[wl] = wall_rgb[img_all[wl]]

    # object: ambient, headlight, key light (no spot cone)
    ob = cand[front]
    oi = img[front]
    t = t_c[front]
    odx, ody, odz = hit_rays[3][front], hit_rays[4][front], hit_rays[5][front]
    lx = kx[oi] - (ox[oi, 0] + t * odx)
    ly = ky[oi] - (oy[oi, 0] + t * ody)
    lz = kz - (oz + t * odz)
    ln = np.sqrt(lx * lx + ly * ly + lz * lz)
    nxo, nyo, nzo = nx[front], ny[front], nz[front]
    key = np.maximum((nxo * lx + nyo * ly + nzo * lz) / ln, 0.0)
    head = np.maximum(-(nxo * odx + nyo * ody + nzo * odz), 0.0)
    b0, b1, b2 = _OBJ_LIGHT
    intensity[ob] = b0 + b1 * head + b2 * key
    colour[ob] = obj_rgb[oi]

    rgb = np.minimum(intensity, 1.0)[:, None] * colour
    rgb = rgb.reshape(n, size, supersample, size, supersample, 3).mean(axis=(2, 4))
    return rgb.transpose(0, 3, 1, 2)


def render_shapes3d(
    factors: np.ndarray,
    *,
    image_size: int = 64,
    supersample: int = 2,
    chunk: int = 128,
) -> np.ndarray:
    """Render 3DShapes scenes for factor indices ``(N, 6)`` -> uint8 images ``(N, 3, S, S)``.

    Factor indices follow :data:`SHAPES3D_FACTOR_NAMES` with sizes ``(10, 10, 10, 8, 4, 15)``.
    Each pixel is the mean of ``supersample^2`` ray-cast sub-pixels (anti-aliasing).
    Colours are ``HSV(h, 1, 1)`` times a shading intensity ``min(1, a + h (n . v) + k (n . l)
    spot)`` (ambient, headlight, key light); the key light is blocked by the object on the
    floor (its shadow). Deterministic: the same factors always give the same bytes.
    ``chunk`` images are rendered at a time to bound memory.
    """
    f = validate_factors(factors, SHAPES3D_FACTOR_SIZES)
    for name, val, lo in (
        ("image_size", image_size, 1),
        ("supersample", supersample, 1),
        ("chunk", chunk, 1),
    ):
        if not isinstance(val, int | np.integer) or val < lo:
            raise DatasetError(f"{name}: expected an int >= {lo}, got {val!r}")
    out = np.empty((f.shape[0], 3, image_size, image_size), dtype=np.uint8)
    for start in range(0, f.shape[0], chunk):
        rgb = _render_linear(f[start : start + chunk], int(image_size), int(supersample))
        out[start : start + chunk] = np.rint(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out


# --------------------------------------------------------------------------- datasets


class Shapes3D:
    """3DShapes rendered on the fly by :func:`render_shapes3d` (no files needed).

    Follows the ground-truth dataset contract of :mod:`vaelens.data.base`: factor indices
    ``(N, 6)`` in, float32 images ``(N, 3, S, S)`` in ``[0, 1]`` out (``uint8 / 255``, so
    that rendered and file images are quantised alike).
    """

    name = "shapes3d"
    factor_names = SHAPES3D_FACTOR_NAMES
    factor_sizes = SHAPES3D_FACTOR_SIZES
    pixel_max = 255.0
    source = "procedural"

    def __init__(self, *, image_size: int = 64, supersample: int = 2) -> None:
        for arg, val in (("image_size", image_size), ("supersample", supersample)):
            if not isinstance(val, int | np.integer) or val < 1:
                raise DatasetError(f"{arg}: expected a positive int, got {val!r}")
        self.image_size = int(image_size)
        self.supersample = int(supersample)
        self.factor_values = shapes3d_factor_values()
        self.image_shape = (3, self.image_size, self.image_size)

    def __len__(self) -> int:
        return int(np.prod(self.factor_sizes))

    def uint8_images(self, factors: np.ndarray) -> np.ndarray:
        """Rendered uint8 images ``(N, 3, S, S)`` (values ``0..255``) for factor indices."""
        return render_shapes3d(factors, image_size=self.image_size, supersample=self.supersample)

    def uint8_at(self, index: np.ndarray) -> np.ndarray:
        """Rendered uint8 images at flat indices (last factor fastest, as in the file)."""
        return self.uint8_images(index_to_factors(index, self.factor_sizes))

    def images(self, factors: np.ndarray) -> np.ndarray:
        """Factor indices ``(N, 6)`` -> float32 images ``(N, 3, S, S)`` in ``[0, 1]``."""
        return self.uint8_images(factors).astype(np.float32) / np.float32(self.pixel_max)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` factor vectors, every factor uniform and independent (a full factorial grid)."""
        return sample_factors_uniform(n, self.factor_sizes, rng)

    def __repr__(self) -> str:
        return f"Shapes3D(source='procedural', image_size={self.image_size}, supersample={self.supersample})"


class _LazyH5Images:
    """The ``images`` dataset of an HDF5 file, opened on first read in each process.

    Holds only the path (so the dataset pickles, e.g. into DataLoader workers); reads with
    h5py, which needs increasing, unique indices along the first axis.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path = path
        self.shape = shape
        self.dtype = dtype
        self.ndim = len(shape)
        self._file: Any = None
        self._pid = -1

    def _dataset(self) -> Any:
        if self._file is None or self._pid != os.getpid():
            import h5py

            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file["images"]

    def read(self, sorted_unique: np.ndarray) -> np.ndarray:
        """Rows at strictly increasing indices, as a uint8 array."""
        try:
            return np.asarray(self._dataset()[sorted_unique])
        except (OSError, KeyError, ValueError) as exc:
            raise DatasetError(
                f"{self.path}: could not read images ({exc}); the file may be truncated or "
                "corrupted: check it with `vaelens data verify shapes3d`"
            ) from None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = -1
        return state


class Shapes3DFile(ArrayDataset):
    """3DShapes read lazily from the official ``3dshapes.h5`` (see :func:`open_shapes3d_h5`)."""

    def __init__(self, images: _LazyH5Images, factor_sizes: Sequence[int], path: Path) -> None:
        sizes = _check_sizes(factor_sizes)
        super().__init__(
            "shapes3d",
            images,  # type: ignore[arg-type]
            SHAPES3D_FACTOR_NAMES,
            sizes,
            shapes3d_factor_values(sizes),
            channels_last=True,
            pixel_max=255.0,
            source="file",
        )
        self.path = path

    def uint8_at(self, index: np.ndarray) -> np.ndarray:
        """Raw uint8 images ``(N, 3, 64, 64)`` at flat indices (any order, repeats allowed)."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise DatasetError(
                f"index: expected values in [0, {len(self) - 1}], got {idx.min()}..{idx.max()}"
            )
        if idx.size == 0:
            return np.empty((0, *self.image_shape), dtype=np.uint8)
        uniq, inverse = np.unique(idx, return_inverse=True)
        batch = self.array.read(uniq)[inverse]  # type: ignore[attr-defined]
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))

    def close(self) -> None:
        """Close the HDF5 file (it is reopened by the next read)."""
        self.array.close()  # type: ignore[attr-defined]


def _label_sample(n: int) -> np.ndarray:
    """Row indices whose labels are checked: the first and last rows and a spread between."""
    if n <= 4096:
        return np.arange(n)
    return np.unique(
        np.concatenate(
            [np.arange(64), np.linspace(0, n - 1, 2048).astype(np.int64), np.arange(n - 64, n)]
        )
    )


def _check_h5_dataset(fh: Any, key: str, path: Path) -> None:
    """``fh[key]`` is a dataset stored in the file itself; a :class:`DatasetError` if not."""
    import h5py

    if key not in fh or not isinstance(fh[key], h5py.Dataset):
        raise DatasetError(
            f"{path}: missing dataset {key!r} (found {sorted(fh.keys())}); expected keys "
            "'images' (N, 64, 64, 3) uint8 and 'labels' (N, 6) float64"
        )
    # an external link, external storage or a virtual dataset reads other files
    link = fh.get(key, getlink=True)
    if not isinstance(link, h5py.HardLink) or fh[key].external or fh[key].is_virtual:
        how = (
            type(link).__name__
            if not isinstance(link, h5py.HardLink)
            else ("external storage" if fh[key].external else "a virtual dataset")
        )
        raise DatasetError(
            f"{path}: dataset {key!r} keeps its data in other files ({how}); expected "
            "a dataset stored in this file"
        )


def _check_h5_layout(images: Any, labels: Any, total: int, path: Path) -> None:
    """``images`` ``(total, 64, 64, 3)`` uint8 and ``labels`` ``(total, 6)`` floating point."""
    if images.dtype != np.uint8 or images.shape != (total, *_IMAGE_HW, 3):
        raise DatasetError(
            f"{path}: 'images' is {images.dtype} {images.shape}, expected uint8 "
            f"{(total, *_IMAGE_HW, 3)}"
        )
    if labels.dtype.kind != "f" or labels.shape != (total, 6):
        raise DatasetError(
            f"{path}: 'labels' is {labels.dtype} {labels.shape}, expected float64 {(total, 6)}"
        )


def _check_h5_labels(labels: Any, sizes: tuple[int, ...], total: int, path: Path) -> None:
    """A sample of rows of ``labels`` equals the factor values at those flat indices."""
    rows = _label_sample(total)
    got = np.asarray(labels[rows], dtype=np.float64)
    factors = index_to_factors(rows, sizes)
    values = shapes3d_factor_values(sizes)
    want = np.stack([values[f][factors[:, f]] for f in range(6)], axis=1)
    bad = np.argwhere(~np.isclose(got, want, rtol=0.0, atol=_LABEL_ATOL))
    if bad.size:
        r, f = bad[0]
        raise DatasetError(
            f"{path}: labels[{rows[r]}, {f}] ({SHAPES3D_FACTOR_NAMES[f]}) is {float(got[r, f])!r}, "
            f"expected {float(want[r, f])!r}: the rows are not in the official flat-index order "
            "(orientation fastest) or the file is not 3dshapes.h5"
        )


def open_shapes3d_h5(
    path: str | os.PathLike[str], *, factor_sizes: Sequence[int] | None = None
) -> Shapes3DFile:
    """Open ``3dshapes.h5`` lazily and check that it is the official file.

    Checks, each failure one :class:`DatasetError` naming the file and what was expected:
    the file opens as HDF5 (a truncated download fails here: HDF5 compares the file's
    size with the end address written in its superblock); it holds datasets, stored in
    the file itself (no external link, external storage or virtual dataset), ``images``
    ``(N, 64, 64, 3)`` uint8 and ``labels`` ``(N, 6)`` floating point with
    ``N = prod(factor_sizes)``; the labels of a sample of rows (first and last 64, and
    2048 spread between; all rows of a small file) equal the factor values at those flat
    indices (within 1e-4); the first and last images can be read.

    ``factor_sizes`` (default ``(10, 10, 10, 8, 4, 15)``) lets tests write tiny files in
    the official layout: a grid whose factor ``f`` keeps its first ``factor_sizes[f]``
    levels, in the same flat-index order.
    """
    import h5py

    sizes = _check_sizes(factor_sizes)
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: file not found (expected the official 3dshapes.h5)")
    total = int(np.prod(sizes))
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise DatasetError(
            f"{path}: cannot be read as HDF5 ({exc}); expected the official 3dshapes.h5 "
            f"({SHAPES3D_FILE.md5} MD5): the file may be truncated or corrupted, download it again"
        ) from None
    try:
        for key in ("images", "labels"):
            _check_h5_dataset(fh, key, path)
        images, labels = fh["images"], fh["labels"]
        _check_h5_layout(images, labels, total, path)
        _check_h5_labels(labels, sizes, total, path)
        _ = images[0], images[total - 1]  # the first and last rows must be readable
    except DatasetError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise DatasetError(
            f"{path}: could not be read ({exc}); expected the official 3dshapes.h5: the file may "
            "be truncated or corrupted, download it again"
        ) from None
    finally:
        fh.close()
    lazy = _LazyH5Images(path, (total, *_IMAGE_HW, 3), np.dtype(np.uint8))
    return Shapes3DFile(lazy, sizes, path)


def load_shapes3d(
    source: str = "auto",
    root: str | os.PathLike[str] | None = None,
    *,
    factor_sizes: Sequence[int] | None = None,
    image_size: int = 64,
    supersample: int = 2,
) -> Shapes3D | Shapes3DFile:
    """Build 3DShapes from ``source``: ``"file"``, ``"procedural"`` or ``"auto"``.

    ``"auto"`` reads ``3dshapes.h5`` when :func:`vaelens.data.download.find_file` finds it
    under ``root`` (or ``root/shapes3d``; default the data cache) and renders otherwise.
    ``factor_sizes`` applies to files only (tiny test grids, see :func:`open_shapes3d_h5`);
    ``image_size`` and ``supersample`` to the renderer only.
    """
    if source not in ("auto", "file", "procedural"):
        raise DatasetError(f"source: expected 'auto', 'file' or 'procedural', got {source!r}")
    path = None if source == "procedural" else find_file("shapes3d", SHAPES3D_FILE.name, root)
    if path is not None:
        if image_size != _IMAGE_HW[0]:
            raise DatasetError(
                f"image_size: {path} holds 64x64 images, got image_size={image_size!r} "
                "(only the procedural source renders other sizes)"
            )
        return open_shapes3d_h5(path, factor_sizes=factor_sizes)
    if source == "file":
        base = cache_dir(root)
        raise DatasetError(
            f"shapes3d: {SHAPES3D_FILE.name} not found in {base} or {base / 'shapes3d'}; run "
            "`vaelens data download shapes3d` or place the file there by hand"
        )
    if factor_sizes is not None and tuple(factor_sizes) != SHAPES3D_FACTOR_SIZES:
        raise DatasetError(
            f"factor_sizes: the procedural renderer has the full grid {list(SHAPES3D_FACTOR_SIZES)}, "
            f"got {list(factor_sizes)}"
        )
    return Shapes3D(image_size=image_size, supersample=supersample)


def _loader(
    source: str = "auto", root: Path | None = None, **kwargs: Any
) -> Shapes3D | Shapes3DFile:
    return check_dataset(load_shapes3d(source, root, **kwargs))  # type: ignore[return-value]


SPEC = register_dataset(
    DatasetSpec(
        name="shapes3d",
        description=(
            "3DShapes (Burgess & Kim 2018): 480,000 64x64x3 renders of an object in a room; "
            "official 3dshapes.h5 or a procedural renderer of the same six factors"
        ),
        factor_names=SHAPES3D_FACTOR_NAMES,
        factor_sizes=SHAPES3D_FACTOR_SIZES,
        image_shape=(3, *_IMAGE_HW),
        loader=_loader,
        sources=("procedural", "file"),
        files=(SHAPES3D_FILE,),
    )
)
