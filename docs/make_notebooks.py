"""Write notebooks 01, 02, 04 and 05 of the course from the cell texts below.

Run from the repository root::

    python docs/make_notebooks.py           # rewrite the four notebooks
    python docs/make_notebooks.py --check   # exit 1 if a notebook differs from this file

Each notebook is one string in the percent format: a line ``# %% [markdown]`` starts a
markdown cell, a line ``# %%`` a code cell. The notebooks are written without outputs; the
tests execute them (``tests/test_notebooks.py``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
          "language_info": {"name": "python"}}

NB01 = r'''
# %% [markdown]
# 01 · im2col and convolution

Thirteen of FCN-8s' layers are 3x3 convolutions, `fc6` is a 7x7 one and four more are 1x1.
All of them run through one function, `minifcn.ops.conv2d_forward`, which turns a convolution
into a single matrix product. This notebook builds that up:

1. the picture, and the convolution written as loops (`conv2d_naive`), checked on numbers
   small enough to add up by hand;
2. *im2col*: every window of the image copied into one column of a matrix, drawn;
3. the convolution as one GEMM, the fast op, checked against the loops and against PyTorch;
4. the backward pass (`col2im`, the adjoint of im2col) and a numerical gradient check;
5. what im2col costs in memory at FCN's sizes.

Layouts are PyTorch's: images `(N, C, H, W)`, weights `(C_out, C_in, kh, kw)`.

# %%
import inspect
import tempfile
from pathlib import Path

import numpy as np
from IPython.display import Image, display

from minifcn.gradcheck import numerical_gradient, rel_error
from minifcn.models.describe import blob_rows
from minifcn.models.spec import network_specs
from minifcn.ops import (col2im, conv2d_backward, conv2d_backward_naive, conv2d_forward,
                         conv2d_naive, im2col, im2col_naive)
from minifcn.viz import conv2d_animation
from minifcn.viz.concept_figures import SOBEL, im2col_figure

np.set_printoptions(precision=4, suppress=True, linewidth=110)
figures = Path(tempfile.mkdtemp())  # the pictures are drawn fresh from the ops, here

# %% [markdown]
## 1 · The picture

A convolution slides a `kh x kw` window over the (zero-padded) input and writes one weighted
sum per position. As in every deep-learning library it is really a cross-correlation: the
kernel is not flipped. With stride `s` and padding `p` the output has

    H_out = (H + 2*p - kh) // s + 1

rows (integer division: a window that would hang off the padded edge is not taken).

# %%
display(Image(filename=conv2d_animation(figures / "conv.gif")))

# %% [markdown]
## 2 · The loop

`conv2d_naive` is the definition written out: for every image, output channel and output
pixel, multiply the window by the kernel and add it all up. It is slow and obviously right,
which is what an oracle should be.

# %%
print(inspect.getsource(conv2d_naive))

# %% [markdown]
### Checked on numbers you can add by hand

A 3x3 image holding 0..8 and the 2x2 kernel `[[0, 1], [2, 3]]`: the top-left output is
`0*0 + 1*1 + 3*2 + 4*3 = 19`, the one to its right `1*0 + 2*1 + 4*2 + 5*3 = 25`.

# %%
x = np.arange(9.0).reshape(1, 1, 3, 3)                        # (N, C, H, W)
k = np.array([[0.0, 1.0], [2.0, 3.0]]).reshape(1, 1, 2, 2)    # (C_out, C_in, kh, kw)
by_loop = conv2d_naive(x, k)
print(by_loop[0, 0])
assert np.array_equal(by_loop[0, 0], [[19, 25], [37, 43]])

# %% [markdown]
## 3 · im2col: every window becomes a column

The loop does the same small dot product thousands of times. Collect the operands instead:
copy the window of output pixel `(oh, ow)` into column `oh*W_out + ow` of a matrix. Row
`(c*kh + i)*kw + j` of that matrix holds tap `(i, j)` of channel `c`. For a 4x4 image,
a 3x3 kernel and padding 1 that is a 9 x 16 matrix:

# %%
display(Image(filename=im2col_figure(figures / "im2col.png")))

# %% [markdown]
The figure's numbers, from the package:

# %%
img = np.arange(1.0, 17.0).reshape(1, 1, 4, 4)
cols = im2col(img, kernel_size=3, stride=1, padding=1)   # (N, C*kh*kw, H_out*W_out)
print(cols.shape)
print(cols[0])
padded = np.pad(img[0, 0], 1)
assert np.array_equal(cols[0, :, 1 * 4 + 2], padded[1:4, 2:5].ravel())  # window of output (1, 2)
assert np.array_equal(cols, im2col_naive(img, 3, 1, 1))                 # the loop twin agrees

# %% [markdown]
`im2col` itself does not loop over output pixels. For each kernel offset `(i, j)` it copies
one strided slice of the padded image (the pixels that tap `(i, j)` reads in every window):
`kh*kw` vectorised copies, the same code on NumPy and CuPy.

# %%
print(inspect.getsource(im2col))

# %% [markdown]
## 4 · Convolution as one matrix product

With the columns in hand the whole convolution is `weight.reshape(C_out, C_in*kh*kw) @ cols`,
one GEMM, reshaped to `(N, C_out, H_out, W_out)`. On the figure:

# %%
by_gemm = (SOBEL.reshape(1, 9) @ cols).reshape(1, 1, 4, 4)   # (1, 9) @ (N, 9, 16)
print(by_gemm[0, 0])
assert np.allclose(by_gemm, conv2d_naive(img, SOBEL[None, None], padding=1))

# %% [markdown]
### The fast op

`conv2d_forward` is exactly that, for batches, channels, a bias and any stride and padding,
square or not. It returns the output and a cache for the backward pass. Checked against the
loop on an odd geometry:

# %%
rng = np.random.default_rng(0)
x = rng.standard_normal((2, 3, 9, 8))     # (N, C_in, H, W)
w = rng.standard_normal((4, 3, 3, 2))     # (C_out, C_in, kh, kw)
b = rng.standard_normal(4)
out, cache = conv2d_forward(x, w, b, stride=(2, 3), padding=(2, 1))
print(out.shape)                          # ((9 + 4 - 3)//2 + 1, (8 + 2 - 2)//3 + 1) = (6, 3)
assert out.shape == (2, 4, 6, 3)
assert np.allclose(out, conv2d_naive(x, w, b, (2, 3), (2, 1)))

# %% [markdown]
### Against PyTorch (skipped when it is not installed)

# %%
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: skipping this check")
if torch is not None:
    ref = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), torch.tensor(b),
                                     stride=(2, 3), padding=(2, 1))
    print("max |difference| =", np.abs(ref.numpy() - out).max())
    assert np.allclose(ref.numpy(), out)

# %% [markdown]
## 5 · The backward pass

Read the forward backwards. For one image, `out = W @ cols + b` with `W` of shape
`(C_out, K)`, `K = C_in*kh*kw`, and `cols` of shape `(K, L)`, `L = H_out*W_out`. Given the
upstream gradient `dout` `(C_out, L)`:

- `dW = dout @ cols.T`, summed over the batch: the same GEMM with the roles swapped;
- `db = dout` summed over the batch and the positions;
- `dcols = W.T @ dout`, the gradient of every column entry;
- `dx = col2im(dcols)`: every column entry is added back to the pixel it was copied from,
  summing where windows overlap.

`col2im` is the *adjoint* of `im2col` (its transpose as a linear map):
`<im2col(x), y> = <x, col2im(y)>` for all `x`, `y`. That identity is what makes `dx` right:

# %%
geometry = dict(kernel_size=(3, 2), stride=(2, 3), padding=(2, 1))
y = rng.standard_normal(im2col(x, **geometry).shape)
lhs = np.vdot(im2col(x, **geometry), y)
rhs = np.vdot(x, col2im(y, x.shape, **geometry))
print(lhs, rhs)
assert np.isclose(lhs, rhs)

# %% [markdown]
The fast backward against its loop twin, which sends each output pixel's gradient back to
the window it read:

# %%
dout = rng.standard_normal(out.shape)
dx, dw, db = conv2d_backward(dout, cache)
slow = conv2d_backward_naive(dout, x, w, (2, 3), (2, 1))
for name, fast_grad, slow_grad in zip(("dx", "dweight", "dbias"), (dx, dw, db), slow):
    assert np.allclose(fast_grad, slow_grad), name
print("dx", dx.shape, " dweight", dw.shape, " dbias", db.shape)

# %% [markdown]
### Gradient check

Central differences, `(L(x + h) - L(x - h)) / 2h` with `L = sum(out * dout)`, one entry at a
time, in float64. Relative errors around 1e-9 or below mean the gradient is right; 1e-7 is
the bar (`minifcn gradcheck` uses it too).

# %%
f = lambda: conv2d_forward(x, w, b, (2, 3), (2, 1))[0]
for name, analytic, wrt in [("dx", dx, x), ("dweight", dw, w), ("dbias", db, b)]:
    err = rel_error(numerical_gradient(f, wrt, dout), analytic)
    print(f"{name:8s} relative error {err:.1e}")
    assert err < 1e-7

# %% [markdown]
## 6 · What im2col costs at FCN's sizes

Each column copies a whole window, so the column matrix holds every input pixel about
`kh*kw / stride^2` times. FCN pads `conv1_1` by 100, so a 500x500 image becomes a 698x698
map, and `conv1_2` reads 64 channels of it: its columns are `64*9` rows by `698*698` columns.
The shapes come from `blob_rows`, the table behind `minifcn describe`; 1x1 convolutions skip
im2col altogether (their pixels already are the columns).

# %%
shapes = {r["name"]: r["shape"] for r in blob_rows("fcn8s", 500, 500)}
column_bytes = {}
print(f"{'layer':10s}{'k':>3s}{'columns (rows x cols)':>24s}{'float32':>11s}")
for s in network_specs("fcn8s"):
    if s.op != "conv" or s.kernel == 1:
        continue
    _, h_out, w_out = shapes[s.name]
    rows, n_cols = s.in_channels * s.kernel ** 2, h_out * w_out
    column_bytes[s.name] = rows * n_cols * 4
    size = f"{rows} x {n_cols}"
    print(f"{s.name:10s}{s.kernel:3d}{size:>24s}{column_bytes[s.name] / 1e9:8.2f} GB")
print(f"all of them: {sum(column_bytes.values()) / 1e9:.1f} GB")

# %%
assert column_bytes["conv1_2"] == 64 * 9 * 698 * 698 * 4      # ~1.1 GB for one image
activation = 64 * 698 * 698 * 4                                # conv1_2's output itself
print(f"conv1_2: columns {column_bytes['conv1_2'] / 1e9:.2f} GB, "
      f"its output {activation / 1e6:.0f} MB ({column_bytes['conv1_2'] / activation:.0f}x)")

# %% [markdown]
In training `conv2d_forward` keeps its columns in the cache for the weight gradient, so a
full-width forward pass at 500x500 holds all of them at once: about 3 GB per image, on top of
the activations. That is the price of one big GEMM per layer; it is why FCN trains with batch
size 1, and why the notebooks use narrow networks (`width=1/16`) and small images.

## Summary

- A convolution is a sum over each window; `conv2d_naive` says so in loops.
- `im2col` copies every window into a column (`kh*kw` strided slices); then the convolution
  is one matrix product `weight (C_out, C_in*kh*kw) @ cols`.
- Backward: `dweight = dout @ cols.T`, `dbias` = sum of `dout`, `dx = col2im(weight.T @ dout)`;
  `col2im` is the adjoint of `im2col`.
- The price is memory: the columns are up to `kh*kw` times the input (1.1 GB for `conv1_2`
  on a 500x500 image).

## Exercises

Each answer cell is filled in; the cell after it checks the answer against the package.

1. What is the shape of `im2col(x, 3, stride=2, padding=1)` for `x` of shape `(2, 3, 10, 7)`?

# %%
answer_1 = (2, 3 * 3 * 3, ((10 + 2 - 3) // 2 + 1) * ((7 + 2 - 3) // 2 + 1))

# %%
assert im2col(np.zeros((2, 3, 10, 7)), 3, stride=2, padding=1).shape == answer_1

# %% [markdown]
2. With a 3x3 kernel, stride 1 and padding 1 on a 5x5 image, how many entries of the column
   matrix are copies of the centre pixel `(2, 2)`?

# %%
answer_2 = 9  # every one of the 9 windows around it holds it once

# %%
one_hot = np.zeros((1, 1, 5, 5))
one_hot[0, 0, 2, 2] = 1
assert im2col(one_hot, 3, 1, 1).sum() == answer_2

# %% [markdown]
3. How many bytes do the float32 columns of `conv2_1` take for a 500x500 image? (`conv2_1`
   reads pool1: 64 channels of 349x349.)

# %%
answer_3 = 64 * 9 * 349 * 349 * 4

# %%
assert answer_3 == column_bytes["conv2_1"]

# %% [markdown]
4. What is the output width of a 3x3 convolution with stride 2 and padding 1 on a 7-pixel-wide
   image?

# %%
answer_4 = (7 + 2 * 1 - 3) // 2 + 1

# %%
out4 = conv2d_forward(np.zeros((1, 1, 7, 7)), np.zeros((1, 1, 3, 3)), None, stride=2, padding=1)[0]
assert out4.shape[-1] == answer_4
'''

NB02 = r'''
# %% [markdown]
# 02 · Max-pooling and the 1x1 convolution

Between its convolution blocks FCN halves the resolution five times with 2x2 max-pooling,
rounding *up*; after `pool5` it runs VGG16's fully connected layers as convolutions. This
notebook covers both:

1. max-pooling forward and backward, drawn, as loops, checked on the picture's numbers;
2. ceil against floor rounding, and why FCN rounds up;
3. the tie rule, and why gradient checks keep ties out;
4. the fast op, against the loops, PyTorch and numerical gradients;
5. a 1x1 convolution as the same fully connected layer applied at every pixel;
6. *convolutionalization*: a fully connected layer on a flattened 7x7 map is a 7x7 convolution.

# %%
import inspect
import tempfile
from pathlib import Path

import numpy as np
from IPython.display import Image, display

from minifcn.gradcheck import numerical_gradient, rel_error, well_separated
from minifcn.models.describe import blob_rows
from minifcn.ops import (conv2d_backward, conv2d_forward, conv_output_size, max_pool2d_backward,
                         max_pool2d_backward_naive, max_pool2d_forward, max_pool2d_naive)
from minifcn.viz.concept_figures import (ceil_floor_figure, convolutionalization_figure,
                                         max_pool_figure, pool_example)

np.set_printoptions(precision=4, suppress=True, linewidth=110)
figures = Path(tempfile.mkdtemp())
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: the PyTorch checks below are skipped")

# %% [markdown]
## 1 · The picture

Each 2x2 window (stride 2) keeps its largest value. On the way back only that pixel, the
window's *winner*, gets the window's gradient; the other three get nothing. With ceil
rounding a 5x5 input gives a 3x3 output: the last row and column of windows hang off the
edge and pool what exists.

# %%
display(Image(filename=max_pool_figure(figures / "max_pool.png")))

# %% [markdown]
## 2 · The loop

`max_pool2d_naive` clips each window to the real image and takes its maximum:

# %%
print(inspect.getsource(max_pool2d_naive))

# %% [markdown]
Checked on the figure's numbers, read off the picture:

# %%
x = pool_example()                       # (1, 1, 5, 5), the integers 1..25
print(x[0, 0])
by_loop = max_pool2d_naive(x, 2, 2, ceil_mode=True)
assert np.array_equal(by_loop[0, 0], [[18, 24, 10],
                                      [21, 17, 5],
                                      [8, 22, 25]])

# %% [markdown]
## 3 · Ceil or floor

The output size is `(H + 2*p - k) / s + 1`, rounded. Rounding down (floor, PyTorch's default)
drops a last pixel that no full window covers; rounding up (ceil, Caffe's rule) keeps a last
window that hangs off the edge.

# %%
display(Image(filename=ceil_floor_figure(figures / "ceil_floor.png")))
print("7 pixels: floor", conv_output_size(7, 2, 2, 0),
      " ceil", conv_output_size(7, 2, 2, 0, ceil_mode=True))

# %% [markdown]
FCN's five pools on a 500x500 image (698x698 after `conv1_1`'s padding of 100):

# %%
for ceil in (True, False):
    h, sizes = 698, []
    for _ in range(5):
        h = conv_output_size(h, 2, 2, 0, ceil_mode=ceil)
        sizes.append(h)
    print("ceil " if ceil else "floor", sizes)

# %% [markdown]
Why FCN rounds up:

- It is the reference's arithmetic. Caffe pools with ceil, so the published shapes (pool3
  88, pool4 44, pool5 22 at 500x500) assume it; PyTorch ports pass `ceil_mode=True` to match.
- Nothing is dropped. With floor the last row and column of every odd-sized map are never
  pooled and never receive a gradient.
- Every input size works. With ceil, a 1x1 image still leaves a 7x7 `pool5` for `fc6`'s
  7x7 window; with floor, inputs smaller than 26 pixels do not:

# %%
def pool5_size(h, ceil):
    h = h + 2 * 100 - 2  # conv1_1: kernel 3, padding 100 (the other convs keep the size)
    for _ in range(5):
        h = conv_output_size(h, 2, 2, 0, ceil_mode=ceil)
    return h


for h in (1, 25, 26, 500):
    print(f"input {h:3d}: pool5 ceil {pool5_size(h, True):2d}, floor {pool5_size(h, False):2d}")
assert all(pool5_size(h, True) >= 7 for h in range(1, 100))

# %% [markdown]
## 4 · The tie rule

When two pixels of a window share the maximum, the first in row-major order (top-left
first) wins and receives the whole gradient, as in Caffe and PyTorch:

# %%
tie = np.array([[[[5.0, 5.0], [1.0, 2.0]]]])
out, cache = max_pool2d_forward(tie, 2)
dx = max_pool2d_backward(np.ones_like(out), cache)
print(dx[0, 0])
assert np.array_equal(dx[0, 0], [[1, 0], [0, 0]])
if torch is not None:
    _, index = torch.nn.functional.max_pool2d(torch.tensor(tie), 2, return_indices=True)
    assert int(index) == 0  # PyTorch picks the same pixel

# %% [markdown]
At a tie the maximum has no derivative. A central difference there measures the average of
the two one-sided slopes, half for each tied pixel, so it disagrees with any rule that picks
one winner:

# %%
numeric = numerical_gradient(lambda: max_pool2d_forward(tie, 2)[0], tie, np.ones((1, 1, 1, 1)))
print(numeric[0, 0])

# %% [markdown]
That is not a bug in the backward pass, but it would fail a gradient check. So gradient checks
feed inputs without ties: `well_separated` returns shuffled values no two of which are closer
than `2 / size`, further apart than the finite-difference step.

## 5 · The fast op

`max_pool2d_forward` pads with `-inf` (so padding and the overhang never win), then, as
im2col does, takes one strided slice per kernel offset and keeps a running maximum and the
offset that won it. The backward sends each gradient to that offset, again one slice per
offset. Against the loops, on an odd geometry with padding and overlapping windows:

# %%
rng = np.random.default_rng(0)
x = well_separated(rng, (2, 3, 9, 8))
out, cache = max_pool2d_forward(x, 3, 2, 1, ceil_mode=True)
print(x.shape, "->", out.shape)
assert np.array_equal(out, max_pool2d_naive(x, 3, 2, 1, ceil_mode=True))
dout = rng.standard_normal(out.shape)
dx = max_pool2d_backward(dout, cache)
assert np.allclose(dx, max_pool2d_backward_naive(dout, x, 3, 2, 1, ceil_mode=True))
if torch is not None:
    ref = torch.nn.functional.max_pool2d(torch.tensor(x), 3, 2, 1, ceil_mode=True)
    assert np.array_equal(ref.numpy(), out)

# %% [markdown]
### Gradient check

# %%
f = lambda: max_pool2d_forward(x, 3, 2, 1, ceil_mode=True)[0]
err = rel_error(numerical_gradient(f, x, dout), dx)
print(f"dx relative error {err:.1e}")
assert err < 1e-7

# %% [markdown]
## 6 · A 1x1 convolution is a fully connected layer at every pixel

A 1x1 kernel reads one pixel: its `C_in` values. So a 1x1 convolution applies the same
fully connected layer `weight[:, :, 0, 0]` (`C_out x C_in`) to the channel vector of every
pixel. FCN's `fc7`, `score_fr`, `score_pool4` and `score_pool3` are such layers.

# %%
x1 = rng.standard_normal((2, 6, 5, 7))
w1 = rng.standard_normal((4, 6, 1, 1))
b1 = rng.standard_normal(4)
out1, cache1 = conv2d_forward(x1, w1, b1)
by_pixel = np.zeros_like(out1)
for n in range(2):
    for i in range(5):
        for j in range(7):
            by_pixel[n, :, i, j] = w1[:, :, 0, 0] @ x1[n, :, i, j] + b1
assert np.allclose(out1, by_pixel)

# %% [markdown]
The op uses that: for a 1x1 kernel with stride 1 and no padding it skips im2col, because the
pixels of `x.reshape(N, C_in, H*W)` already are the columns. Its gradients pass the same check:

# %%
dout1 = rng.standard_normal(out1.shape)
grads = conv2d_backward(dout1, cache1)
f1 = lambda: conv2d_forward(x1, w1, b1)[0]
for name, analytic, wrt in zip(("dx", "dweight", "dbias"), grads, (x1, w1, b1)):
    err = rel_error(numerical_gradient(f1, wrt, dout1), analytic)
    print(f"{name:8s} relative error {err:.1e}")
    assert err < 1e-7

# %% [markdown]
## 7 · Convolutionalization

VGG16 ends with fully connected layers: `fc6` reads the flattened 512 x 7 x 7 `pool5` of a
224x224 image. Flattening in `(C, H, W)` order lines the weight's 25,088 inputs up with a
7x7 window of all 512 channels, so the same numbers, reshaped to `(4096, 512, 7, 7)`, are a
7x7 convolution. On a 7x7 map that convolution has one output, the FC layer's. On a bigger
map it slides, and gives the FC layer's answer at every position: the network becomes fully
convolutional and takes any input size.

# %%
display(Image(filename=convolutionalization_figure(figures / "convolutionalization.png")))

# %% [markdown]
With small random numbers (3 channels, 5 outputs):

# %%
C, F = 3, 5
w_fc = rng.standard_normal((F, C * 7 * 7))      # an FC layer on a flattened C x 7 x 7 map
b_fc = rng.standard_normal(F)
feat = rng.standard_normal((1, C, 7, 7))
y_fc = w_fc @ feat.reshape(-1) + b_fc           # flatten in (C, H, W) order
w_conv = w_fc.reshape(F, C, 7, 7)               # (C_out, C_in, kh, kw): the same numbers
y_conv = conv2d_forward(feat, w_conv, b_fc)[0]  # (1, F, 1, 1)
print(y_fc)
print(y_conv[0, :, 0, 0])
assert np.allclose(y_conv[0, :, 0, 0], y_fc)

# %% [markdown]
On a 10x12 map the convolution answers at 4 x 6 positions, each equal to the FC layer on the
7x7 crop there:

# %%
big = rng.standard_normal((1, C, 10, 12))
y_big = conv2d_forward(big, w_conv, b_fc)[0]
print(y_big.shape)
for i in range(4):
    for j in range(6):
        crop = big[0, :, i:i + 7, j:j + 7]
        assert np.allclose(y_big[0, :, i, j], w_fc @ crop.reshape(-1) + b_fc)

# %% [markdown]
`fc7` (`4096 x 4096`) becomes a 1x1 convolution `(4096, 4096, 1, 1)` the same way. A file
that flattened its maps in another order (Keras: channels last) must be permuted first;
notebook 07 does that.

## Summary

- Max-pooling keeps each window's largest value; backward routes the window's gradient to
  that winner alone (the first one on a tie).
- FCN rounds the output size up (ceil): the last window may hang off the edge. This matches
  the reference's shapes, drops no pixel, and lets every input size reach `fc6`.
- Gradient checks avoid ties, where the maximum is not differentiable.
- A 1x1 convolution is one fully connected layer applied at every pixel.
- A fully connected layer on a flattened `C x 7 x 7` map is a 7x7 convolution with the same
  weights, reshaped; on a bigger map it slides.

## Exercises

1. `pool2` of a 500x500 image is 175x175. How big is `pool3` (2x2, stride 2, ceil)?

# %%
answer_1 = 88  # ceil((175 - 2) / 2) + 1

# %%
assert conv_output_size(175, 2, 2, 0, ceil_mode=True) == answer_1

# %% [markdown]
2. The window `[[3, 7], [7, 1]]` has a tie. Which pixel `(row, column)` receives its gradient?

# %%
answer_2 = (0, 1)

# %%
window = np.array([[[[3.0, 7.0], [7.0, 1.0]]]])
out, cache = max_pool2d_forward(window, 2)
assert tuple(np.argwhere(max_pool2d_backward(np.ones_like(out), cache)[0, 0])[0]) == answer_2

# %% [markdown]
3. `pool5` of a 500x500 image is 22x22. How big is the output of `fc6` (7x7, stride 1, no
   padding)?

# %%
answer_3 = (22 - 7 + 1, 22 - 7 + 1)

# %%
assert {r["name"]: r["shape"] for r in blob_rows("fcn8s", 500, 500)}["fc6"][1:] == answer_3

# %% [markdown]
4. With floor rounding, what is the smallest square input whose `pool5` still fits `fc6`'s
   7x7 window?

# %%
answer_4 = 26

# %%
assert pool5_size(answer_4, ceil=False) >= 7 > pool5_size(answer_4 - 1, ceil=False)
'''

NB04 = r'''
# %% [markdown]
# 04 · Softmax cross-entropy and the segmentation metrics

FCN scores every pixel for every class, and learns from the per-pixel softmax
cross-entropy; it is judged by four numbers computed from one confusion matrix. This
notebook:

1. draws the per-pixel loss and gradient, void pixels (label 255) excluded;
2. writes the loss as a loop, checked on numbers you can work out by hand;
3. derives the gradient `softmax - onehot` and checks it numerically;
4. checks the fast op against the loop and PyTorch;
5. compares the summed loss of the reference with a per-pixel mean, and what that does to
   the learning rate (1e-10 against about 1e-5);
6. computes the four metrics of `minifcn.metrics` on an example small enough to do by hand.

# %%
import inspect
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from IPython.display import Image, display

from minifcn.gradcheck import numerical_gradient, rel_error
from minifcn.metrics import ConfusionMatrix, confusion_matrix, format_scores, scores_from_hist
from minifcn.ops import (softmax_cross_entropy_backward, softmax_cross_entropy_forward,
                         softmax_cross_entropy_naive)
from minifcn.viz.concept_figures import (confusion_figure, loss_example, metrics_example,
                                         softmax_loss_figure)

np.set_printoptions(precision=4, suppress=True, linewidth=110)
figures = Path(tempfile.mkdtemp())

# %% [markdown]
## 1 · The picture

Scores `(N, C, H, W)`, one per class and pixel; labels `(N, H, W)`. Each pixel's loss is
`-log p[label]` with `p = softmax(scores at that pixel)`. Pixels labelled 255 (VOC's void
border) add no loss and get no gradient (hatched).

# %%
display(Image(filename=softmax_loss_figure(figures / "loss.png")))

# %% [markdown]
## 2 · The loop

# %%
print(inspect.getsource(softmax_cross_entropy_naive))

# %% [markdown]
Numbers by hand. One pixel, scores `(2, 1, 0)`, label 0: `p[0] = e^2 / (e^2 + e^1 + e^0)`, so
the loss is `-log p[0] = log(1 + e^-1 + e^-2) = 0.4076`. Equal scores over `C` classes give
`log C` whatever the label.

# %%
s = np.array([2.0, 1.0, 0.0]).reshape(1, 3, 1, 1)   # (N, C, H, W)
label = np.array([[[0]]])                             # (N, H, W)
print(softmax_cross_entropy_naive(s, label))
assert np.isclose(softmax_cross_entropy_naive(s, label), np.log(1 + np.exp(-1) + np.exp(-2)))
assert np.isclose(softmax_cross_entropy_naive(np.zeros((1, 3, 1, 1)), np.array([[[2]]])), np.log(3))

# %% [markdown]
### The void label

Scores at void pixels do not matter at all, and the mean is over the valid pixels only
(16 of the figure's 20):

# %%
scores, labels = loss_example()                       # (1, 3, 4, 5), (1, 4, 5); column 4 is void
loss, cache = softmax_cross_entropy_forward(scores, labels)
changed = scores.copy()
changed[:, :, labels[0] == 255] = 100.0               # anything at all
assert np.isclose(softmax_cross_entropy_forward(changed, labels)[0], loss)
total = softmax_cross_entropy_forward(scores, labels, reduction="sum")[0]
n_valid = int((labels != 255).sum())
print(f"mean {loss:.4f} = sum {total:.4f} / {n_valid} valid pixels")
assert np.isclose(loss, total / n_valid)

# %% [markdown]
## 3 · The gradient: softmax minus one-hot

For one pixel with scores `s` and label `y`,

    L = -log p[y] = log(sum_j exp(s[j])) - s[y]

    dL/ds[k] = exp(s[k]) / sum_j exp(s[j]) - [k == y] = p[k] - onehot(y)[k]

The probabilities sum to one and the one-hot vector sums to one, so each pixel's gradient sums
to zero over the classes: raising the true class's score lowers the others' share. The mean
divides every pixel's gradient by the number of valid pixels; void pixels get zero.

Built by hand with NumPy and compared with the op's backward:

# %%
p = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)          # (1, 3, 4, 5)
onehot = np.arange(3)[None, :, None, None] == labels[:, None]             # void: no class matches
valid = (labels != 255)[:, None]
by_hand = (p - onehot) * valid / n_valid
dscores = softmax_cross_entropy_backward(1.0, cache)
assert np.allclose(dscores, by_hand)
assert np.allclose(dscores.sum(axis=1), 0)                                # per pixel, over classes

# %% [markdown]
And numerically, by central differences of the loss itself (`f` returns a scalar, so no
`dout` is needed):

# %%
f = lambda: softmax_cross_entropy_forward(scores, labels)[0]
err = rel_error(numerical_gradient(f, scores), dscores)
print(f"dscores relative error {err:.1e}")
assert err < 1e-7

# %% [markdown]
### Stability

`exp(1000)` overflows. The op subtracts each pixel's largest score first (`softmax` does not
change when every score moves by the same amount), so huge scores are harmless:

# %%
big = np.array([1000.0, 999.0, 998.0]).reshape(1, 3, 1, 1)
with np.errstate(over="ignore", invalid="ignore"):
    print("exp directly:", np.exp(big).ravel())
print("the op:", softmax_cross_entropy_forward(big, label)[0])
assert np.isclose(softmax_cross_entropy_forward(big, label)[0], np.log(1 + np.exp(-1) + np.exp(-2)))

# %% [markdown]
## 4 · The fast op

On a batch with several classes, void pixels and class weights, against the loop and PyTorch:

# %%
rng = np.random.default_rng(0)
scores2 = rng.standard_normal((2, 4, 5, 7))
labels2 = rng.integers(0, 4, size=(2, 5, 7))
labels2[0, :2] = 255
weight = np.array([0.5, 1.0, 2.0, 1.5])
for reduction in ("mean", "sum"):
    for cw in (None, weight):
        options = dict(class_weight=cw, reduction=reduction)
        fast = softmax_cross_entropy_forward(scores2, labels2, **options)[0]
        assert np.isclose(fast, softmax_cross_entropy_naive(scores2, labels2, **options))
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: skipping this check")
if torch is not None:
    for reduction in ("mean", "sum"):
        ref = torch.nn.functional.cross_entropy(torch.tensor(scores2), torch.tensor(labels2),
                                                ignore_index=255, reduction=reduction)
        fast = softmax_cross_entropy_forward(scores2, labels2, reduction=reduction)[0]
        print(f"{reduction}: minifcn {fast:.6f}  torch {ref.item():.6f}")
        assert np.isclose(fast, ref.item())

# %% [markdown]
## 5 · Sum or mean, and the learning rate

The reference FCN sums the loss over the pixels of its one image per batch; it does not
average. Its gradients are therefore `n_valid` times those of a per-pixel mean, and so must
its learning rate be smaller: it trains with 1e-10 (FCN-32s), 1e-12 (16s) and 1e-14 (8s).
With a mean loss the same step needs a learning rate about the pixel count larger. On a
500x500 image with 21 classes:

# %%
scores500 = rng.standard_normal((1, 21, 500, 500)).astype(np.float32)
labels500 = rng.integers(0, 21, size=(1, 500, 500))
labels500[:, :, :10] = 255                               # a void band, as in VOC
n_valid500 = int((labels500 != 255).sum())
grads = {}
for reduction in ("sum", "mean"):
    _, c = softmax_cross_entropy_forward(scores500, labels500, reduction=reduction)
    grads[reduction] = softmax_cross_entropy_backward(1.0, c)
ratio = np.abs(grads["sum"]).max() / np.abs(grads["mean"]).max()
print(f"valid pixels {n_valid500:,}; gradient ratio sum/mean {ratio:,.0f}")
lr_sum = 1e-10
lr_mean = lr_sum * n_valid500
print(f"lr {lr_sum:g} on the summed loss takes the same step as lr {lr_mean:.2e} on the mean")
assert np.allclose(lr_sum * grads["sum"], lr_mean * grads["mean"], rtol=1e-4, atol=0)

# %% [markdown]
Mixing the two is a classic failure. A mean-loss learning rate such as 1e-4 on the summed
loss takes steps 245,000 times too large: the loss turns to NaN within a few iterations. The
reference's 1e-10 on a mean loss takes steps 245,000 times too small: nothing moves. The
learning rate, the reduction and the image size travel together (with momentum 0.99, as in
the reference, the effective step is a further 100 times the learning rate).

## 6 · The metrics

The reference accumulates one confusion matrix `hist[gt, pred]` over every labelled pixel of
the whole dataset, and then computes:

- pixel accuracy = `trace(hist) / hist.sum()`
- mean accuracy = mean over classes of `hist[c, c] / (row c sum)`
- mean IU = mean over classes of `hist[c, c] / (row c sum + column c sum - hist[c, c])`
- frequency-weighted IU = sum over classes of `(row c sum / total) * IU[c]`

A worked example: 3 classes, 16 pixels, one of them void (255, not counted).

# %%
gt, pred = metrics_example()
print("ground truth\n", gt, "\nprediction\n", pred)
display(Image(filename=confusion_figure(figures / "confusion.png")))

# %% [markdown]
By hand. Ground-truth class 0 has 7 pixels, 6 predicted 0 and one 1; class 1 has 4 pixels,
one predicted 0 and 3 right; class 2 has 4 pixels, one predicted 0 and 3 right. So

    hist = [[6, 1, 0],      row sums    (7, 4, 4),  total 15
            [1, 3, 0],      column sums (8, 4, 3),  diagonal (6, 3, 3)
            [1, 0, 3]]

- pixel accuracy `12/15 = 0.8`
- class accuracies `6/7, 3/4, 3/4`
- IU: class 0 `6/(7+8-6) = 2/3`, class 1 `3/(4+4-3) = 3/5`, class 2 `3/(4+3-3) = 3/4`
- frequency-weighted IU `7/15 * 2/3 + 4/15 * 3/5 + 4/15 * 3/4`

# %%
hist = confusion_matrix(gt, pred, num_classes=3)
print(hist)
assert np.array_equal(hist, [[6, 1, 0], [1, 3, 0], [1, 0, 3]])
F = Fraction
iu = [F(2, 3), F(3, 5), F(3, 4)]
by_hand = {
    "pixel_accuracy": F(12, 15),
    "mean_accuracy": (F(6, 7) + F(3, 4) + F(3, 4)) / 3,
    "mean_iu": sum(iu) / 3,
    "frequency_weighted_iu": F(7, 15) * iu[0] + F(4, 15) * iu[1] + F(4, 15) * iu[2],
}
scores = scores_from_hist(hist)
for name, value in by_hand.items():
    print(f"{name:22s} by hand {float(value):.4f}   minifcn {scores[name]:.4f}")
    assert np.isclose(scores[name], float(value))

# %% [markdown]
### A class that never appears gives NaN

Score the same pixels as a 4-class problem: class 3 is in neither the ground truth nor the
prediction, so its IU is 0/0. NaN is the honest answer, and the means skip it:

# %%
scores4 = scores_from_hist(confusion_matrix(gt, pred, num_classes=4))
print(scores4["per_class_iu"])
assert np.isnan(scores4["per_class_iu"][3])
assert np.isclose(scores4["mean_iu"], scores["mean_iu"])
print(format_scores(scores4, ["background", "one", "two", "three"]))

# %% [markdown]
### One matrix for the whole dataset, not a mean of per-image scores

Add a second image, all background and predicted perfectly. Its own mean IU is 1 (only class
0 is present). The mean of the two images' scores is not the score of the two together:

# %%
gt_b, pred_b = np.zeros((2, 2), int), np.zeros((2, 2), int)
per_image = [scores_from_hist(confusion_matrix(g, q, 3))["mean_iu"]
             for g, q in ((gt, pred), (gt_b, pred_b))]
cm = ConfusionMatrix(3)
cm.update(gt, pred)
cm.update(gt_b, pred_b)
print(f"mean of per-image mean IU {np.mean(per_image):.4f}; "
      f"dataset mean IU {cm.scores()['mean_iu']:.4f}")

# %% [markdown]
The reference (and `minifcn.metrics.ConfusionMatrix`) accumulates; the published numbers
(62.7 mean IU for FCN-8s on seg11valid) are computed that way.

## Summary

- The loss of a pixel is `-log softmax(s)[label]`; its gradient is `softmax(s) - onehot`.
- Void pixels (255) give no loss and no gradient; the mean is over valid pixels only.
- The reference sums over pixels, so its learning rate is about `1/pixels` of a mean-loss one:
  1e-10 with a sum is about 2.5e-5 with a mean at 500x500.
- The four metrics come from one confusion matrix over the whole dataset; a class absent from
  both ground truth and prediction has IU NaN and is skipped.

## Exercises

1. What is the loss of a pixel with scores `(0, 0, 0, 0)` (4 classes), whatever its label?

# %%
answer_1 = np.log(4)

# %%
loss1 = softmax_cross_entropy_forward(np.zeros((1, 4, 1, 1)), np.array([[[1]]]))[0]
assert np.isclose(loss1, answer_1)

# %% [markdown]
2. What is the gradient (summed loss) for scores `(0, 0, 0)` and label 2?

# %%
answer_2 = [1 / 3, 1 / 3, -2 / 3]

# %%
_, c = softmax_cross_entropy_forward(np.zeros((1, 3, 1, 1)), np.array([[[2]]]), reduction="sum")
assert np.allclose(softmax_cross_entropy_backward(1.0, c).ravel(), answer_2)

# %% [markdown]
3. A 500x375 image has 5,000 void pixels. With a per-pixel mean loss, which learning rate takes
   the same step as 1e-10 on the summed loss?

# %%
answer_3 = 1e-10 * (500 * 375 - 5000)

# %%
labels3 = np.zeros((1, 375, 500), dtype=np.int64)
labels3[0, :10] = 255                                   # 10 rows of 500: 5,000 void pixels
s3 = np.random.default_rng(1).standard_normal((1, 2, 375, 500))
_, cache_sum = softmax_cross_entropy_forward(s3, labels3, reduction="sum")
_, cache_mean = softmax_cross_entropy_forward(s3, labels3, reduction="mean")
g_sum = softmax_cross_entropy_backward(1.0, cache_sum)
g_mean = softmax_cross_entropy_backward(1.0, cache_mean)
assert np.allclose(1e-10 * g_sum, answer_3 * g_mean)

# %% [markdown]
4. What is the mean IU of the 2-class confusion matrix `[[3, 1], [2, 4]]`?

# %%
answer_4 = (3 / (4 + 5 - 3) + 4 / (6 + 5 - 4)) / 2

# %%
assert np.isclose(scores_from_hist(np.array([[3, 1], [2, 4]]))["mean_iu"], answer_4)
'''

NB05 = r'''
# %% [markdown]
# 05 · FCN-8s: shapes, coordinates, crops and gradients

The pieces of notebooks 01 to 04 make up FCN-8s (Long, Shelhamer and Darrell, 2015): VGG16
with its fully connected layers turned into convolutions, then three upsampling steps that
add in the scored `pool4` and `pool3` maps. This notebook:

1. draws the size of every blob for a 500x500 image and prints the shape table;
2. builds the full network and counts its parameters;
3. derives the crop offsets 5, 9 and 31 step by step from coordinate maps;
4. explains why `conv1_1` pads by 100;
5. runs forward and backward on a narrow network, and gradient-checks one.

# %%
import tempfile
import time
from pathlib import Path

import numpy as np
from IPython.display import Image, display

import minifcn
from minifcn.data import make_sample
from minifcn.models import CoordMap, coordinate_maps, crop_offsets, network_specs
from minifcn.models.describe import blob_rows, describe
from minifcn.models.gradcheck_cases import check_model_gradients, randomise
from minifcn.ops import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from minifcn.viz.concept_figures import crop_alignment_figure, fcn8s_sizes_figure

np.set_printoptions(precision=4, suppress=True, linewidth=110)
figures = Path(tempfile.mkdtemp())

# %% [markdown]
## 1 · The picture

`conv1_1` pads by 100, so a 500x500 image becomes 698x698. Five ceil-rounded pools bring that
to 22x22, `fc6`'s 7x7 window to 16x16. Then `upscore2` doubles the scores to 34x34 and adds
`score_pool4` (44x44) cropped at offset 5; `upscore_pool4` doubles again to 70x70 and adds
`score_pool3` (88x88) cropped at 9; `upscore8` multiplies by 8 to 568x568, cropped at 31 to
the image's 500x500.

# %%
display(Image(filename=fcn8s_sizes_figure(figures / "sizes.png")))

# %% [markdown]
The same numbers as a table (`minifcn describe fcn8s --size 500x500`), computed from the layer
specs by size arithmetic alone: shapes, parameters, FLOPs, receptive field, coordinate map and
crop offset of every blob.

# %%
print(describe("fcn8s", 500, 500))

# %% [markdown]
Checked against the shapes the reference publishes for a 500x500 input:

# %%
rows = {r["name"]: r for r in blob_rows("fcn8s", 500, 500)}
published = {"conv1_2": 698, "pool1": 349, "pool2": 175, "pool3": 88, "pool4": 44, "pool5": 22,
             "fc6": 16, "score_fr": 16, "upscore2": 34, "upscore_pool4": 70, "upscore8": 568,
             "score": 500}
for name, size in published.items():
    assert rows[name]["shape"][1:] == (size, size), name

# %% [markdown]
## 2 · The network and its parameters

`minifcn.FCN8s()` is the full-width network: VGG16's channel counts, 21 classes. Built in
float32 it holds about half a gigabyte of weights (random here; notebook 07 shows where VGG16's
come from).

# %%
t0 = time.perf_counter()
net = minifcn.FCN8s()
print(net, f"built in {time.perf_counter() - t0:.1f} s")
counts = {}
for name, p in net.named_parameters():
    layer = name.rsplit(".", 1)[0]
    counts[layer] = counts.get(layer, 0) + int(p.data.size)
for layer, n in counts.items():
    print(f"{layer:14s}{n:>12,}")
total = net.num_parameters()
print(f"{'total':14s}{total:>12,}")
print(f"fc6 alone: {counts['fc6'] / total:.0%}")
assert counts["fc6"] == 4096 * 512 * 7 * 7 + 4096
assert total == sum(r["params"] for r in rows.values())     # the table agrees
del net

# %% [markdown]
Three quarters of the parameters sit in `fc6`, VGG16's first fully connected layer, reshaped
to a 7x7 convolution. The three `upscore` layers (bilinear, fixed by default) are counted but
not trained.

## 3 · Where 5, 9 and 31 come from

Each layer maps coordinates affinely. Write the input coordinate of pixel `x` of a blob as
`a*x + b`. A convolution or pooling with kernel `k`, stride `s` and padding `p` centres output
pixel `x` on bottom pixel `s*x + (k - 1)/2 - p`, so

    a' = a*s,    b' = b + a*((k - 1)/2 - p)

and a transposed convolution is the inverse map, `a' = a/s`, `b' = b - a*((k - 1)/2 - p)/s`.
ReLU, dropout and sums keep the map. Step by step along the trunk, with `CoordMap`:

# %%
m = CoordMap()                                 # the image: x_in = 1*x + 0
m = m.through_window(3, 1, 100); print("conv1_1 ", m)   # (3-1)/2 - 100 = -99
m = m.through_window(3, 1, 1);   print("conv1_2 ", m)   # a 3x3 conv with padding 1 keeps the map
m = m.through_window(2, 2, 0);   print("pool1   ", m)   # 2x - 99 + 0.5: a 2x2 window's centre
for block in (2, 3, 4):
    for _ in range(3 if block > 2 else 2):
        m = m.through_window(3, 1, 1)
    m = m.through_window(2, 2, 0)
    print(f"pool{block}   ", m)
pool4 = m
assert str(pool4) == "16*x - 91.5"

# %% [markdown]
Now the other branch: `pool5`, `fc6` (7x7, no padding), then `upscore2` (kernel 4, stride 2):

# %%
m = pool4
for _ in range(3):
    m = m.through_window(3, 1, 1)
m = m.through_window(2, 2, 0);   print("pool5   ", m)
m = m.through_window(7, 1, 0);   print("fc6     ", m)   # fc7 and score_fr are 1x1: same map
m = m.through_transposed(4, 2, 0); print("upscore2", m)
upscore2 = m

# %% [markdown]
Pixel `x` of `upscore2` sits at `16*x - 11.5`; pixel `x + o` of `score_pool4` (which has
`pool4`'s map: a 1x1 convolution changes nothing) sits at `16*(x + o) - 91.5`. They coincide
when `16*o = 91.5 - 11.5 = 80`: **o = 5**. Crop `score_pool4` starting at 5, to `upscore2`'s
size, and the two maps line up pixel for pixel.

# %%
offset = (upscore2.shift - pool4.shift) / pool4.scale
print("offset", offset)
assert offset == 5
display(Image(filename=crop_alignment_figure(figures / "crop.png")))

# %% [markdown]
The same composition, for every blob at once, is `coordinate_maps`; `crop_offsets` turns it
into every crop's offset, and the network takes its offsets from there:

# %%
maps = coordinate_maps(network_specs("fcn8s"))
for name in ("pool3", "upscore_pool4", "upscore8"):
    print(f"{name:14s}{maps[name]}")
print("pool3 against upscore_pool4:", (maps["upscore_pool4"].shift - maps["pool3"].shift) / 8)
print("upscore8 against the image: ", (maps["data"].shift - maps["upscore8"].shift) / 1)
offsets = crop_offsets(network_specs("fcn8s"))
print(offsets)
assert offsets == {"score_pool4c": 5, "score_pool3c": 9, "score": 31}
assert crop_offsets(network_specs("fcn32s")) == {"score": 19}
assert crop_offsets(network_specs("fcn16s")) == {"score_pool4c": 5, "score": 27}

# %% [markdown]
### Not centred

The crops start at these offsets from the top-left corner. Centring the smaller map inside the
larger one is a common mistake: at 500x500 it happens to give 5 and 9 for the skips, but 34
instead of 31 for the output, and at other sizes it is wrong everywhere (half pixels even):

# %%
for size in (500, 375, 224):
    r = {row["name"]: row["shape"][1] for row in blob_rows("fcn8s", size, size)}
    centred = ((r["score_pool4"] - r["upscore2"]) / 2, (r["score_pool3"] - r["upscore_pool4"]) / 2,
               (r["upscore8"] - size) / 2)
    print(f"{size}x{size}: centred {centred}   right (5, 9, 31)")

# %% [markdown]
## 4 · Why pad 100

Two things must hold for every input size, down to 1x1:

1. `fc6`'s 7x7 window must fit in `pool5`. Without padding an image must be at least 195
   pixels on a side (and a 1x1 image has no `pool5` at all). With 100, a 1x1 image gives
   `1 + 200 - 2 = 199` after `conv1_1`, then 100, 50, 25, 13, 7 after the pools: `fc6` fits,
   exactly.
2. Every crop must stay inside the map it crops. The final offset is `pad - 69`, so the
   padding must be at least 69, and the upsampled map must still cover the image after it.

Offsets 5 and 9 do not depend on the padding (both sides of those crops pass through
`conv1_1`); the last one does:

# %%
for pad in (100, 69, 68):
    try:
        print(pad, crop_offsets(network_specs("fcn8s", pad=pad)))
    except ValueError as exc:
        print(pad, "ValueError:", exc)

# %% [markdown]
And with too little padding a small image leaves no room for `fc6`:

# %%
try:
    blob_rows("fcn8s", 1, 1, pad=80)
except ValueError as exc:
    print("ValueError:", exc)

# %% [markdown]
With 100, every size from 1x1 up works: `fc6` fits and each crop window lies inside its
map (`blob_rows` checks the convolutions; the crops are checked here).

# %%
crops = [s for s in network_specs("fcn8s") if s.op == "crop"]


def runs(h, w, pad=100):
    try:
        r = {row["name"]: row for row in blob_rows("fcn8s", h, w, pad=pad)}
    except ValueError:
        return False                  # a kernel does not fit, or an offset is negative
    return all(r[s.name]["offset"] + r[s.bottom[1]]["shape"][i] <= r[s.bottom[0]]["shape"][i]
               for s in crops for i in (1, 2))


assert all(runs(h, w) for h in range(1, 120) for w in (1, 2, 31, 32, 33))
print("every size tried runs with pad 100")

# %% [markdown]
The real network agrees: odd sizes in, the same sizes out (a narrow one, `width=1/16`, with
5 classes, so that it runs in a moment).

# %%
small = minifcn.FCN8s(num_classes=5, width=1 / 16).eval()
for h, w in ((1, 1), (7, 13), (33, 31)):
    out = small(np.zeros((1, 3, h, w), np.float32))
    print((h, w), "->", out.shape)
    assert out.shape == (1, 5, h, w)

# %% [markdown]
## 5 · Forward and backward on a narrow network

A synthetic 64x64 image (shapes on clutter, `minifcn.data`), a narrow FCN-8s, the mean
cross-entropy, and the whole backward pass:

# %%
rng = np.random.default_rng(0)
image, label = make_sample(rng, 64, 64)                          # (64, 64, 3) uint8, (64, 64) uint8
x = (image.astype(np.float32) / 255 - 0.5).transpose(2, 0, 1)[None]   # (1, 3, 64, 64)
labels = label[None].astype(np.int64)                            # (1, 64, 64)
model = minifcn.FCN8s(num_classes=5, width=1 / 16).train()
t0 = time.perf_counter()
scores = model(x)
loss, cache = softmax_cross_entropy_forward(scores, labels)
dx = model.backward(softmax_cross_entropy_backward(1.0, cache))
print(f"scores {scores.shape}, loss {loss:.4f}, dx {dx.shape}, {time.perf_counter() - t0:.2f} s")

# %% [markdown]
The score layers start at zero (as in the reference), so every score is 0 and the loss is
exactly `log 5`. For the same reason the first gradient reaches only the score layers: the
gradient into the trunk passes through their zero weights. (So a freshly built FCN predicts
class 0, background, everywhere until it has trained: question 4 of the FAQ.)

# %%
assert np.isclose(loss, np.log(5))
for name, p in model.named_parameters():
    if p.grad is not None and np.abs(p.grad).max() > 0:
        print(f"{name:22s} gradient {p.grad.shape}, max |g| {np.abs(p.grad).max():.2e}")

# %% [markdown]
## 6 · Gradient check of the whole network

A narrower network still (`width=1/64`, 3 classes) in float64, every parameter set to random
values (so no gradient is trivially zero), the upsampling layers learned, dropout on. Each
parameter array and the input get a random-direction check and a few sampled central
differences, with ReLU masks and pooling winners pinned so that the finite differences
measure the same smooth piece the backward pass differentiates.

# %%
rng = np.random.default_rng(0)
gc_model = minifcn.FCN8s(num_classes=3, width=1 / 64, learn_upsampling=True, dtype=np.float64)
randomise(gc_model, rng)
xg = rng.standard_normal((2, 3, 9, 11))
yg = rng.integers(0, 3, (2, 9, 11))
yg[0, :2] = 255
t0 = time.perf_counter()
errors = check_model_gradients(gc_model.train(), xg, yg)
print(f"{len(errors)} gradients checked in {time.perf_counter() - t0:.0f} s")
for name, err in sorted(errors.items(), key=lambda kv: -kv[1])[:8]:
    print(f"  {name:24s}{err:.1e}")
assert max(errors.values()) < 1e-6

# %% [markdown]
## Summary

- FCN-8s is VGG16 convolutionalized (`fc6` 7x7, `fc7` 1x1), a 1x1 scorer, and three transposed
  convolutions whose outputs are summed with the scored, cropped `pool4` and `pool3`.
- At 500x500: conv1 698, pool5 22, fc6 16, upscore2 34, upscore_pool4 70, upscore8 568.
- Crop offsets come from composing each layer's affine coordinate map: 5, 9, 31 (FCN-16s 5, 27;
  FCN-32s 19). They are not centred crops.
- Padding 100 lets `fc6`'s 7x7 window fit any input from 1x1 up and keeps every crop in bounds.
- 134 million parameters, three quarters of them in `fc6`.

## Exercises

1. What is the final crop offset of FCN-16s (`upscore16`: kernel 32, stride 16)?

# %%
answer_1 = 27

# %%
assert crop_offsets(network_specs("fcn16s"))["score"] == answer_1

# %% [markdown]
2. How big is `fc6`'s output for a 224x224 image (ImageNet's size)?

# %%
answer_2 = 8  # 224 + 198 = 422 -> pools 211, 106, 53, 27, 14 -> 14 - 7 + 1

# %%
rows224 = {r["name"]: r for r in blob_rows("fcn8s", 224, 224)}
assert rows224["fc6"]["shape"][1:] == (answer_2, answer_2)

# %% [markdown]
3. What is the smallest `conv1_1` padding with which a 1x1 image still runs?

# %%
answer_3 = 97  # 1 + 2*97 - 2 = 193 -> pools 97, 49, 25, 13, 7: fc6 just fits

# %%
assert runs(1, 1, pad=answer_3) and not runs(1, 1, pad=answer_3 - 1)

# %% [markdown]
4. How many parameters does `fc6` have (weights and biases)?

# %%
answer_4 = 4096 * 512 * 7 * 7 + 4096

# %%
assert rows["fc6"]["params"] == answer_4
'''

SOURCES = {
    "01_im2col_and_convolution.ipynb": NB01,
    "02_pooling_and_1x1_convolution.ipynb": NB02,
    "04_softmax_cross_entropy_and_metrics.ipynb": NB04,
    "05_fcn8s.ipynb": NB05,
}


def parse(source):
    """Split a percent-format string into nbformat cells."""
    cells, kind, lines = [], None, []

    def flush():
        text = "\n".join(lines).strip("\n")
        if kind is not None and text:
            v4 = nbformat.v4
            make = v4.new_markdown_cell if kind == "markdown" else v4.new_code_cell
            cells.append(make(text))

    for line in source.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    flush()
    return cells


def build(source):
    nb = nbformat.v4.new_notebook(cells=parse(source), metadata=KERNEL)
    for k, cell in enumerate(nb.cells):
        cell.id = f"cell-{k:02d}"  # stable ids: rebuilding an unchanged notebook changes nothing
    return nb


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="report notebooks that differ from this file instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name, source in SOURCES.items():
        path = NOTEBOOKS / name
        text = nbformat.writes(build(source)) + "\n"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print("out of date (run python docs/make_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
