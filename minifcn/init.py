"""Initialisers: bilinear upsampling kernels for transposed convolutions.

A transposed convolution with stride ``s`` and the bilinear kernel of size ``k = 2s`` is
bilinear interpolation by a factor ``s``. FCN starts every ``upscore*`` layer this way, on the
channel diagonal only (class ``c`` upsamples into class ``c``; the cross-class entries are
zero), and by default keeps them fixed.
"""
from __future__ import annotations

import numpy as np


def bilinear_kernel(k, dtype=np.float64):
    """The 2-D bilinear interpolation kernel of size ``k x k``.

    Parameters
    ----------
    k : int
        Kernel size (``2 * factor`` for upsampling by ``factor``).

    Returns
    -------
    kernel : numpy.ndarray, shape (k, k)
        Outer product of the 1-D tent ``1 - |i - centre| / f`` with ``f = (k + 1) // 2`` and
        ``centre = f - 1`` (odd ``k``) or ``f - 0.5`` (even ``k``). ``k = 4`` gives the profile
        ``[0.25, 0.75, 0.75, 0.25]``.
    """
    if k < 1:
        raise ValueError(f"bilinear_kernel: size must be >= 1, got {k}")
    f = (k + 1) // 2
    centre = f - 1 if k % 2 == 1 else f - 0.5
    tent = 1 - np.abs(np.arange(k) - centre) / f  # (k,)
    return np.outer(tent, tent).astype(dtype)  # (k, k)


def bilinear_upsampling_weight(channels, k, dtype=np.float32):
    """Transposed-convolution weight ``(channels, channels, k, k)`` that upsamples each
    channel bilinearly into itself: ``weight[c, c] = bilinear_kernel(k)``, zero elsewhere."""
    weight = np.zeros((channels, channels, k, k), dtype=dtype)
    weight[np.arange(channels), np.arange(channels)] = bilinear_kernel(k, dtype)
    return weight
