"""Checkerboard artifacts: the uneven overlap of a transposed convolution, measured and drawn.

A transposed convolution with stride ``s`` adds one copy of its kernel per input pixel, the
copies ``s`` output pixels apart. Output row ``q`` of the uncropped sum is reached by the copies
of the input rows ``m`` with ``s*m <= q < s*m + k``: ``ceil(k/s)`` of them for some rows and
``floor(k/s)`` for others, unless ``s`` divides ``k``. Which taps land on ``q`` depends only on
``q mod s``, its *phase*: the taps ``q mod s``, ``q mod s + s``, ``q mod s + 2s``, ... So with a
constant input ``c`` an output pixel away from the border holds ``c`` times the sum of its
phase's taps. Equal phase sums give an even output; unequal ones give a pattern that repeats
every ``s`` pixels, a checkerboard (Odena, Dumoulin and Olah, "Deconvolution and Checkerboard
Artifacts", Distill 2016).

- :func:`phase_sums`: the ``(s, s)`` sums of the taps each output phase receives.
- :func:`interior`: the output rows (or columns) away from the border, where every copy that
  could reach a pixel does.
- :func:`unevenness`: ``(max - min) / |mean|`` of an output away from its border.
- :func:`resize_then_convolve`: the alternative, a nearest-neighbour resize then a stride-1
  convolution.
- :func:`fit_upsampler`: a bilinear upsampler after a few gradient steps: what learning can do.
- :func:`constant_response_figure`, :func:`checkerboard_figure`: the pictures.

Figures are :class:`matplotlib.figure.Figure` objects written to PNG files, as in
:mod:`minifcn.viz.conv_figures`.
"""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ..init import bilinear_kernel
from ..ops import conv2d_forward, conv_transpose2d_backward, conv_transpose2d_forward
from .conv_figures import PNG, heatmap

KERNELS = ("ones", "bilinear", "bilinear + noise")  # what constant_response_figure can draw


def phase_sums(kernel, stride):
    """The sum of the taps that land on each output phase of a transposed convolution.

    Parameters
    ----------
    kernel : array, shape (kh, kw)
    stride : int

    Returns
    -------
    sums : numpy.ndarray, shape (stride, stride)
        ``sums[r, c] = kernel[r::stride, c::stride].sum()``: with a constant input 1, the
        value of every output pixel away from the border whose (row, column) phase is
        ``(r, c)`` (counted from the uncropped sum's top-left corner).
    """
    kernel = np.asarray(kernel, dtype=float)
    return np.array([[kernel[r::stride, c::stride].sum() for c in range(stride)]
                     for r in range(stride)])


def interior(size, kernel_size, stride, padding=0):
    """The output rows away from the border: every copy that could reach them does.

    Parameters
    ----------
    size : int
        Input rows of the transposed convolution.
    kernel_size, stride, padding : int

    Returns
    -------
    rows : slice
        Of the (cropped) output. Row ``q`` of the uncropped sum is reached by input rows
        ``ceil((q - k + 1)/s) .. floor(q/s)``; all of them exist for
        ``k - s <= q <= s*size - 1``. The ``k - s`` rows at each end (when ``k > s``) miss a
        copy whose input row would lie outside the image: that is the border.
    """
    out = stride * (size - 1) + kernel_size - 2 * padding
    return slice(max(kernel_size - stride - padding, 0), min(stride * size - padding, out))


def unevenness(y, margin=0):
    """How far an output is from constant: ``(max - min) / |mean|``, 0 for an even one.

    Parameters
    ----------
    y : array, shape (..., H, W)
    margin : int
        Rows and columns left out at each side, to look away from the border.

    Returns
    -------
    float
    """
    y = np.asarray(y, dtype=float)
    h, w = y.shape[-2:]
    inner = y[..., margin:h - margin, margin:w - margin]  # explicit ends: margin may be 0
    if inner.size == 0:
        raise ValueError(f"unevenness: a margin of {margin} leaves nothing of a {h}x{w} output")
    return float((inner.max() - inner.min()) / max(abs(inner.mean()), 1e-12))


def resize_then_convolve(x, factor, weight):
    """Upsample by a nearest-neighbour resize, then a stride-1 convolution.

    Parameters
    ----------
    x : array, shape (N, C_in, H, W)
    factor : int
    weight : array, shape (C_out, C_in, k, k), k odd
        A convolution weight; padding ``(k - 1) // 2`` keeps the resized size.

    Returns
    -------
    out : array, shape (N, C_out, factor*H, factor*W)

    Notes
    -----
    Every output pixel is one full window of the same kernel, so a constant input gives a
    constant output wherever the window lies inside the resized image: there is no uneven
    overlap to learn into a checkerboard. The price: the kernel runs at the fine resolution.
    """
    resized = x.repeat(factor, axis=2).repeat(factor, axis=3)  # (N, C_in, f*H, f*W)
    return conv2d_forward(resized, weight, None, 1, (weight.shape[2] - 1) // 2)[0]


def fit_upsampler(image, factor, steps=20, lr=20.0):
    """A bilinear upsampler after ``steps`` gradient steps towards undoing a downsampling.

    The target is ``image`` itself (cut to a multiple of ``factor``), the input its
    ``factor x factor`` block means; the upsampler (kernel ``2*factor``, stride ``factor``,
    padding ``factor // 2``, so pixel centres line up) starts bilinear and follows the
    gradient of the mean squared error, from the package's own backward pass.

    Parameters
    ----------
    image : array, shape (H, W)
        Grey values, about in [0, 1].
    factor : int
        Even.
    steps : int
    lr : float

    Returns
    -------
    weight : numpy.ndarray, shape (1, 1, 2*factor, 2*factor)
    losses : list of float
        The loss before each step.
    """
    h, w = (np.shape(image)[0] // factor) * factor, (np.shape(image)[1] // factor) * factor
    target = np.asarray(image, dtype=float)[None, None, :h, :w]  # (1, 1, H, W)
    coarse = target.reshape(1, 1, h // factor, factor, w // factor, factor).mean(axis=(3, 5))
    weight = bilinear_kernel(2 * factor)[None, None].copy()  # (1, 1, k, k)
    losses = []
    for _ in range(steps):
        out, cache = conv_transpose2d_forward(coarse, weight, None, factor, factor // 2)
        losses.append(float(0.5 * np.mean((out - target) ** 2)))
        dweight = conv_transpose2d_backward((out - target) / out.size, cache,
                                            input_grad=False)[1]
        weight = weight - lr * dweight
    return weight, losses


def constant_response(weight, stride, size=5, padding=0):
    """A transposed convolution of an all-ones ``size x size`` image with a
    ``(kh, kw)`` kernel: its output, shape ``(H_out, W_out)``."""
    weight = np.asarray(weight, dtype=float)[None, None]  # (1, 1, kh, kw)
    ones = np.ones((1, 1, size, size))
    return conv_transpose2d_forward(ones, weight, None, stride, padding)[0][0, 0]


def example_kernel(name, kernel_size, seed=0, noise=0.05):
    """The kernels the figures compare: ``"ones"``, ``"bilinear"`` or ``"bilinear + noise"``
    (the bilinear kernel plus Gaussian noise of standard deviation ``noise``)."""
    if name == "ones":
        return np.ones((kernel_size, kernel_size))
    if name == "bilinear":
        return bilinear_kernel(kernel_size)
    if name == "bilinear + noise":
        rng = np.random.default_rng(seed)
        return bilinear_kernel(kernel_size) + noise * rng.standard_normal((kernel_size,) * 2)
    raise ValueError(f"example_kernel: kernel {name!r} is not one of {KERNELS}")


def _response_panel(ax, y, rows, title, numbers=True):
    """``y`` as a heatmap coloured from its interior's lowest to highest value (so any
    unevenness shows), the interior outlined, the unevenness below; ``numbers`` writes the
    values into the cells of a small ``y``."""
    inner = y[rows, rows]
    low, high = inner.min(), inner.max()
    if high - low < 1e-9:  # even: one colour, and a scale that still shows the border
        low, high = min(y.min(), low - 1), high
    shown = np.clip((y - low) / (high - low), -0.3, 1.0)
    heatmap(ax, shown, title, numbers=False,
            outline=(rows.start, rows.start, rows.stop - rows.start, rows.stop - rows.start))
    if numbers and max(y.shape) <= 12:  # the real values, not the colour scale's
        for (r, c), v in np.ndenumerate(y):
            ax.text(c, r, f"{v:.2f}".rstrip("0").rstrip("."), ha="center", va="center",
                    fontsize=7, color="white" if shown[r, c] > 0.6 else "black")
    ax.set_xlabel(f"inside the box: {inner.min():.3g} .. {inner.max():.3g}, "
                  f"unevenness {unevenness(inner):.2g}", fontsize=8)


def constant_response_figure(path, kernel_size=3, stride=2, kernel="ones", size=None, seed=0):
    """One transposed convolution of an all-ones image: its output with the interior
    outlined, and the kernel's phase sums.

    Parameters
    ----------
    path : str or Path
    kernel_size, stride : int
    kernel : {"ones", "bilinear", "bilinear + noise"}
    size : int, optional
        Sides of the all-ones input; by default 5, or more when the kernel is so much larger
        than the stride that 5 rows leave nothing away from the border.
    seed : int
        Of the noise.

    Returns
    -------
    path
    """
    if size is None:
        size = max(5, -(-kernel_size // stride) + 2)  # ceil(k/s) + 2 keeps an interior
    weight = example_kernel(kernel, kernel_size, seed)
    y = constant_response(weight, stride, size)
    fig = Figure(figsize=(11, 4.4))
    grid = fig.add_gridspec(1, 3, width_ratios=[y.shape[1], max(kernel_size, 3), max(stride, 3)])
    _response_panel(fig.add_subplot(grid[0]), y, interior(size, kernel_size, stride),
                    f"conv_transpose2d of ones {size}x{size}: {y.shape[0]}x{y.shape[1]}")
    heatmap(fig.add_subplot(grid[1]), weight, f"kernel: {kernel}")
    heatmap(fig.add_subplot(grid[2]), phase_sums(weight, stride),
            f"phase sums\n(stride {stride})")
    fig.suptitle(f"kernel {kernel_size}, stride {stride}: "
                 f"{'' if kernel_size % stride == 0 else 'not '}a multiple of the stride",
                 fontsize=11)
    fig.subplots_adjust(left=0.04, right=0.98, top=0.84, bottom=0.12, wspace=0.3)
    fig.savefig(path, **PNG)
    return path


def checkerboard_figure(path, image=None, seed=0):
    """Six transposed convolutions of a constant image, side by side.

    Uneven overlap (ones, k=3, s=2); even overlap (ones, k=4, s=2); FCN's bilinear start
    (k=4, s=2: 1 inside, less at the border); the bilinear kernel with noise; a bilinear
    k=8, s=4 upsampler after 20 gradient steps on ``image`` (the shipped photograph when
    None); a resize then a convolution with a random 3x3 kernel.

    Returns
    -------
    path
    """
    if image is None:
        from ..data import sample_photo

        image = sample_photo().mean(axis=2) / 255.0  # (H, W) grey in [0, 1]
    fitted = fit_upsampler(image[:128, :128], 4)[0][0, 0]
    rng = np.random.default_rng(seed)
    random3 = rng.uniform(0.5, 1.5, size=(1, 1, 3, 3))
    resized = resize_then_convolve(np.ones((1, 1, 4, 4)), 2, random3)[0, 0]
    # (output for a constant input, its interior, title, numbers in the cells)
    cases = [
        (constant_response(np.ones((3, 3)), 2, 4), interior(4, 3, 2),
         "ones k=3, s=2: 1, 2 and 4 copies", True),
        (constant_response(np.ones((4, 4)), 2, 4), interior(4, 4, 2),
         "ones k=4, s=2: 4 copies inside", True),
        (constant_response(bilinear_kernel(4), 2, 4), interior(4, 4, 2),
         "bilinear k=4, s=2 (FCN's start)", True),
        (constant_response(example_kernel("bilinear + noise", 4, seed), 2, 4), interior(4, 4, 2),
         "bilinear k=4, s=2 + noise (0.05)", False),
        (constant_response(fitted, 4, size=4), interior(4, 8, 4),
         "bilinear k=8, s=4 after 20\ngradient steps on a photograph", False),
        (resized, slice(1, resized.shape[0] - 1), "resize x2, then a random 3x3 conv", False),
    ]
    fig = Figure(figsize=(12, 8.8))
    for k, (y, rows, title, numbers) in enumerate(cases):
        _response_panel(fig.add_subplot(2, 3, k + 1), y, rows, title, numbers)
    fig.suptitle("ones in: the output of each upsampler. Box: away from the border; colours: "
                 "lowest to highest value inside the box (lower ones white)", fontsize=12)
    fig.subplots_adjust(left=0.03, right=0.99, top=0.92, bottom=0.06, hspace=0.3, wspace=0.15)
    fig.savefig(path, **PNG)
    return path
