"""Animated GIFs: a convolution sliding over its input, a transposed convolution scattering its.

Both are drawn from the real ops: every number in a frame is read from
:func:`minifcn.ops.conv2d_forward` or :func:`minifcn.ops.conv_transpose2d_forward` run on small
integer arrays (so each sum fits in a cell and can be checked by hand). The style follows the
well-known "convolution arithmetic" pictures: a grid of cells, the kernel's footprint
highlighted, the output filling in one cell (or one scattered kernel) per frame.
"""
from __future__ import annotations

import numpy as np

from ..ops import conv2d_forward, conv_transpose2d_forward
from ..ops._util import pair
from ._grid import draw_grid, fmt, new_frame, panel_layout, save_gif

FINAL_MS = 2400  # the last frame stays up longer
TOY_SEED = 5  # its 3x3 kernel [[2, 2, 0], [2, 1, 1], [1, 0, 2]] is lopsided: flips show


def toy_arrays(input_hw, kernel_size, seed=TOY_SEED, low=0):
    """A small integer input (1, 1, H, W) in ``[low, 3]`` and kernel (1, 1, kh, kw) in ``[0, 2]``.

    The kernel is drawn first, so one seed gives every figure of a kernel size the same kernel.
    """
    rng = np.random.default_rng(seed)
    weight = rng.integers(0, 3, size=(1, 1, *pair(kernel_size))).astype(np.float64)
    x = rng.integers(low, 4, size=(1, 1, *input_hw)).astype(np.float64)
    return x, weight


def conv2d_animation(path, input_hw=(4, 4), kernel_size=3, stride=1, padding=0, seed=TOY_SEED,
                     frame_ms=700):
    """GIF of ``conv2d``: the window slides over the padded input, one output pixel per frame.

    Parameters
    ----------
    path : str or Path
        Where to write the GIF.
    input_hw : (int, int)
    kernel_size, stride, padding : int or (int, int)
    seed : int
        Chooses the small integers of the input and the kernel.
    frame_ms : int

    Returns
    -------
    path
    """
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel_size), pair(stride), pair(padding)
    x, weight = toy_arrays(input_hw, (kh, kw), seed)
    out = conv2d_forward(x, weight, None, (sh, sw), (ph, pw))[0][0, 0]  # (H_out, W_out)
    kernel = weight[0, 0]  # (kh, kw)
    padded = np.pad(x[0, 0], ((ph, ph), (pw, pw)))  # (H + 2ph, W + 2pw)
    is_pad = np.ones(padded.shape, dtype=bool)
    is_pad[ph:ph + input_hw[0], pw:pw + input_hw[1]] = False
    title = (f"conv2d  kernel {kh}x{kw}, stride {sh}, padding {ph}:  "
             f"{input_hw[0]}x{input_hw[1]} -> {out.shape[0]}x{out.shape[1]}")
    footers = [f"out[{i}, {j}] = sum(window * kernel) = {fmt(out[i, j])}"
               for i, j in np.ndindex(*out.shape)]
    footers.append(f"every output pixel is one window's weighted sum ({out.size} windows)")
    size, origins = panel_layout([padded.shape, kernel.shape, out.shape], title, footers)
    captions = ["input (padding grey)" if ph or pw else "input", "kernel", "output"]
    base = {rc: "pad" for rc in zip(*np.nonzero(is_pad))}
    frames = []
    for t in range(out.size + 1):
        shown = np.full(out.shape, np.nan)
        shown.flat[:t + 1] = out.flat[:t + 1]
        fills_in, small = dict(base), np.full(padded.shape, np.nan)
        fills_out = {divmod(k, out.shape[1]): "done" for k in range(min(t, out.size))}
        if t < out.size:
            i, j = divmod(t, out.shape[1])
            for r in range(i * sh, i * sh + kh):
                for c in range(j * sw, j * sw + kw):
                    fills_in[(r, c)] = "window"
            small[i * sh:i * sh + kh, j * sw:j * sw + kw] = kernel  # taps written in the window
            fills_out[(i, j)] = "current"
        image, draw = new_frame(size, title, captions, origins, footers[t])
        draw_grid(draw, origins[0], padded, fills_in, small, faint=is_pad)
        draw_grid(draw, origins[1], kernel)
        draw_grid(draw, origins[2], shown, fills_out)
        frames.append(image)
    return save_gif(frames, path, [frame_ms] * out.size + [FINAL_MS])


def conv_transpose2d_animation(path, input_hw=(2, 2), kernel_size=3, stride=1, padding=0,
                               output_padding=0, seed=TOY_SEED, frame_ms=900):
    """GIF of ``conv_transpose2d``: each input pixel adds its value times the kernel into the
    output, one pixel per frame; padding then crops the border of the sum.

    Parameters
    ----------
    path : str or Path
    input_hw : (int, int)
    kernel_size, stride, padding, output_padding : int or (int, int)
    seed : int
    frame_ms : int

    Returns
    -------
    path

    Notes
    -----
    The canvas is the uncropped sum, ``stride*(H - 1) + k + output_padding`` a side; the
    output is the canvas without ``padding`` rows/columns on each side:
    ``H_out = stride*(H - 1) + k - 2*padding + output_padding``.
    """
    (kh, kw), (sh, sw), (ph, pw) = pair(kernel_size), pair(stride), pair(padding)
    x, weight = toy_arrays(input_hw, (kh, kw), seed, low=1)
    kernel = weight[0, 0]  # (kh, kw)
    out = conv_transpose2d_forward(x, weight, None, (sh, sw), (ph, pw), output_padding)[0][0, 0]
    canvas_shape = (out.shape[0] + 2 * ph, out.shape[1] + 2 * pw)
    cropped = np.ones(canvas_shape, dtype=bool)  # True where padding cuts the canvas away
    cropped[ph:ph + out.shape[0], pw:pw + out.shape[1]] = False
    shapes = [input_hw, kernel.shape, canvas_shape] + ([out.shape] if ph or pw else [])
    (oph, opw) = pair(output_padding)
    extra = f", output_padding {oph}" if oph or opw else ""
    title = (f"conv_transpose2d  kernel {kh}x{kw}, stride {sh}, padding {ph}{extra}:  "
             f"{input_hw[0]}x{input_hw[1]} -> {out.shape[0]}x{out.shape[1]}")
    footers = [f"x[{i}, {j}] = {fmt(v)}: add {fmt(v)} * kernel here"
               for (i, j), v in np.ndenumerate(x[0, 0])]
    footers.append("overlapping kernels add up: the transpose of the convolution, not its inverse")
    size, origins = panel_layout(shapes, title, footers)
    captions = ["input", "kernel", "sum of scaled kernels", f"output (crop {ph})"][:len(shapes)]
    touched = np.zeros(canvas_shape, dtype=bool)
    mask = np.zeros_like(x)
    frames = []
    for t in range(x.size + 1):
        fills_in = {divmod(k, input_hw[1]): "done" for k in range(min(t, x.size))}
        fills_canvas = {rc: "pad" for rc in zip(*np.nonzero(cropped))}
        if t < x.size:
            i, j = divmod(t, input_hw[1])
            mask.flat[t] = 1
            touched[i * sh:i * sh + kh, j * sw:j * sw + kw] = True
            for r in range(i * sh, i * sh + kh):
                for c in range(j * sw, j * sw + kw):
                    fills_canvas[(r, c)] = "window"
            fills_in[(i, j)] = "current"
        # the partial sum is the real op applied to the pixels scattered so far
        partial = conv_transpose2d_forward(x * mask, weight, None, (sh, sw), 0, output_padding)
        # cells no kernel has reached yet stay blank; in the last frame every cell is final
        # (a gap between copies when k < stride, the output_padding rows: zeros)
        canvas = np.where(touched | (t == x.size), partial[0][0, 0], np.nan)  # (canvas_h, canvas_w)
        image, draw = new_frame(size, title, captions, origins, footers[t])
        draw_grid(draw, origins[0], x[0, 0], fills_in)
        draw_grid(draw, origins[1], kernel)
        draw_grid(draw, origins[2], canvas, fills_canvas, faint=cropped)
        if len(shapes) == 4:
            draw_grid(draw, origins[3], canvas[ph:ph + out.shape[0], pw:pw + out.shape[1]])
        frames.append(image)
    return save_gif(frames, path, [frame_ms] * x.size + [FINAL_MS])
