"""Signed distance functions for drawing the synthetic shapes, and an anti-aliased painter.

A signed distance function (SDF) gives, for every pixel, its distance to a shape's outline:
negative inside, positive outside. One array then answers three questions: which pixels
belong to the shape (``sdf < 0``), which lie on its boundary (``abs(sdf) < band``), and how
much of a pixel the shape covers (``clip(0.5 - sdf, 0, 1)``, a one-pixel anti-aliasing ramp).

Every SDF takes ``dy`` of shape (h, 1) and ``dx`` of shape (1, w), the offsets of a window's
pixels from the shape's centre, and returns an (h, w) float32 array by broadcasting.
"""
from __future__ import annotations

import numpy as np

__all__ = ["rotate", "sdf_circle", "sdf_ring", "sdf_square", "sdf_triangle", "sdf_ellipse",
           "sdf_segment", "window", "paint"]


def rotate(dy, dx, theta):
    """Coordinates (v, u) in the frame of a shape rotated by ``theta``."""
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    return c * dy - s * dx, c * dx + s * dy


def sdf_circle(dy, dx, radius):
    """Disc of ``radius`` centred at the origin."""
    return np.sqrt(dx * dx + dy * dy) - radius


def sdf_ring(dy, dx, r_out, r_in):
    """Annulus between ``r_in`` and ``r_out``: a circle's distance folded about the mid radius."""
    mid, half = (r_out + r_in) / 2, (r_out - r_in) / 2
    return np.abs(np.sqrt(dx * dx + dy * dy) - mid) - half


def sdf_square(dy, dx, half_side, theta):
    """Square of side ``2 * half_side`` rotated by ``theta``."""
    v, u = rotate(dy, dx, theta)
    qu, qv = np.abs(u) - half_side, np.abs(v) - half_side
    outside = np.sqrt(np.maximum(qu, 0) ** 2 + np.maximum(qv, 0) ** 2)
    return outside + np.minimum(np.maximum(qu, qv), 0)


def sdf_triangle(dy, dx, side, theta):
    """Equilateral triangle of ``side`` with its centroid at the origin, rotated by ``theta``."""
    # Fold the plane onto one half (mirror symmetry), then onto the nearest edge (the
    # 120-degree symmetry), and measure the distance to that edge segment.
    v, u = rotate(dy, dx, theta)
    r, k = side / 2, np.float32(np.sqrt(3.0))
    pu, pv = np.abs(u) - r, v + r / k
    fold = pu + k * pv > 0
    pu, pv = np.where(fold, (pu - k * pv) / 2, pu), np.where(fold, (-k * pu - pv) / 2, pv)
    pu = pu - np.clip(pu, -2 * r, 0)
    return -np.sqrt(pu * pu + pv * pv) * np.sign(pv)


def sdf_ellipse(dy, dx, a, b, theta):
    """Ellipse with semi-axes ``a`` (along u) and ``b`` (along v), rotated by ``theta``."""
    # Not an exact distance, but close enough near the edge for anti-aliased painting.
    v, u = rotate(dy, dx, theta)
    return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1) * min(a, b)


def sdf_segment(dy, dx, ey, ex, half_width):
    """Thick line from the origin to (ey, ex), ``2 * half_width`` wide, with round caps."""
    t = np.clip((dx * ex + dy * ey) / (ex * ex + ey * ey + 1e-6), 0, 1)
    return np.sqrt((dx - t * ex) ** 2 + (dy - t * ey) ** 2) - half_width


def window(height, width, cy, cx, reach):
    """Slices of the image within ``reach`` of (cy, cx), and offsets of its pixels from it.

    Evaluating a shape only on its bounding window keeps small shapes cheap on big images.
    """
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, height)
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, width)
    if y0 >= y1 or x0 >= x1:
        return None
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)  # (h, 1)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)  # (1, w)
    return (slice(y0, y1), slice(x0, x1)), dy, dx


def paint(image, slices, sdf, colour):
    """Blend ``colour`` ((3,) or (h, w, 3)) into ``image`` where ``sdf`` < 0, anti-aliased."""
    cover = np.clip(np.float32(0.5) - sdf, 0, 1)[..., None]  # (h, w, 1)
    region = image[slices]  # a view: painting it paints the image
    region += cover * (colour - region)
