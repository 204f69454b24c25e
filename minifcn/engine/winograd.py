"""A 3x3 stride-1 convolution in 4/9 of the products: Winograd's minimal filtering F(2x2, 3x3).

The book's convolution (:func:`minifcn.ops.conv.conv2d_forward`) spends 9 multiply-adds per
output pixel, input channel and output channel. Winograd's minimal filtering algorithm (Lavin
and Gray, 2016) computes each 2x2 block of outputs from the 4x4 block of inputs under it with
16, by mixing the inputs and the kernel before the multiplications and mixing the 16
products after them. In one dimension, two outputs of a 3-tap filter ``g`` on inputs
``d0..d3``::

    y0 = d0 g0 + d1 g1 + d2 g2 = m0 + m1 + m2
    y1 = d1 g0 + d2 g1 + d3 g2 = m1 - m2 - m3
    m0 = (d0 - d2) g0            m1 = (d1 + d2) (g0 + g1 + g2) / 2
    m3 = (d1 - d3) g2            m2 = (d2 - d1) (g0 - g1 + g2) / 2

Four products instead of six; in two dimensions (rows, then columns) 16 instead of 36. In
matrices, ``Y = A^T [(G g G^T) * (B^T d B)] A`` with ``*`` element by element:

- ``B^T d B`` (4x4) mixes the input block: only additions (:data:`INPUT_MIX`);
- ``G g G^T`` (4x4) mixes the kernel: once per call (:data:`KERNEL_MIX`);
- ``A^T (.) A`` (2x2) mixes the 16 products back into outputs (:data:`OUTPUT_MIX`).

Summed over the input channels, each of the 16 products is a matrix product: for every
position ``(a, b)`` of the 4x4 block, ``M[a, b] = U[a, b] @ V[a, b]`` with ``U[a, b]``
(C_out, C_in) the mixed kernels and ``V[a, b]`` (C_in, blocks) the mixed inputs. So the
convolution becomes 16 GEMMs of a quarter of the output's size each: 16/4 = 4 products per
output pixel and channel pair instead of 9. The mixing is element-wise work, a few passes over
arrays four times the input's size, split over the CPU's threads by channel.

It pays where the products dominate, that is, with many channels: FCN's ``conv3_2`` to
``conv5_3`` (``docs/performance.md``, *Fewer multiplications*). The mixing matrices hold 1,
-1 and 1/2, so the result differs from the book's by float rounding only (tested against the
book in ``tests/test_winograd.py``).

Layouts: ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in, 3, 3), ``out`` (N, C_out, H_out,
W_out).
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module
from ..ops._util import pair
from .memory import scratch
from .threads import split_work

# F(2x2, 3x3)'s three matrices (Lavin and Gray, 2016): kernel G (4x3), input B^T (4x4),
# output A^T (2x4). Written out in the functions below as the additions they stand for.
KERNEL_MIX = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
INPUT_MIX = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
OUTPUT_MIX = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])

# Bytes of mixed inputs and products per band of block rows: long GEMMs, mixing passes that
# find their data in the cache, and one scratch buffer small enough to keep. Chosen on the
# whole 500x500 forward (docs/performance.md, *Fewer multiplications*).
BAND_BYTES = 24 * 2**20
# Channels from which the 16 smaller products outweigh the mixing (docs/performance.md, *Fewer
# multiplications*): VGG16's conv3_2 and every 3x3 layer after it.
MIN_IN_CHANNELS, MIN_OUT_CHANNELS = 256, 256


def winograd_pays(weight, stride, padding):
    """True for a 3x3, stride-1 convolution padded by at most 2, with at least
    ``MIN_IN_CHANNELS`` input and ``MIN_OUT_CHANNELS`` output channels, on NumPy arrays.

    CuPy arrays keep the banded route: the GPU's trade between the mixing and the products
    has not been measured.
    """
    c_out, c_in, kh, kw = weight.shape
    return ((kh, kw) == (3, 3) and pair(stride) == (1, 1) and max(pair(padding)) <= 2
            and c_in >= MIN_IN_CHANNELS and c_out >= MIN_OUT_CHANNELS
            and get_array_module(weight) is np)


def mix_kernel(weight):
    """``U[a, b] = (G g G^T)[a, b]`` for every kernel ``g``.

    Parameters
    ----------
    weight : array, shape (C_out, C_in, 3, 3)

    Returns
    -------
    U : array, shape (4, 4, C_out, C_in), contiguous: ``U[a, b]`` is one GEMM's left matrix.
    """
    xp = get_array_module(weight)
    c_out, c_in = weight.shape[:2]
    g = KERNEL_MIX
    mix = xp.asarray(np.kron(g, g), dtype=weight.dtype)  # (16, 9): (a, b) <- (i, j)
    # (9, C_out*C_in), a transposed view: the product reads it as it lies, without the copy
    # that made the mixing take twice as long (5.5 against 3.0 ms for 512 x 512 kernels)
    taps = weight.reshape(c_out * c_in, 9).T
    return (mix @ taps).reshape(4, 4, c_out, c_in)  # U[a, b] = sum_ij G[a, i] g[i, j] G[b, j]


def mix_input(d, v, t=None):
    """``v[a, b] = (B^T d B)[a, b]`` for every 4x4 block of ``d`` (blocks overlap by 2).

    Parameters
    ----------
    d : array, shape (N, C, 2*R + 2, 2*S + 2)
        The padded input under ``R x S`` blocks of output.
    v : array, shape (4, 4, C, N, R, S)
        Written: position ``(a, b)`` of every block.
    t : array, shape (N, C, R, 2*S + 2), optional
        Room for one row mixture (allocated when not given).
    """
    xp = get_array_module(d)
    r, s = v.shape[4:]
    # the four rows of every block: (N, C, R, 2S + 2) each
    d0, d1, d2, d3 = (d[:, :, i:i + 2 * r:2] for i in range(4))
    t = xp.empty(d0.shape, dtype=d.dtype) if t is None else t
    # rows first: B^T's rows take d0 - d2, d1 + d2, d2 - d1, d1 - d3 of each block's rows
    for a, (p, q, mix) in enumerate(((d0, d2, xp.subtract), (d1, d2, xp.add),
                                      (d2, d1, xp.subtract), (d1, d3, xp.subtract))):
        mix(p, q, out=t)
        e0, e1, e2, e3 = (t[..., j:j + 2 * s:2] for j in range(4))  # (N, C, R, S)
        va = v[a].transpose(0, 2, 1, 3, 4)  # (4, N, C, R, S): the GEMM's layout, seen as NCHW
        xp.subtract(e0, e2, out=va[0])  # then the same four sums along the columns
        xp.add(e1, e2, out=va[1])
        xp.subtract(e2, e1, out=va[2])
        xp.subtract(e1, e3, out=va[3])


def mix_output(m, out, rows=None, y=None):
    """``out`` = ``A^T m A`` for every block: the 2x2 outputs from the 16 products.

    Parameters
    ----------
    m : array, shape (4, 4, C, N, R, S)
        The products of every block position.
    out : array, shape (N, C, H, W), with ``2R - 1 <= H <= 2R`` and ``2S - 1 <= W <= 2S``
        Written: output pixel ``(2i + a, 2j + b)`` is block ``(i, j)``'s ``(a, b)``.
    rows, y : arrays, shapes (4, C, N, R, S) and (C, N, R, S), optional
        Room for one row mixture and one output phase (allocated when not given).
    """
    xp = get_array_module(m)
    rows = xp.empty(m.shape[1:], dtype=m.dtype) if rows is None else rows
    y = xp.empty(m.shape[2:], dtype=m.dtype) if y is None else y
    for a in range(2):
        output_row(m, a, rows)  # along the block's rows first
        for b in range(2):
            output_row(rows, b, y)  # then along its columns
            target = out[:, :, a::2, b::2]  # (N, C, ceil((H - a) / 2), ceil((W - b) / 2))
            target[...] = y[:, :, :target.shape[2], :target.shape[3]].transpose(1, 0, 2, 3)


def output_row(p, k, out):
    """Row ``k`` of ``A^T`` applied along the first axis of ``p`` (4 entries) into ``out``:
    ``p0 + p1 + p2`` for ``k = 0``, ``p1 - p2 - p3`` for ``k = 1``."""
    xp = get_array_module(p)
    if k == 0:
        xp.add(p[0], p[1], out=out)
        out += p[2]
    else:
        xp.subtract(p[1], p[2], out=out)
        out -= p[3]


def winograd_conv(x, weight, padding, out, rows=None, cols=None, mixed_kernel=None):
    """``out[:, :, rows, cols]`` = the 3x3, stride-1 convolution of ``x`` there, without bias.

    Parameters
    ----------
    x : array, shape (N, C_in, H, W)
    weight : array, shape (C_out, C_in, 3, 3)
    padding : (int, int)
        The convolution's zero padding ``(ph, pw)``, each at most 2.
    out : array, shape (N, C_out, H_out, W_out)
        ``H_out = H + 2*ph - 2``, ``W_out = W + 2*pw - 2``; written on ``rows`` x ``cols``
        only.
    rows, cols : slice, optional
        The output rectangle to compute (default: all of it).
    mixed_kernel : array, shape (4, 4, C_out, C_in), optional
        ``mix_kernel(weight)``, when the caller computes several rectangles with one weight.

    Notes
    -----
    The rectangle is cut into 2x2 blocks (the last row or column of blocks may hang one pixel
    over its edge and is cut back), and into bands of block rows of about ``BAND_BYTES`` of
    mixed inputs and products. For each band: the padded input under it, mixed
    (:func:`mix_input`); 16 GEMMs with the mixed kernels (:func:`mix_kernel`); the products
    mixed into the output (:func:`mix_output`). The mixing of a band is split over the CPU's
    threads by channel, each thread writing into slices of one scratch buffer.
    """
    xp = get_array_module(x)
    n, c_in, h, w = x.shape
    c_out = weight.shape[0]
    ph, pw = padding
    out_h, out_w = out.shape[2:]
    rows = slice(0, out_h) if rows is None else rows
    cols = slice(0, out_w) if cols is None else cols
    if rows.stop <= rows.start or cols.stop <= cols.start or n == 0:
        return
    u = (mix_kernel(weight) if mixed_kernel is None else mixed_kernel).reshape(16, c_out, c_in)
    blocks_wide = (cols.stop - cols.start + 1) // 2
    per_block_row = 16 * (c_in + c_out) * n * blocks_wide * x.itemsize  # mixed inputs and products
    band = max(1, min((rows.stop - rows.start + 1) // 2, BAND_BYTES // per_block_row))
    width = 2 * blocks_wide + 2
    for r0 in range(rows.start, rows.stop, 2 * band):
        r1 = min(r0 + 2 * band, rows.stop)  # output rows [r0, r1) of this band
        blocks = (r1 - r0 + 1) // 2
        height = 2 * blocks + 2
        length = n * blocks * blocks_wide
        # every buffer is a slice of one scratch array, the banded route's column buffer, kept
        # from call to call (so the route adds nothing to the memory the bands keep where it
        # fits there); the threads only write into slices of it
        shapes = {"v": (4, 4, c_in, n, blocks, blocks_wide), "m": (16, c_out, length),
                  "canvas": (n, c_in, height, width),
                  "mixing": (max(n * c_in * blocks * width, 5 * c_out * length),)}
        room = scratch("columns", (sum(math.prod(sh) for sh in shapes.values()),), x.dtype, xp)
        parts, at = {}, 0
        for key, shape in shapes.items():
            parts[key] = room[at:at + math.prod(shape)].reshape(shape)
            at += math.prod(shape)
        v, m, canvas, room = parts["v"], parts["m"], parts["canvas"], parts["mixing"]
        row_mix = (n, c_in, blocks, width)  # one row mixture of the input (mix_input's t)
        out_mix = (5, c_out, n, blocks, blocks_wide)  # mix_output's rows and y
        # input rows and columns under the band, in the padded input's coordinates, and the
        # image's own among them
        top, left = r0, cols.start
        lo_r, hi_r = max(top, ph), min(top + height, ph + h)
        lo_c, hi_c = max(left, pw), min(left + width, pw + w)
        t = room[:math.prod(row_mix)].reshape(row_mix)

        def mix_in(c0, c1):  # input channels c0:c1
            d = canvas[:, c0:c1]
            d[...] = 0  # (only the padding needs it; the image part is overwritten next)
            if hi_r > lo_r and hi_c > lo_c:
                d[:, :, lo_r - top:hi_r - top, lo_c - left:hi_c - left] = \
                    x[:, c0:c1, lo_r - ph:hi_r - ph, lo_c - pw:hi_c - pw]
            mix_input(d, v[:, :, c0:c1], t[:, c0:c1])

        split_work(mix_in, c_in, v.nbytes + canvas.nbytes, xp)
        v2 = v.reshape(16, c_in, length)
        for k in range(16):
            xp.matmul(u[k], v2[k], out=m[k])  # (C_out, C_in) @ (C_in, blocks)
        m6 = m.reshape(4, 4, c_out, n, blocks, blocks_wide)
        target = out[:, :, r0:r1, cols]
        mixing = room[:math.prod(out_mix)].reshape(out_mix)

        def mix_out(c0, c1):  # output channels c0:c1
            mix_output(m6[:, :, c0:c1], target[:, c0:c1], mixing[:4, c0:c1], mixing[4, c0:c1])

        split_work(mix_out, c_out, m.nbytes, xp)
