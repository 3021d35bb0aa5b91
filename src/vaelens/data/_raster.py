"""Vectorised point-in-shape tests for binary rasterisation.

A binary sprite is rasterised by testing the *centre* of every pixel against the shape:
pixel ``(row i, col j)`` has centre ``(x, y) = (j + 0.5, i + 0.5)`` and is on iff that point
lies inside (boundary included). Every function here takes arrays of point coordinates of
any (broadcastable) shape and returns a boolean array of the broadcast shape, so a whole
batch of images is one call with no Python loop over pixels or images.

Coordinates are in a shape's own frame ``(u, v)`` (see :func:`to_shape_frame`); ``v`` grows
downwards like image rows.
"""

from __future__ import annotations

import numpy as np

from vaelens.errors import ArgumentError

__all__ = [
    "in_box",
    "in_convex_polygon",
    "in_disc",
    "in_disc_point_hull",
    "in_ellipse",
    "pixel_centres",
    "to_shape_frame",
]


def pixel_centres(
    height: int, width: int, dtype: type = np.float32
) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the pixels of an ``height x width`` image: ``x = j + 0.5`` ``(1, W)``, ``y = i + 0.5`` ``(H, 1)``."""
    x = (np.arange(width, dtype=dtype) + dtype(0.5))[None, :]
    y = (np.arange(height, dtype=dtype) + dtype(0.5))[:, None]
    return x, y


def to_shape_frame(
    x: np.ndarray,
    y: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    angle: np.ndarray,
    scale: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Map image points into a shape's frame: rotate by ``angle`` about ``(cx, cy)``, divide by ``scale``.

    ``dx = x - cx, dy = y - cy``;
    ``u = (dx cos t - dy sin t) / s``, ``v = (dx sin t + dy cos t) / s``.
    With ``y`` pointing down, a growing ``t`` turns the drawn shape counter-clockwise on screen.
    All arguments broadcast together.
    """
    dx = x - cx
    dy = y - cy
    inv = 1.0 / np.asarray(scale)
    c = np.cos(angle) * inv  # fold 1/s into the (usually per-image) coefficients
    s = np.sin(angle) * inv
    u = dx * c - dy * s
    v = dx * s + dy * c
    return u, v


def in_box(u: np.ndarray, v: np.ndarray, half_u: float, half_v: float) -> np.ndarray:
    """``|u| <= half_u and |v| <= half_v`` (an axis-aligned rectangle centred at the origin)."""
    return (np.abs(u) <= half_u) & (np.abs(v) <= half_v)


def in_ellipse(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """``(u / a)^2 + (v / b)^2 <= 1`` (semi-axis ``a`` along ``u``, ``b`` along ``v``)."""
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def in_disc(u: np.ndarray, v: np.ndarray, cu: float, cv: float, r: float) -> np.ndarray:
    """``(u - cu)^2 + (v - cv)^2 <= r^2``."""
    return (u - cu) ** 2 + (v - cv) ** 2 <= r * r


def in_disc_point_hull(
    u: np.ndarray, v: np.ndarray, cu: float, cv: float, r: float, pu: float, pv: float
) -> np.ndarray:
    """Inside the convex hull of the disc ``(cu, cv, r)`` and the point ``(pu, pv)``.

    With ``d = |c - p| > r``, axis ``a = (c - p) / d`` and half-angle ``alpha = asin(r / d)``,
    a point ``q`` is in the hull iff it is in the disc, or, with ``w = q - p``,
    ``t = w . a`` and ``h = |w - t a|``: ``0 <= t <= d cos^2(alpha)`` and
    ``h <= t tan(alpha)`` (the cone from ``p`` up to the tangent points).
    A point inside the disc (``d <= r``) leaves the disc itself.
    """
    du, dv = cu - pu, cv - pv
    d = float(np.hypot(du, dv))
    disc = in_disc(u, v, cu, cv, r)
    if d <= r:
        return disc
    au, av = du / d, dv / d
    wu, wv = u - pu, v - pv
    t = wu * au + wv * av
    h = np.abs(wu * av - wv * au)
    cos2 = 1.0 - (r / d) ** 2
    tan_a = (r / d) / np.sqrt(cos2)
    cone = (t >= 0.0) & (t <= d * cos2) & (h <= t * tan_a)
    return disc | cone


def in_convex_polygon(u: np.ndarray, v: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Inside (or on) the convex polygon with ``vertices`` ``(K, 2)`` given in either winding.

    A point is inside iff the cross products ``(p_{k+1} - p_k) x (q - p_k)`` all have the
    same sign (zero allowed).
    """
    verts = np.asarray(vertices, dtype=np.float64)
    if verts.ndim != 2 or verts.shape[1] != 2 or verts.shape[0] < 3:
        raise ArgumentError(f"vertices: expected shape (K>=3, 2), got {verts.shape}")
    nxt = np.roll(verts, -1, axis=0)
    pos = np.ones(np.broadcast(u, v).shape, dtype=bool)
    neg = np.ones_like(pos)
    for (u0, v0), (u1, v1) in zip(verts, nxt, strict=True):
        cross = (u1 - u0) * (v - v0) - (v1 - v0) * (u - u0)
        pos &= cross >= 0.0
        neg &= cross <= 0.0
    return pos | neg
