"""A built-in toy segmentation set: coloured shapes on cluttered backgrounds.

Every command of minifcn runs on this set by default, so nothing has to be downloaded. An image
holds 1 to 3 objects of four classes, drawn over a textured, noisy background with distractors:

=====  ==========  =======================================================
label  class       what it looks like
=====  ==========  =======================================================
0      background  colour gradients, stripes or checks, noise, thin lines
                   and elongated blobs (distractors are background too)
1      circle      filled disc
2      square      filled square, any rotation
3      triangle    filled equilateral triangle, any rotation
4      ring        annulus; its hole shows whatever lies beneath
255    void        a thin band around every object boundary, as in VOC
=====  ==========  =======================================================

Object colours are drawn independently of the class, so colour tells the network nothing: it
has to learn shape, the same lesson FCN learns on real images. Objects span about 20-50 % of
the image side; later objects lie on top of earlier ones and labels follow what is visible.

Each shape is described by a signed distance function (negative inside, positive outside): the
label is its sign, the void band is where its magnitude is below half the band width, and the
painted colour fades over one pixel across the zero level, which anti-aliases the edges.
"""
from __future__ import annotations

import numpy as np

from minifcn.data.shapes import (
    paint, rotate, sdf_circle, sdf_ellipse, sdf_ring, sdf_segment, sdf_square, sdf_triangle,
    window,
)

SYNTHETIC_CLASSES = ("background", "circle", "square", "triangle", "ring")
VOID_LABEL = 255

__all__ = ["SYNTHETIC_CLASSES", "make_sample", "sample_batch", "SyntheticShapes"]


# ---- the pieces of one image

def _background(rng, height, width):
    """Low-frequency colour field plus an optional stripe or checker texture, (H, W, 3)."""
    n = int(rng.integers(2, 5))  # coarse grid of n x n random colours, bilinearly stretched
    coarse = rng.uniform(0, 255, size=(n, n, 3)).astype(np.float32)
    ry = np.maximum(0, 1 - np.abs(np.linspace(0, n - 1, height)[:, None] - np.arange(n)))
    rx = np.maximum(0, 1 - np.abs(np.linspace(0, n - 1, width)[:, None] - np.arange(n)))
    rows = np.tensordot(ry.astype(np.float32), coarse, axes=(1, 0))  # (H, n, 3)
    image = rx.astype(np.float32) @ rows  # (W, n) @ (H, n, 3) -> (H, W, 3)

    kind = rng.integers(3)  # 0 plain, 1 stripes, 2 checks
    if kind:
        theta = rng.uniform(0, np.pi)
        period = rng.uniform(4, 16) * min(height, width) / 96
        v, u = rotate(np.arange(height, dtype=np.float32)[:, None],
                      np.arange(width, dtype=np.float32)[None, :], theta)
        wave = np.sin(np.float32(2 * np.pi / period) * u)
        if kind == 2:
            wave = np.sign(wave * np.sin(np.float32(2 * np.pi / period) * v))
        tint = rng.uniform(-1, 1, size=3).astype(np.float32) * rng.uniform(8, 25)
        image += wave[..., None] * tint
    return image


def _distractors(rng, image, scale):
    """Thin lines and elongated blobs: clutter that belongs to the background class.

    One image in three gets one: a line or a blob, equally often. More clutter than that
    makes the task much slower to learn from scratch (measured: with 0-2 lines and 0-1 blobs
    in every image plus stronger noise, a narrow FCN-8s reached mean IU 0.27 after 1,250
    iterations, against 0.49 without any clutter).
    """
    height, width = image.shape[:2]
    kind = rng.integers(6)  # 0: a line, 1: a blob, otherwise none
    if kind == 0:
        y0, x0 = rng.uniform(0, height), rng.uniform(0, width)
        ey, ex = rng.uniform(-0.6, 0.6, size=2) * (height, width)
        half_width = rng.uniform(0.5, 1.5) * scale
        win = window(height, width, y0 + ey / 2, x0 + ex / 2,
                     np.hypot(ey, ex) / 2 + half_width + 1)
        if win is not None:
            sl, dy, dx = win
            # The window is centred on the segment's midpoint; the SDF wants its start.
            sdf = sdf_segment(dy + np.float32(ey / 2), dx + np.float32(ex / 2), ey, ex,
                              half_width)
            paint(image, sl, sdf, rng.uniform(0, 255, size=3).astype(np.float32))
    elif kind == 1:
        a = rng.uniform(0.06, 0.18) * min(height, width)
        b = a / rng.uniform(2.5, 5.0)  # elongated, so never mistaken for a circle
        win = window(height, width, rng.uniform(0, height), rng.uniform(0, width), a + 1)
        if win is not None:
            sl, dy, dx = win
            sdf = sdf_ellipse(dy, dx, a, b, rng.uniform(0, np.pi))
            paint(image, sl, sdf, rng.uniform(0, 255, size=3).astype(np.float32))


def _shape_sdf(cls, dy, dx, size, rng):
    """Signed distance of an object of class ``cls`` whose extent is about ``size`` px."""
    if cls == 1:
        return sdf_circle(dy, dx, size / 2)
    if cls == 2:
        return sdf_square(dy, dx, size / 2.3, rng.uniform(0, np.pi / 2))
    if cls == 3:
        return sdf_triangle(dy, dx, size * 1.1, rng.uniform(0, 2 * np.pi))
    r_out = size / 2
    return sdf_ring(dy, dx, r_out, r_out * rng.uniform(0.4, 0.65))


def _pick_colour(rng, under):
    """A random colour, redrawn a few times if it nearly matches what lies beneath.

    The rule never looks at the class, so colours stay class-independent; it only avoids
    invisible objects whose labels nothing in the image could justify.
    """
    mean = under.reshape(-1, 3).mean(axis=0) if under.size else np.zeros(3, np.float32)
    for _ in range(8):
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
        if np.linalg.norm(colour - mean) > 80:
            break
    return colour


def make_sample(rng, height=96, width=96):
    """Draw one image and its label map.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness; the same generator state gives the same sample.
    height, width : int
        Image size in pixels.

    Returns
    -------
    image : (H, W, 3) uint8 array
        RGB image.
    label : (H, W) uint8 array
        Classes 0..4 of :data:`SYNTHETIC_CLASSES`, 255 on the void band around objects.
    """
    side = min(height, width)
    scale = side / 96  # lengths below are tuned at 96 px and scale with the image
    image = _background(rng, height, width)
    _distractors(rng, image, scale)
    label = np.zeros((height, width), dtype=np.uint8)
    half_band = max(0.5, 0.75 * scale)  # void band ~1.5 px wide at 96 px, ~8 px at 500 px

    centres = []
    for _ in range(rng.integers(1, 4)):
        cls = int(rng.integers(1, 5))
        size = rng.uniform(0.2, 0.5) * side
        # Up to half the radius may leave the frame. Retry a few times to keep centres apart
        # so that objects rarely hide each other completely.
        for _ in range(6):
            cy = rng.uniform(size / 4, height - size / 4)
            cx = rng.uniform(size / 4, width - size / 4)
            if all(np.hypot(cy - y, cx - x) > 0.5 * (size + s) / 2 for y, x, s in centres):
                break
        centres.append((cy, cx, size))
        sl, dy, dx = window(height, width, cy, cx, 0.65 * size + half_band + 1)
        sdf = _shape_sdf(cls, dy, dx, size, rng)
        inside = sdf < 0
        colour = _pick_colour(rng, image[sl][inside])
        # A gentle linear shading across the object, so fills are not perfectly flat.
        g = rng.uniform(-0.25, 0.25, size=2).astype(np.float32) / np.float32(size / 2)
        shade = np.clip(1 + g[0] * dy + g[1] * dx, 0.5, 1.5)[..., None]  # (h, w, 1)
        paint(image, sl, sdf, np.clip(colour * shade, 0, 255))
        region = label[sl]  # a view into the label map
        region[inside] = cls
        region[np.abs(sdf) < half_band] = VOID_LABEL

    sigma = rng.uniform(1, 3)
    image += rng.standard_normal((height, width, 3), dtype=np.float32) * np.float32(sigma)
    return np.clip(image, 0, 255).astype(np.uint8), label


def _as_hw(size):
    """``96`` or ``(96, 128)`` -> ``(height, width)``."""
    if np.isscalar(size):
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


def sample_batch(rng, batch_size, size=(96, 96)):
    """A batch of freshly drawn samples of one size, for training on an endless stream.

    Parameters
    ----------
    rng : numpy.random.Generator
    batch_size : int
        N.
    size : int or (int, int)
        (H, W) of every image.

    Returns
    -------
    images : (N, H, W, 3) uint8 array
    labels : (N, H, W) uint8 array
    """
    height, width = _as_hw(size)
    images = np.empty((batch_size, height, width, 3), dtype=np.uint8)
    labels = np.empty((batch_size, height, width), dtype=np.uint8)
    for n in range(batch_size):
        images[n], labels[n] = make_sample(rng, height, width)
    return images, labels


class SyntheticShapes:
    """A fixed, indexable set of synthetic samples, each reproducible from (seed, index).

    Parameters
    ----------
    num_samples : int
        Length of the set.
    size : int or (int, int)
        (H, W) of every image; ignored when ``size_range`` is given.
    seed : int
        Different seeds give different sets; use one for training and another for validation.
    size_range : (int, int), optional
        Variable-size mode: the height and width of each sample are drawn independently from
        ``[lo, hi]``, for the reference's batch-1 whole-image training.

    Notes
    -----
    Sample ``i`` is generated on demand from ``numpy.random.default_rng([seed, i])``, so
    reading it twice, in any order, gives identical arrays and nothing is stored.
    """

    num_classes = len(SYNTHETIC_CLASSES)
    class_names = SYNTHETIC_CLASSES

    def __init__(self, num_samples, size=(96, 96), seed=0, size_range=None):
        self.num_samples = int(num_samples)
        self.size = _as_hw(size)
        self.seed = int(seed)
        self.size_range = None if size_range is None else tuple(int(s) for s in size_range)
        self.ids = [f"shapes_{self.seed}_{i:06d}" for i in range(self.num_samples)]

    def __len__(self):
        return self.num_samples

    def __getitem__(self, index):
        """Sample ``index``: ``(image (H, W, 3) uint8, label (H, W) uint8)``."""
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        index %= self.num_samples
        rng = np.random.default_rng([self.seed, index])
        if self.size_range is None:
            height, width = self.size
        else:
            lo, hi = self.size_range
            height, width = (int(v) for v in rng.integers(lo, hi + 1, size=2))
        return make_sample(rng, height, width)

    def __repr__(self):
        shape = self.size_range if self.size_range else self.size
        return f"SyntheticShapes(num_samples={self.num_samples}, size={shape}, seed={self.seed})"
