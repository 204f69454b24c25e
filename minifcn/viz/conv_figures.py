"""Still figures of the transposed-convolution story, drawn with matplotlib from the real ops.

- :func:`conv_matrix_figure`: the matrix ``C`` of a small convolution and ``C^T``, each column
  read off the op applied to a one-hot image.
- :func:`zero_insertion_figure`: the same transposed convolution as an ordinary convolution
  of a zero-stuffed, padded input with the flipped kernel.
- :func:`not_inverse_figure`: ``x``, ``conv2d(x)`` and ``conv_transpose2d(conv2d(x))``.
- :func:`bilinear_figure`: the bilinear kernel and what it does to a picture.

Each writes a PNG and returns its path. The first two take the kernel size, stride, padding and
output padding, so that a notebook can put them under sliders; a setting that no layer accepts
raises the op's own ``ValueError``. Figures are built on :class:`matplotlib.figure.Figure`
directly (no pyplot), so nothing here touches a global backend or opens a window.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..init import bilinear_kernel, bilinear_upsampling_weight
from ..ops import conv2d_forward, conv_transpose2d_forward, transposed_output_size
from ..ops._util import pair
from ..ops.conv_matrix import zero_insert
from .conv_animations import TOY_SEED, toy_arrays

PNG = {"dpi": 80, "metadata": {"Software": None}}  # small files, no version stamp in them
NUMBERS_UP_TO = 24  # cells a side; a larger heatmap shows colours only, its numbers would overlap


def heatmap(ax, values, title, shaded=None, numbers=True, cmap="Blues", outline=None):
    """Draw a 2-D array as coloured cells with its numbers.

    ``shaded`` cells get hatching; ``outline = (row, col, height, width)`` frames a block of
    cells. Numbers and per-cell ticks are left out of arrays with a side over ``NUMBERS_UP_TO``.
    """
    values = np.asarray(values, dtype=float)
    top = max(np.abs(values).max(), 1e-12)
    ax.imshow(values, cmap=cmap, vmin=-0.15 * top if cmap == "Blues" else -top, vmax=top)
    fits = max(values.shape) <= NUMBERS_UP_TO
    if numbers and fits:
        for (r, c), v in np.ndenumerate(values):
            text = f"{v:.0f}" if float(v).is_integer() else f"{v:.2f}"
            ax.text(c, r, text, ha="center", va="center", fontsize=8,
                    color="white" if abs(v) > 0.6 * top else "black")
    if shaded is not None:
        for r, c in zip(*np.nonzero(shaded)):
            ax.add_patch(_cell(r, c, hatch="//", fill=False, edgecolor="0.8", linewidth=0))
    if outline is not None:
        row, col, height, width = outline
        ax.add_patch(Rectangle((col - 0.5, row - 0.5), width, height, fill=False,
                               edgecolor="tab:orange", linewidth=2.5, clip_on=False))
    if fits:
        ax.set_xticks(range(values.shape[1]))
        ax.set_yticks(range(values.shape[0]))
        ax.set_xticks(np.arange(-0.5, values.shape[1]), minor=True)
        ax.set_yticks(np.arange(-0.5, values.shape[0]), minor=True)
        ax.grid(which="minor", color="0.75", linewidth=0.5)
    ax.tick_params(which="both", length=0, labelsize=7)
    ax.set_title(title, fontsize=10)


def _cell(r, c, **style):
    return Rectangle((c - 0.5, r - 0.5), 1, 1, **style)


def _save(fig, path):
    fig.savefig(path, **PNG)
    return path


def op_matrix(op, in_shape):
    """The matrix of a linear op on single-channel images, column ``j`` = op(one-hot ``j``)."""
    size = int(np.prod(in_shape))
    basis = np.eye(size).reshape(size, 1, *in_shape)  # (size, 1, H, W): one image per pixel
    return op(basis).reshape(size, -1).T  # (outputs, inputs)


def pixel_names(letter, hw):
    """Labels of the pixels of an ``hw`` image in row-major order: ``x12`` is row 1, column 2
    (``x1,12`` for images with a side over 10); a single row is numbered ``x0, x1, ...``."""
    if hw[0] == 1:
        return [f"{letter}{c}" for c in range(hw[1])]
    sep = "," if max(hw) > 10 else ""
    return [f"{letter}{r}{sep}{c}" for r in range(hw[0]) for c in range(hw[1])]


def conv_matrices(kernel_size=3, stride=1, padding=0, output_padding=0, input_hw=(2, 2),
                  seed=TOY_SEED):
    """``C`` and ``C^T`` of one geometry, each read off its op applied to one-hot images.

    Parameters
    ----------
    kernel_size, stride, padding, output_padding : int or (int, int)
        Those of the transposed convolution (and, but the output padding, of the convolution
        whose transpose it is).
    input_hw : (int, int)
        ``(h, w)`` of the transposed convolution's input, the convolution's output.
    seed : int
        Chooses the toy kernel's small integers (:func:`toy_arrays`).

    Returns
    -------
    C : numpy.ndarray, shape (h*w, H*W)
        ``conv2d`` of an ``H x W`` image, ``H = stride*(h - 1) + k - 2*padding +
        output_padding``: the transposed convolution's output size.
    CT : numpy.ndarray, shape (H*W, h*w)
        ``conv_transpose2d`` of an ``h x w`` map; equal to ``C.T``.
    weight : numpy.ndarray, shape (1, 1, kh, kw)
    """
    _, weight = toy_arrays(input_hw, kernel_size, seed)

    def transposed(y):  # raises the op's ValueError for a setting no layer accepts
        return conv_transpose2d_forward(y, weight, None, stride, padding, output_padding)[0]

    out_hw = transposed(np.zeros((1, 1, *input_hw))).shape[2:]  # (H, W)
    C = op_matrix(lambda x: conv2d_forward(x, weight, None, stride, padding)[0], out_hw)
    return C, op_matrix(transposed, input_hw), weight


def conv_matrix_figure(path, kernel_size=3, stride=1, padding=0, output_padding=0,
                       input_hw=(2, 2), seed=TOY_SEED):
    """``C`` and ``C^T`` side by side; by default a 3x3 kernel on a 4x4 image (``C`` is 4x16).

    The arguments are those of :func:`conv_matrices`. ``input_hw=(1, w)`` with
    ``kernel_size=(1, k)``, ``stride=(1, s)``, ``padding=(0, p)`` draws the matrices of one
    row of pixels, small enough to read at any setting.
    """
    C, CT, weight = conv_matrices(kernel_size, stride, padding, output_padding, input_hw, seed)
    h, w = input_hw
    kh, kw = weight.shape[2:]
    (sh, sw), (ph, pw), (oph, opw) = pair(stride), pair(padding), pair(output_padding)
    out_hw = (transposed_output_size(h, kh, sh, ph, oph),
              transposed_output_size(w, kw, sw, pw, opw))
    labelled = C.shape[1] <= NUMBERS_UP_TO
    cell = 0.27 if labelled else 0.12  # inches per matrix entry
    height = cell * C.shape[1] + 1.6
    fig = Figure(figsize=(max(9.0, cell * (C.shape[1] + C.shape[0]) + 2.0), height))
    grid = fig.add_gridspec(1, 2, width_ratios=[C.shape[1], C.shape[0] + 1])
    ax = fig.add_subplot(grid[0])
    heatmap(ax, C, f"C: conv2d, {out_hw[0]}x{out_hw[1]} image -> {h}x{w} output  "
                   f"({C.shape[0]} x {C.shape[1]})")
    if labelled:
        ax.set_xticks(range(C.shape[1]), pixel_names("x", out_hw), rotation=90)
        ax.set_yticks(range(C.shape[0]), pixel_names("y", input_hw))
    ax = fig.add_subplot(grid[1])
    heatmap(ax, CT, f"C^T: conv_transpose2d\n{h}x{w} -> {out_hw[0]}x{out_hw[1]}  "
                    f"({CT.shape[0]} x {CT.shape[1]})")
    if labelled:
        ax.set_yticks(range(CT.shape[0]), pixel_names("x", out_hw))
        ax.set_xticks(range(CT.shape[1]), pixel_names("y", input_hw))

    def shown(a, b):
        return a if a == b else (a, b)

    fig.suptitle(f"kernel {kh}x{kw}, stride {shown(sh, sw)}, padding {shown(ph, pw)}, "
                 f"output_padding {shown(oph, opw)}:  C^T equals C transposed: "
                 f"{np.array_equal(CT, C.T)}", fontsize=11)
    fig.text(0.02, 0.02, f"kernel {weight[0, 0].astype(int).tolist()}: each row of C is the "
             "kernel laid on the image at one window, read row by row", fontsize=8)
    fig.subplots_adjust(left=0.05, right=0.98, top=1 - 0.75 / height, bottom=0.5 / height + 0.04,
                        wspace=0.15)
    return _save(fig, path)


def zero_insertion_figure(path, input_hw=(3, 3), kernel_size=3, stride=2, padding=1,
                          output_padding=0, seed=TOY_SEED):
    """x; x with ``stride-1`` zeros inserted and ``k-1-padding`` padding; the flipped kernel;
    their stride-1 convolution, which equals ``conv_transpose2d(x)``.

    Square kernels, strides and paddings (ints); a setting that no layer accepts raises the
    op's ``ValueError``.
    """
    x, weight = toy_arrays(input_hw, kernel_size, seed, low=1)
    out = conv_transpose2d_forward(x, weight, None, stride, padding, output_padding)[0][0, 0]
    z = zero_insert(x, kernel_size, stride, padding, output_padding)[0, 0]  # (H_z, W_z)
    flipped = weight[:, :, ::-1, ::-1].copy()  # (1, 1, k, k); one channel: no axes to swap
    by_conv = conv2d_forward(z[None, None], flipped)[0][0, 0]
    # the cells of z that hold no pixel of x: inserted zeros, padding, output padding
    inserted = zero_insert(np.ones_like(x), kernel_size, stride, padding, output_padding)[0, 0] == 0
    k1 = kernel_size - 1 - padding
    around = f"padded by k-1-p = {k1}" if k1 >= 0 else f"cropped by p-(k-1) = {-k1}"
    if output_padding:
        around += f",\n+{output_padding} at bottom/right"
    panels = [(x[0, 0], "x", None), (weight[0, 0], "kernel", None),
              (z, f"zeros inserted (stride {stride}),\n{around}", inserted),
              (flipped[0, 0], "kernel flipped", None),
              (by_conv, "conv2d(that, flipped),\nstride 1", None),
              (out, f"conv_transpose2d(x)\nstride {stride}, padding {padding}"
                    + (f",\noutput_padding {output_padding}" if output_padding else ""), None)]
    height = max(3.2, 0.3 * z.shape[0] + 1.2)  # inches
    fig = Figure(figsize=(max(13.0, 0.36 * sum(p[0].shape[1] + 1 for p in panels)), height))
    grid = fig.add_gridspec(1, 6, width_ratios=[p[0].shape[1] + 1 for p in panels])
    for k, (values, title, shaded) in enumerate(panels):
        heatmap(fig.add_subplot(grid[k]), values, title, shaded=shaded)
    same = np.allclose(by_conv, out)
    fig.suptitle(f"two readings of one transposed convolution: identical = {same}", fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.99, top=1 - (1.1 if output_padding else 0.75) / height,
                        bottom=0.05, wspace=0.3)
    return _save(fig, path)


def not_inverse_figure(path, seed=TOY_SEED):
    """``x``, ``y = conv2d(x)`` and ``conv_transpose2d(y)``: the shape comes back, x does not."""
    x, weight = toy_arrays((4, 4), 3, seed)
    y = conv2d_forward(x, weight)[0]
    back = conv_transpose2d_forward(y, weight)[0]
    fig = Figure(figsize=(10, 3.4))
    grid = fig.add_gridspec(1, 4, width_ratios=[5, 3.5, 3, 5])
    heatmap(fig.add_subplot(grid[0]), x[0, 0], "x  (4x4)")
    heatmap(fig.add_subplot(grid[1]), weight[0, 0], "kernel  (3x3)")
    heatmap(fig.add_subplot(grid[2]), y[0, 0], "y = conv2d(x)  (2x2)")
    heatmap(fig.add_subplot(grid[3]), back[0, 0], "conv_transpose2d(y)  (4x4)")
    gap = np.abs(back - x).max()
    fig.suptitle(f"C^T C x is not x: same shape, max |difference| = {gap:.0f}", fontsize=11)
    fig.subplots_adjust(left=0.02, right=0.99, top=0.8, bottom=0.05, wspace=0.3)
    return _save(fig, path)


def demo_picture(size=16):
    """A small procedural colour picture, (3, size, size) in [0, 1]: a gradient, a disc and a
    stripe, so that upsampling has smooth areas and hard edges to show."""
    v, u = np.mgrid[0:size, 0:size] / (size - 1)  # (size, size) each
    disc = ((u - 0.62) ** 2 + (v - 0.38) ** 2 < 0.06).astype(float)
    stripe = (np.abs(u + v - 1.25) < 0.1).astype(float)
    red = 0.2 + 0.6 * u * (1 - disc) + disc
    green = 0.25 + 0.5 * v + 0.25 * stripe
    blue = 0.8 - 0.6 * u * v - 0.5 * disc + 0.2 * stripe
    return np.clip(np.stack([red, green, blue]), 0, 1)  # (3, size, size)


def bilinear_upsample(image, factor):
    """Upsample a (C, H, W) image by an even ``factor`` with a bilinear transposed conv:
    kernel ``2*factor``, stride ``factor``, padding ``factor // 2`` gives ``factor*H`` rows."""
    weight = bilinear_upsampling_weight(image.shape[0], 2 * factor, image.dtype)
    return conv_transpose2d_forward(image[None], weight, None, factor, factor // 2)[0][0]


def bilinear_figure(path, factor=8, size=16):
    """The 1-D bilinear profile for k=4 and k=16, the 2-D k=4 kernel, and a picture upsampled
    by ``factor``: nearest neighbour vs. the bilinear transposed convolution."""
    fig = Figure(figsize=(11, 6.4))
    grid = fig.add_gridspec(2, 3, height_ratios=[1, 1.25])
    ax = fig.add_subplot(grid[0, 0])
    for k in (4, 16):
        tent = np.sqrt(np.diag(bilinear_kernel(k)))  # the 1-D profile: kernel = outer(tent, tent)
        ax.plot(np.arange(k) - (k - 1) / 2, tent, "o-", ms=3, label=f"k={k}, stride {k // 2}")
    ax.set_title("1-D profile 1 - |i - centre| / f", fontsize=10)
    ax.legend(fontsize=8)
    ax.tick_params(labelsize=7)
    heatmap(fig.add_subplot(grid[0, 1]), bilinear_kernel(4), "bilinear_kernel(4) = outer product")
    ax = fig.add_subplot(grid[0, 2])
    ax.axis("off")
    ax.text(0, 0.5, "k = 4: profile [0.25, 0.75, 0.75, 0.25]\nf = (k+1)//2, centre = f - 0.5 "
            "(even k)\ntaps s = k/2 apart sum to 1, so away from\nthe border every output pixel "
            "gets weights\nsumming to 1; in the outer k - s = s rows\nand columns of the uncropped "
            "sum\none tap is missing: the weights sum to less", fontsize=9, va="center")
    image = demo_picture(size)
    nearest = image.repeat(factor, axis=1).repeat(factor, axis=2)  # (3, size*f, size*f)
    smooth = np.clip(bilinear_upsample(image, factor), 0, 1)
    for col, (picture, title) in enumerate([
            (image, f"picture {size}x{size}"), (nearest, f"nearest x{factor}"),
            (smooth, f"bilinear conv_transpose2d k={2 * factor} s={factor}\n"
                     "(the border fades: one neighbour)")]):
        ax = fig.add_subplot(grid[1, col])
        ax.imshow(picture.transpose(1, 2, 0), interpolation="nearest")  # (H, W, 3)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.subplots_adjust(left=0.04, right=0.99, top=0.94, bottom=0.02, hspace=0.3, wspace=0.25)
    return _save(fig, path)
