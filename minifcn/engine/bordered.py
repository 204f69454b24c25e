"""A convolution of FCN's trunk that computes only what the image can reach.

:mod:`minifcn.engine.border` tells, for every convolution of the trunk, which positions of
its output are the blank-image constant and which depend on the input (the box and the
frames), and what the constants are. These functions use that:

- :func:`bordered_forward`: the output is the constant, written where it holds, and the
  engine's convolution on each input-dependent rectangle
  (:func:`minifcn.engine.rectangles.convolve_rectangles`: bands with a row and column range,
  or Winograd's F(2x2, 3x3)): the GEMMs shrink to the box and the frames. A Winograd layer
  whose output is mostly input-dependent computes its whole map instead;
- :func:`bordered_weight_grad`: ``dW = sum_o dout[o] cols[o]^T`` over the input-dependent
  positions only, plus one outer product for all the others, whose columns are all the same
  vector (the constant below, at every tap): ``(sum of dout there) x (constant patch)``;
- :func:`bordered_input_grad`: the input gradient when training takes none from the
  network's input (``conv1_1`` takes none): then each layer below reads its ``dout`` only on
  the box and frames and through per-channel sums over the rest (a ReLU's mask is one value
  per channel on the constant; a pooling sends each window's gradient to one pixel; a
  convolution's weight and bias gradients read sums there, and its input gradient on the
  box and frames reads ``dout`` on its own box and frames only). So the input gradient is
  computed on the box and frames, and each channel's remaining sum is spread as a mean.

The first two return what the book returns, the third the book's input gradient on the box
and frames and its per-channel sums (all tested in ``tests/test_border.py``).

Layouts: ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in, kh, kw).
"""
from __future__ import annotations

from ..backend import get_array_module
from .bands import column_bands, conv_weight_grad
from .im2col import accumulate
from .rectangles import convolve_rectangles, is_tall, transposed
from .stride1 import backward_is_convolution, input_grad_into, rotated_kernel
from .winograd import mix_kernel, winograd_conv, winograd_pays

# From this share of input-dependent outputs on, a layer computes its whole map: the frames'
# small products cost more than the thin constant ring saves (docs/performance.md, *Fewer
# multiplications* and *Frames as strips, tall ones transposed*). A Winograd layer makes one
# call over the map and keeps its border for the backward; a banded one drops its border
# (:func:`keeps_border`).
WHOLE_SHARE = 0.75


def keeps_border(border, weight, stride, padding):
    """True when a convolution told ``border`` computes by it (:func:`bordered_forward`, and
    the bordered gradients); False when it takes the plain route over the whole map.

    The plain route takes a layer with nothing constant, and a banded layer (not
    :func:`minifcn.engine.winograd.winograd_pays`) whose output is at least ``WHOLE_SHARE``
    input-dependent. Measured on the demo's narrow net (batch 4, 96x96, pad 69), ``conv4_1``
    (16 -> 32 channels at 29x29, 90 % input-dependent): forward 0.78 against 0.50 ms whole,
    backward 1.64 against 1.17 ms; ``conv3_3`` (66 %): 1.13-1.32 against 1.33-1.45 ms,
    backward within 5 %.
    """
    if border is None or border.out.is_whole:
        return False
    return (winograd_pays(weight, stride, padding)
            or border.out.varying_fraction() < WHOLE_SHARE)


def bordered_forward(x, weight, bias, stride, padding, border):
    """The convolution's output, computing only the input-dependent rectangles (or, for a
    Winograd layer with at least ``WHOLE_SHARE`` of them, the whole map in one call).

    Parameters
    ----------
    x : array, shape (N, C_in, H, W)
    weight : array, shape (C_out, C_in, kh, kw)
    bias : array, shape (C_out,), or None
    stride, padding : (int, int)
    border : minifcn.engine.border.ConvBorder
        The regions of ``x`` and of the output, and the output's constant.

    Returns
    -------
    out : array, shape (N, C_out, H_out, W_out)
    """
    xp = get_array_module(x)
    n, c_out = x.shape[0], weight.shape[0]
    out_h, out_w = border.out.shape
    out = xp.empty((n, c_out, out_h, out_w), dtype=x.dtype)
    mixed = mix_kernel(weight) if winograd_pays(weight, stride, padding) else None
    if mixed is not None and border.out.varying_fraction() >= WHOLE_SHARE:
        winograd_conv(x, weight, padding, out, mixed_kernel=mixed)  # the constant too
        if bias is not None:
            out += bias[:, None, None]
        return out
    constant = border.out_constant.astype(x.dtype, copy=False)[:, None, None]  # (C_out, 1, 1)
    for rows, cols in border.out.pieces(constant=True):
        out[:, :, rows, cols] = constant
    convolve_rectangles(out, x, weight, stride, padding, border.out.pieces(), mixed, bias)
    return out


def bordered_weight_grad(dout, x, weight, stride, padding, border, dout_sum=None):
    """The weight gradient, with GEMMs over the input-dependent positions only.

    Parameters
    ----------
    dout : array, shape (N, C_out, H_out, W_out)
    x, weight, stride, padding, border : as :func:`bordered_forward`
    dout_sum : array, shape (C_out,), optional
        ``dout.sum(axis=(0, 2, 3))`` (the bias gradient) when the caller has it.

    Returns
    -------
    dweight : array, shape (C_out, C_in, kh, kw)

    Notes
    -----
    An output position ``o`` in the constant region reads the input's constant ``c`` at
    every tap, so its column is ``c`` repeated ``kh*kw`` times per channel (the constant
    patch ``P``), and ``sum over those o of dout[o] P^T = (sum over those o of dout[o]) P^T``:
    the sum over the constant positions is the whole sum less the input-dependent ones'.
    """
    xp = get_array_module(dout)
    n, c_out = dout.shape[:2]
    c_in, kh, kw = weight.shape[1:]
    if dout_sum is None:
        dout_sum = dout.sum(axis=(0, 2, 3))
    dweight, varying_sum = None, xp.zeros_like(dout_sum)
    for rows, cols in border.out.pieces():
        dweight, piece_sum = rectangle_weight_grad(dweight, dout, x, weight, stride, padding,
                                                   rows, cols)
        varying_sum += piece_sum
    if dweight is None:  # no input-dependent piece at all
        dweight = xp.zeros((c_out, c_in * kh * kw), dtype=dout.dtype)
    dweight = xp.ascontiguousarray(dweight)  # (C_out, C_in*kh*kw)
    if border.inp_constant is not None:
        patch = xp.repeat(border.inp_constant.astype(dout.dtype, copy=False), kh * kw)
        dweight += (dout_sum - varying_sum)[:, None] * patch[None, :]  # (C_out, C_in*kh*kw)
    return dweight.reshape(c_out, c_in, kh, kw)


BOX_SHARE, BOX_SHARE_WIDE, WIDE_COLUMNS = 0.7, 0.4, 256


def rectangle_weight_grad(dweight, dout, x, weight, stride, padding, rows, cols):
    """``dweight`` (None or (C_out, C_in*kh*kw)) plus the weight gradient of the output
    rectangle ``rows`` x ``cols`` alone; returns it and the sum of ``dout`` there, (C_out,).

    A tall, thin rectangle (:func:`minifcn.engine.rectangles.is_tall`) is a wide one of the
    transposed arrays, whose weight gradient is the transposed kernel's."""
    n, c_out = dout.shape[:2]
    if is_tall(rows, cols):
        c_in, kh, kw = weight.shape[1:]
        part, sums = rectangle_weight_grad(None, transposed(dout), transposed(x),
                                           transposed(weight), stride[::-1], padding[::-1],
                                           cols, rows)
        part = transposed(part.reshape(c_out, c_in, kw, kh)).reshape(c_out, c_in * kh * kw)
        return accumulate(dweight, part), sums
    sums = 0
    for out_rows, _, columns in column_bands(x, weight, stride, padding, reuse=True,
                                             rows=rows, cols=cols):
        length = (out_rows.stop - out_rows.start) * (cols.stop - cols.start)
        d = dout[:, :, out_rows, cols].reshape(n, c_out, length)  # (N, C_out, L), a copy
        dweight = accumulate(dweight, conv_weight_grad(d, columns))  # (C_out, C_in*kh*kw)
        sums = sums + d.sum(axis=(0, 2))
    if dweight is None:
        dweight = get_array_module(dout).zeros((c_out, weight[0].size), dtype=dout.dtype)
    return dweight, sums


def box_input_grad_applies(border, stride, padding, kernel, columns):
    """True when :func:`bordered_input_grad` can stand in for the input gradient and pays.

    It can for a stride-1 layer padded less than its kernel whose input has a constant
    region. It pays where the constant is a large share of the input: at least
    ``BOX_SHARE``, or ``BOX_SHARE_WIDE`` when the products dominate the unfolding (at least
    ``WIDE_COLUMNS`` rows of columns, ``columns = C_in*kh*kw``). Measured (backward of one
    layer, box / whole, one thread, CPU time on a loaded machine, alternating): full width
    at 224x224, conv1_2 (constant share 0.71) 0.38, conv2_2 (0.65) 0.43, conv3_3 (0.49)
    0.69, conv4_1 (0.40) 0.94, conv4_2 (0.28) 0.98, conv4_3 (0.17) 1.08; the demo's narrow
    net, conv1_2 (0.82, 36 columns) 0.56, conv2_1 (0.78) 0.88, conv2_2 (0.73) 0.95, conv3_1
    (0.63, 72 columns) 1.09, conv3_2 (0.54, 144 columns) 1.32.
    """
    if not (border is not None and border.inp_constant is not None
            and not border.inp.is_whole and backward_is_convolution(stride, padding, kernel)):
        return False
    share = 1 - border.inp.varying_fraction()
    return share >= BOX_SHARE or (share >= BOX_SHARE_WIDE and columns >= WIDE_COLUMNS)


def bordered_input_grad(dout, weight, padding, border):
    """The input gradient, exact on the input's box and frames; elsewhere each channel's mean.

    Parameters
    ----------
    dout : array, shape (N, C_out, H_out, W_out)
    weight : array, shape (C_out, C_in, kh, kw)
    padding : (int, int)
        At most ``(kh - 1, kw - 1)``; the stride is 1 (:func:`box_input_grad_applies`).
    border : minifcn.engine.border.ConvBorder
        ``border.inp`` is the region of the input (and so of ``dx``).

    Returns
    -------
    dx : array, shape (N, C_in, H, W)
        The book's input gradient on ``border.inp.pieces()``; on the constant pieces the mean,
        per channel, of the book's values there (over the batch too): the same per-channel
        sum over the whole map, which is all that the layers below read from there when no
        input gradient of the network is wanted (the module's docstring). The same holds
        when ``dout`` itself is exact only on the output's box and frames with the right
        per-channel sums (the layer above took this route too): the rectangles read ``dout``
        only on the output's box and frames, and the sums below only its sums and its edge
        rows and columns, which are frames.

    Notes
    -----
    On the rectangles, the stride-1 input gradient of
    :func:`minifcn.engine.stride1.stride1_backward` (a convolution of ``dout`` with the
    rotated kernel), by :func:`minifcn.engine.stride1.input_grad_into`. The sum over
    the whole map needs no pixel of it: ``dx[y, x] = sum_ij W[:, :, i, j]^T dout[y + ph - i,
    x + pw - j]``, so the whole sum is ``sum_ij W[:, :, i, j]^T R_ij``, ``R_ij`` the sum of
    ``dout`` over the rectangle of outputs that tap ``(i, j)`` maps onto the input (the
    whole map less at most ``ph`` rows and ``pw`` columns: one pass over ``dout``). The
    constant pieces hold that sum less the rectangles'.

    What it buys (the demo's narrow net, batch 4, ``conv1_2`` on 4 x 232 x 232, whose input
    box is 18 % of the map; one thread, CPU time on a loaded machine, alternating): the
    input gradient 3.6 to 1.4 ms, ``conv1_2``'s whole backward (with the bordered weight
    gradient) 6.8 to 4.0 ms. Which layers take it: :func:`box_input_grad_applies`.
    """
    xp = get_array_module(dout)
    n, c_out, out_h, out_w = dout.shape
    c_in, kh, kw = weight.shape[1:]
    (ph, pw), (h, w) = padding, border.inp.shape
    rotated = rotated_kernel(weight)  # (C_in, C_out, kh, kw)
    dx = xp.empty((n, c_in, h, w), dtype=dout.dtype)
    varying_sum = xp.zeros(c_in, dtype=dout.dtype)
    input_grad_into(dx, dout, rotated, padding, border.inp.pieces())
    for rows, cols in border.inp.pieces():
        varying_sum += dx[:, :, rows, cols].sum(axis=(0, 2, 3))
    constant = border.inp.pieces(constant=True)
    count = n * sum((r.stop - r.start) * (c.stop - c.start) for r, c in constant)
    if count:
        # summed over the batch and the rows at once: no (C_out, H_out, W_out) temporary, which
        # at 500x500 was conv1_2's 119 MiB, next to the training pass's peak
        column_sums = dout.sum(axis=(0, 2))  # (C_out, W_out)
        whole_sum = xp.zeros(c_in, dtype=dout.dtype)
        for i in range(kh):
            r0, r1 = max(0, ph - i), min(out_h, ph - i + h)  # tap row i lands on these outputs
            # the column sums over rows [r0, r1): the whole less the few rows outside
            rows_sum = (column_sums - dout[:, :, :r0].sum(axis=(0, 2))
                        - dout[:, :, r1:].sum(axis=(0, 2)))
            for j in range(kw):
                c0, c1 = max(0, pw - j), min(out_w, pw - j + w)
                whole_sum += weight[:, :, i, j].T @ rows_sum[:, c0:c1].sum(axis=1)
        mean = ((whole_sum - varying_sum) / count)[:, None, None]  # (C_in, 1, 1)
        for rows, cols in constant:
            dx[:, :, rows, cols] = mean
    return dx
