"""The convolution's backward on the rectangle that its output gradient occupies.

FCN's loss reads an image-sized window of the score map: the final crop drops the rest. A
trunk position that cannot influence that window gets a gradient of exactly zero, so the
gradient reaching a trunk convolution is zero outside a rectangle (the window dilated by
every layer above on the way down), the **reach**. In the demo's narrow net (96x96, pad 69)
it covers 27-63 % of the maps of ``conv3_1`` to ``conv4_3``; at 224x224 (pad 100) 44-54 %
of ``conv4_1`` to ``conv4_3``'s and 66-93 % of ``conv5_x``'s.

:func:`dout_reach` finds that rectangle in ``dout`` itself (one pass, no geometry to keep in
step with the network), and :func:`reach_backward` takes both gradients of a stride-1
convolution from it alone: the weight gradient sums over the rectangle only, and the input
gradient is zero except on the rectangle widened by the kernel, where it is a convolution
of ``dout`` with the rotated kernel (:mod:`minifcn.engine.stride1`). Both are the book's
(tested equal in ``tests/test_border.py``).

Layouts: ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in, kh, kw), ``dout`` (N, C_out,
H_out, W_out).
"""
from __future__ import annotations

from ..backend import get_array_module
from .bordered import rectangle_weight_grad
from .stride1 import backward_is_convolution, input_grad_into, rotated_kernel

REACH_SHARE = 0.7  # a rectangle of more of the map than this takes the plain route


def dout_reach(dout):
    """``(rows, cols)``: the smallest rectangle (two slices) outside which ``dout`` is zero
    in every sample and channel; None when ``dout`` is zero everywhere."""
    xp = get_array_module(dout)
    live = dout.any(axis=(0, 1))  # (H_out, W_out)
    rows, cols = xp.flatnonzero(live.any(axis=1)), xp.flatnonzero(live.any(axis=0))
    if rows.size == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def reach_pays(reach, out_shape, stride, padding, kernel):
    """True for a stride-1 layer padded less than its kernel whose ``dout`` lies in a
    rectangle of at most ``REACH_SHARE`` of the map.

    Measured (backward of one layer, reach / plain, one thread, CPU time on a loaded
    machine, alternating): the demo's narrow net (batch 4), conv3_1 (reach 0.27 of the map)
    0.48, conv3_3 (0.34) 0.60, conv4_2 (0.52) 0.80, conv4_3 (0.63) 0.89, conv5_1 (0.87, so
    not taken) 0.95; full width at 224x224, conv4_2 (0.49) 0.57, conv5_1 (0.66) 0.75,
    conv5_2 (0.79, not taken) 0.99. The training step: narrow 0.94x, 224x224 full width 0.90x.
    """
    if reach is None or not backward_is_convolution(stride, padding, kernel):
        return False
    rows, cols = reach
    area = (rows.stop - rows.start) * (cols.stop - cols.start)
    return area <= REACH_SHARE * out_shape[2] * out_shape[3]


def reach_backward(dout, x, weight, padding, reach, input_grad=True, weight_grad=True):
    """Both gradients of a stride-1 convolution whose ``dout`` is zero outside ``reach``.

    Parameters
    ----------
    dout : array, shape (N, C_out, H_out, W_out)
    x : array, shape (N, C_in, H, W)
    weight : array, shape (C_out, C_in, kh, kw)
    padding : (int, int)
        At most ``(kh - 1, kw - 1)``.
    reach : (slice, slice)
        Output rows and columns outside which ``dout`` is zero (:func:`dout_reach`).
    input_grad, weight_grad : bool

    Returns
    -------
    dx : array, shape (N, C_in, H, W), or None
    dweight : array, shape (C_out, C_in, kh, kw), or None

    Notes
    -----
    Input row ``y`` meets output rows ``y + ph - i``, ``i < kh``: only rows
    ``[r0 - ph, r1 + kh - 1 - ph)`` of the input meet the rectangle's rows ``[r0, r1)``
    (columns alike); every other input gradient is zero.
    """
    xp = get_array_module(dout)
    n, c_in, h, w = x.shape
    kh, kw = weight.shape[2:]
    (ph, pw), (rows, cols) = padding, reach
    dweight = dx = None
    if weight_grad:
        dweight = rectangle_weight_grad(None, dout, x, weight, (1, 1), padding, rows, cols)[0]
        dweight = xp.ascontiguousarray(dweight).reshape(weight.shape)  # (C_out, C_in, kh, kw)
    if input_grad:
        dx = xp.zeros((n, c_in, h, w), dtype=dout.dtype)
        in_rows = slice(max(0, rows.start - ph), min(h, rows.stop + kh - 1 - ph))
        in_cols = slice(max(0, cols.start - pw), min(w, cols.stop + kw - 1 - pw))
        input_grad_into(dx, dout, rotated_kernel(weight), padding, [(in_rows, in_cols)])
    return dx, dweight
