"""Write notebooks 00, 01, 02, 04, 05 and 06 of the course from the cell texts below.

Run from the repository root::

    python docs/make_notebooks.py           # rewrite the six notebooks
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

NB00 = r'''
# %% [markdown]
# 00 · Overview: a class for every pixel

An image classifier answers one question per image: *what is in it?* Semantic segmentation
answers it for every pixel: *which class does this pixel belong to?* The answer is a label
map, the image's height and width, one class index per pixel.

FCN (Long, Shelhamer and Darrell, *Fully Convolutional Networks for Semantic Segmentation*,
CVPR 2015) gets there from a classifier in four steps, and minifcn writes every one of them
by hand in NumPy. This notebook is the tour:

1. the task, on a synthetic image and its label map;
2. the FCN idea in four steps (classifier, fully convolutional, upsample, skips), each shown
   with a few lines of the package;
3. the narrow FCN-8s shipped inside the package segmenting an image it has never seen;
4. its scores on 50 held-out images;
5. where the rest of the series and the documentation take each step apart.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

from matplotlib.patches import Patch

from minifcn.data import SYNTHETIC_CLASSES, SyntheticShapes, colorize, voc_colormap
from minifcn.metrics import ConfusionMatrix, format_scores
from minifcn.models import coordinate_maps, crop_offsets, network_specs
from minifcn.models.describe import blob_rows
from minifcn.npzio import load_npz
from minifcn.ops import conv2d_forward, conv_output_size
from minifcn.preprocess import preprocess
from minifcn.train import evaluate, segment_batch
from minifcn.train.demo import TEST_SEED, load_shipped, shipped_checkpoint
from minifcn.viz import bilinear_upsample
from minifcn.viz.concept_figures import fcn8s_sizes_figure

np.set_printoptions(precision=4, suppress=True, linewidth=110)
figures = Path(tempfile.mkdtemp())  # the pictures are drawn here, never into the repository


def show(fig, name):
    fig.savefig(figures / name, dpi=80, bbox_inches="tight")
    plt.close(fig)
    display(Image(filename=figures / name))

# %% [markdown]
## 1 · The task: a label for every pixel

minifcn's built-in data set draws circles, squares, triangles and rings in random colours on
cluttered backgrounds (`minifcn.data.synthetic`): nothing to download, and colour tells the
network nothing, so it has to learn shape. Five classes, plus the void label 255 on a thin
band around every object, as in PASCAL VOC: pixels there count neither in the loss nor in
the scores. `colorize` paints a label map with the VOC colours (void in cream).

These 50 images come from a seed that no training run uses. Image 2 holds a circle, a square
and a ring:

# %%
test = SyntheticShapes(50, 96, seed=TEST_SEED)
image, label = test[2]
print("image", image.shape, image.dtype, "  label map", label.shape, label.dtype)
names = {**dict(enumerate(SYNTHETIC_CLASSES)), 255: "void"}
for value, count in zip(*np.unique(label, return_counts=True)):
    print(f"  label {value:3d} {names[value]:<11s}{count:5d} pixels")
assert label.shape == image.shape[:2]
assert set(np.unique(label)) <= {0, 1, 2, 3, 4, 255}

colours = voc_colormap() / 255
fig, axes = plt.subplots(1, 2, figsize=(5, 2.6))
axes[0].imshow(image)
axes[1].imshow(colorize(label), interpolation="nearest")
for ax, title in zip(axes, ["image (96 x 96 x 3)", "label map (96 x 96)"]):
    ax.set(title=title, xticks=[], yticks=[])
fig.legend(handles=[Patch(color=colours[v], label=f"{v} {n}") for v, n in names.items()],
           loc="center right", bbox_to_anchor=(1.22, 0.5), fontsize=8)
show(fig, "task.png")

# %% [markdown]
The label map is just numbers. Around the first void pixel:

# %%
r, c = np.argwhere(label == 255)[0]
print(label[max(r - 3, 0):r + 5, max(c - 4, 0):c + 6])

# %% [markdown]
## 2 · The FCN idea in four steps

### Step 1 · A classifier: one answer per image, one input size

VGG16, the classifier FCN starts from, runs thirteen 3x3 convolutions (padding 1: they keep
the size) and five 2x2 max-pools (each halves it). A 224x224 image leaves `pool5`, 512 maps of
7x7, and the fully connected `fc6` reads those 25,088 numbers through a `4096 x 25088` weight
matrix. Any other size gives another number of inputs, and the matrix does not fit:

# %%
def pool5_side(side):
    for _ in range(5):  # conv_output_size(size, kernel, stride, padding): a 2x2, stride-2 pool
        side = conv_output_size(side, 2, 2, 0, ceil_mode=True)
    return side


for side in (224, 256, 500):
    s = pool5_side(side)
    print(f"{side}x{side} image -> pool5 512 x {s} x {s} = {512 * s * s:,} numbers"
          + ("  (fc6 fits)" if 512 * s * s == 25_088 else "  (fc6 does not fit)"))
assert pool5_side(224) == 7

# %% [markdown]
### Step 2 · Fully convolutional: the classifier becomes a convolution

Reshape `fc6`'s weight to `(4096, 512, 7, 7)` and it is a 7x7 convolution. On a 7x7 `pool5` it
computes exactly the fully connected layer; on a bigger one it slides, and answers at every
position. With small numbers (3 channels, 4 outputs):

# %%
rng = np.random.default_rng(0)
w_fc = rng.standard_normal((4, 3 * 7 * 7))                    # an FC layer on a 3 x 7 x 7 map
feat = rng.standard_normal((1, 3, 9, 9))                      # a bigger map: 9 x 9
out = conv2d_forward(feat, w_fc.reshape(4, 3, 7, 7))[0]       # (1, 4, 3, 3): 3x3 answers
print("one answer per position:", out.shape)
for i in range(3):
    for j in range(3):
        assert np.allclose(out[0, :, i, j], w_fc @ feat[0, :, i:i + 7, j:j + 7].ravel())

# %% [markdown]
Convolutionalize `fc6` and `fc7` (a 1x1 convolution), add a 1x1 scorer (`score_fr`, one map per
class) and the network takes any input and returns a *map* of class scores. A coarse one: for
a 500x500 image, 16x16 scores, spaced 32 pixels apart (the coordinate map `32*x + ...` says
where each one sits in the image). The reference pads `conv1_1` by 100 pixels (notebook 05
explains why), so here `pool5` is 22x22 rather than the 16x16 of Step 1, and `fc6`'s 7x7
window answers at 16x16 positions. `blob_rows` is the table of `minifcn describe` (a *blob*
is Caffe's word, kept by FCN, for the array a layer outputs):

# %%
rows32 = {r["name"]: r for r in blob_rows("fcn32s", 500, 500)}
for name in ("data", "pool5", "fc6", "fc7", "score_fr"):
    r = rows32[name]
    print(f"{name:10s}{str(r['shape']):>18s}   x_in = {r['map']}")
assert rows32["score_fr"]["shape"] == (21, 16, 16)
assert coordinate_maps(network_specs("fcn32s"))["score_fr"].scale == 32

# %% [markdown]
### Step 3 · Upsample: the transposed convolution

A transposed convolution with stride `s` turns each input pixel into a `k x k` patch, `s`
pixels apart: the map grows `s` times. FCN initialises it to bilinear interpolation. On a
ramp (each row `0, 1, 2, 3`), upsampling by 2 (kernel 4, stride 2, padding 1) puts two new
pixels between each pair of old ones, a quarter and three quarters of the way along:
`0.25, 0.75, ..., 2.75`, except at the border, which has only one neighbour and fades:

# %%
ramp = np.tile(np.arange(4.0), (1, 4, 1))          # (C, H, W) = (1, 4, 4)
up = bilinear_upsample(ramp, 2)                    # (1, 8, 8)
print(up[0])
assert np.allclose(up[0, 1:7, 1:7], np.arange(0.25, 3.0, 0.5))

# %% [markdown]
FCN-32s upsamples `score_fr` 32 times in one step (kernel 64, stride 32), to 544x544 for a
500x500 image, and crops the image's 500x500 out of it. The crop starts at 19, an offset
derived from the layers' coordinate maps (notebook 05):

# %%
print("upscore", rows32["upscore"]["shape"], "-> score", rows32["score"]["shape"],
      "cropped at", crop_offsets(network_specs("fcn32s"))["score"])
assert rows32["upscore"]["shape"][1:] == ((16 - 1) * 32 + 64,) * 2

# %% [markdown]
### Step 4 · Skips: finer layers add detail

One 32x step can only paint blobs: every score covers a 32-pixel cell. FCN-16s adds scores
computed from `pool4` (a 16-pixel grid) to the 2x-upsampled coarse scores; FCN-8s does it
again with `pool3` (8 pixels) before the final 8x upsampling. Each added map is cropped so that
its pixels line up with the other's: at 5 and 9, and the output at 31. Every blob of FCN-8s at
500x500:

# %%
display(Image(filename=fcn8s_sizes_figure(figures / "sizes.png")))

# %% [markdown]
The head of the network, coarse to fine (channels x height x width, the grid spacing in input
pixels, and the crop offsets):

# %%
rows8 = {r["name"]: r for r in blob_rows("fcn8s", 500, 500)}
for name in ("score_fr", "upscore2", "score_pool4", "score_pool4c", "upscore_pool4",
             "score_pool3", "score_pool3c", "upscore8", "score"):
    r = rows8[name]
    offset = "" if r["offset"] is None else f"crop at {r['offset']}"
    print(f"{name:14s}{str(r['shape']):>16s}   every {float(r['map'].scale):g} px   {offset}")
assert crop_offsets(network_specs("fcn8s")) == {"score_pool4c": 5, "score_pool3c": 9, "score": 31}

# %% [markdown]
## 3 · A trained FCN-8s segments an image

The package ships a narrow FCN-8s (every channel count divided by 16, `conv1_1` padding 69),
trained from scratch on synthetic shapes by `minifcn train --preset shipped`. Its file
records the network and how it was trained:

# %%
model = load_shipped()
arrays, meta = load_npz(shipped_checkpoint())
trained = meta.get("trained", {})
print(model, f"{model.num_parameters():,} parameters")
print("trained for", trained.get("iterations"), "iterations;",
      {k: trained.get("config", {}).get(k) for k in ("batch_size", "image_size", "lr", "schedule")})

# %% [markdown]
`model.predict(image)` is three steps: preprocess (the convention stored with the weights),
forward, and the class with the highest score at each pixel:

# %%
prediction = model.predict(image)                  # (96, 96) int64
x = preprocess(image, model.preprocessing)         # (1, 3, 96, 96) float32
scores = model.eval()(x)                           # (1, 5, 96, 96)
assert np.array_equal(scores.argmax(axis=1)[0], prediction)
print("scores", scores.shape, "-> prediction", prediction.shape,
      "classes", np.unique(prediction).tolist())

# %% [markdown]
Four held-out images, their ground truth and the predictions:

# %%
samples = [test[i] for i in range(4)]
predictions = segment_batch(model, np.stack([s[0] for s in samples]))   # (4, 96, 96)
fig, axes = plt.subplots(3, 4, figsize=(8, 6.2))
for k, ((img, lab), pred) in enumerate(zip(samples, predictions)):
    valid = lab != 255
    accuracy = (pred[valid] == lab[valid]).mean()
    for row, (picture, title) in enumerate([(img, f"image {k}"), (colorize(lab), "ground truth"),
                                            (colorize(pred), f"prediction ({accuracy:.0%})")]):
        axes[row, k].imshow(picture, interpolation="nearest")
        axes[row, k].set(title=title, xticks=[], yticks=[])
show(fig, "predictions.png")

# %% [markdown]
## 4 · Scored on 50 held-out images

`evaluate` accumulates one confusion matrix over all 50 images (void pixels left out) and
derives the paper's four scores: pixel accuracy, mean accuracy over classes, mean IU
(intersection over union, averaged over classes) and frequency-weighted IU. Notebook 04 works
them out by hand. (The README's table scores the same checkpoint on the 100 images of
`minifcn demo`, so its figures differ a little from these.)

# %%
results = evaluate(model, test)
print(format_scores(results, SYNTHETIC_CLASSES))

# %% [markdown]
Pixel accuracy is the simplest of the four; counted directly from the predictions it agrees:

# %%
correct = valid = 0
for start in range(0, len(test), 10):
    batch = [test[i] for i in range(start, start + 10)]
    labels = np.stack([lab for _, lab in batch])
    preds = segment_batch(model, np.stack([img for img, _ in batch]))
    correct += int(((preds == labels) & (labels != 255)).sum())
    valid += int((labels != 255).sum())
print(f"{correct} of {valid} labelled pixels right: {correct / valid:.4f}")
assert np.isclose(correct / valid, results["pixel_accuracy"])

# %% [markdown]
Mean IU is the number the paper reports, because pixel accuracy flatters: most pixels are
background. A "network" that answers background everywhere scores well on pixel accuracy and
badly on mean IU:

# %%
lazy = ConfusionMatrix(5)
for i in range(len(test)):
    lab = test[i][1]
    lazy.update(lab, np.zeros_like(lab))
lazy_scores = lazy.scores()
print(f"background everywhere: pixel accuracy {lazy_scores['pixel_accuracy']:.3f}, "
      f"mean IU {lazy_scores['mean_iu']:.3f}")
print(f"the shipped FCN-8s:    pixel accuracy {results['pixel_accuracy']:.3f}, "
      f"mean IU {results['mean_iu']:.3f}")

# %% [markdown]
## 5 · The rest of the series

Each step above has a notebook that builds it from loops, checks it on numbers small enough
to work by hand, and checks its gradient numerically:

| notebook | what it builds |
|---|---|
| `01_im2col_and_convolution` | convolution as loops, im2col, one matrix product; the backward pass |
| `02_pooling_and_1x1_convolution` | max-pooling with ceil rounding, 1x1 convolution, convolutionalization (step 2) |
| `03_transposed_convolution` | the transposed convolution as `C^T`, zero insertion, bilinear upsampling (step 3) |
| `04_softmax_cross_entropy_and_metrics` | the per-pixel loss, the void label, sum or mean, the four scores |
| `05_fcn8s` | the whole network: shapes, coordinate maps, crop offsets 5, 9, 31, padding 100 (step 4) |
| `06_training` | one SGD step by hand, schedules, resuming bit for bit, the skip experiment |
| `07_vgg16_weights` | VGG16's weight files, layouts and preprocessing |

The documentation (`docs/`, built with Sphinx) explains the same ideas in prose: *Getting
started*, one page per op (convolution and im2col, max-pooling, 1x1 convolution and
convolutionalization, ReLU and dropout, transposed convolution, crop and skip connections,
softmax cross-entropy, segmentation metrics), *The FCN-8s model*, *Pretrained weights*,
*Training*, the measured skip experiment (`docs/experiments.md`), *Running on a GPU* and the
FAQ. From the command line, `minifcn demo` trains a
narrow FCN-8s for a few minutes and compares it with the shipped one.

## Summary

- Semantic segmentation gives every pixel a class: the output is a label map of the image's
  size (here 5 classes, 255 for void).
- FCN turns a classifier into a segmenter: its fully connected layers become convolutions, so
  it takes any size and returns a coarse map of scores (every 32 pixels); a transposed
  convolution upsamples the map; skips from `pool4` and `pool3` add finer detail; crops at
  offsets 5, 9 and 31 line the maps up.
- `model.predict(image)` is preprocess, forward, argmax over classes at every pixel.
- Segmentation is scored from one confusion matrix over the whole data set; mean IU is the
  headline, because pixel accuracy rewards answering background everywhere.

## Exercises

Each answer cell is filled in; the cell after it checks the answer against the package.

1. How many class labels does the shipped model return for a 96x80 image?

# %%
answer_1 = 96 * 80

# %%
assert model.predict(np.zeros((96, 80, 3), np.uint8)).size == answer_1

# %% [markdown]
2. FCN-16s' `score_pool4` scores sit on a grid how many input pixels apart?

# %%
answer_2 = 16

# %%
assert coordinate_maps(network_specs("fcn16s"))["score_pool4"].scale == answer_2

# %% [markdown]
3. The shipped model pads `conv1_1` by 69, not 100. What is the smallest square image it
   accepts? (`fc6`'s 7x7 window must fit in `pool5`.)

# %%
answer_3 = 57   # 57 + 2*69 - 2 = 193 -> pools 97, 49, 25, 13, 7; 56 would leave pool5 6x6

# %%
assert model.predict(np.zeros((answer_3, answer_3, 3), np.uint8)).shape == (answer_3, answer_3)
try:
    model.predict(np.zeros((answer_3 - 1, answer_3 - 1, 3), np.uint8))
    one_less_fits = True
except ValueError:
    one_less_fits = False
assert not one_less_fits

# %% [markdown]
4. What mean IU does "background everywhere" score on the 50 test images? (Its IU on
   background is the background's share of the labelled pixels; the four shape classes
   score 0.)

# %%
all_labels = np.stack([test[i][1] for i in range(len(test))])
answer_4 = (all_labels == 0).sum() / (all_labels != 255).sum() / 5

# %%
assert np.isclose(lazy_scores["mean_iu"], answer_4)
'''

NB01 = r'''
# %% [markdown]
# 01 · im2col and convolution

Thirteen of FCN-8s' layers are 3x3 convolutions, `fc6` is a 7x7 one and four more are 1x1.
All of them run through one function, `minifcn.ops.conv2d_forward`, which turns a convolution
into a single matrix product. This notebook builds that up:

1. the picture: a kernel sliding over an image;
2. the convolution written as loops (`conv2d_naive`), checked on numbers small enough to add
   up by hand;
3. *im2col*: every window of the image copied into one column of a matrix, drawn;
4. the convolution as one GEMM (GEneral Matrix-Matrix multiplication, the BLAS routine behind
   `@`), the op itself, checked against the loops and against PyTorch;
5. the backward pass (`col2im`, the adjoint of im2col) and a numerical gradient check;
6. what im2col costs in memory at FCN's sizes.

The examples use `SOBEL`, the 3x3 Sobel kernel that responds to vertical edges (imported from
`minifcn.viz.concept_figures`, which draws the figures).

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
### The op

`conv2d_forward` is exactly that, for batches, channels, a bias and any stride and padding,
square or not: `im2col`, one matrix product, the bias. It returns the output and a cache for
the backward pass (the columns, the weight and the geometry). Its whole body:

# %%
print(inspect.getsource(conv2d_forward))

# %% [markdown]
Checked against the loop on an odd geometry:

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
`conv2d_backward` is those three products and the `col2im`:

# %%
print(inspect.getsource(conv2d_backward))

# %% [markdown]
Against its loop twin, which sends each output pixel's gradient back to the window it read:

# %%
dout = rng.standard_normal(out.shape)
dx, dw, db = conv2d_backward(dout, cache)
slow = conv2d_backward_naive(dout, x, w, (2, 3), (2, 1))
for name, op_grad, loop_grad in zip(("dx", "dweight", "dbias"), (dx, dw, db), slow):
    assert np.allclose(op_grad, loop_grad), name
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
Kept all at once, as `conv2d_forward` keeps them in its cache for the backward, these columns
take about 3 GB per 500x500 image, on top of the activations. Nothing changes in the
arithmetic if the output is computed a band of rows at a time: each band's columns are
unfolded, multiplied and dropped, and the backward unfolds them again from the input. That
is what minifcn's engine does (`minifcn.engine`, the same functions made fast, tested equal
to these; `docs/performance.md`): a full-width forward and backward at 500x500 then peaks at
about 2.4 GB.

## Summary

- A convolution is a sum over each window; `conv2d_naive` says so in loops.
- `im2col` copies every window into a column (`kh*kw` strided slices); then the convolution
  is one matrix product `weight (C_out, C_in*kh*kw) @ cols`.
- Backward: `dweight = dout @ cols.T`, `dbias` = sum of `dout`, `dx = col2im(weight.T @ dout)`;
  `col2im` is the adjoint of `im2col`.
- The price is memory: the columns are up to `kh*kw` times the input (1.1 GB for `conv1_2`
  on a 500x500 image); minifcn's engine unfolds them one band of output rows at a time.

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

1. max-pooling forward and backward, drawn;
2. the same as loops, checked on the picture's numbers;
3. ceil against floor rounding, and why FCN rounds up;
4. the tie rule, and why gradient checks keep ties out;
5. the op, against the loops, PyTorch and numerical gradients;
6. a 1x1 convolution as the same fully connected layer applied at every pixel;
7. *convolutionalization*: a fully connected layer on a flattened 7x7 map is a 7x7 convolution.

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

## 5 · The op

`max_pool2d_forward` places the input on a `-inf` canvas large enough for every window (so
the padding and the ceil-mode overhang never win), then, as im2col does, takes one strided
slice per kernel offset (tap `(i, j)` of every window) and keeps a running maximum. The tap
that set each window's maximum is its *argmax*, kept in the cache; a strict `>` keeps the
earlier tap on a tie. The backward sends each window's gradient to its argmax, again one
strided slice per tap:

# %%
print(inspect.getsource(max_pool2d_forward))
print(inspect.getsource(max_pool2d_backward))

# %% [markdown]
Against the loops, on an odd geometry with padding and overlapping windows:

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

Each answer cell is filled in; the cell after it checks the answer against the package.
Change an answer to see the check fail.

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
4. checks the op against the loop and PyTorch;
5. compares the summed loss of the reference with a per-pixel mean, and what that does to
   the learning rate (1e-10 against about 2.5e-5);
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
## 4 · The op

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
        by_op = softmax_cross_entropy_forward(scores2, labels2, **options)[0]
        assert np.isclose(by_op, softmax_cross_entropy_naive(scores2, labels2, **options))
try:
    import torch
except ImportError:
    torch = None
    print("PyTorch is not installed: skipping this check")
if torch is not None:
    for reduction in ("mean", "sum"):
        ref = torch.nn.functional.cross_entropy(torch.tensor(scores2), torch.tensor(labels2),
                                                ignore_index=255, reduction=reduction)
        by_op = softmax_cross_entropy_forward(scores2, labels2, reduction=reduction)[0]
        print(f"{reduction}: minifcn {by_op:.6f}  torch {ref.item():.6f}")
        assert np.isclose(by_op, ref.item())

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

Each answer cell is filled in; the cell after it checks the answer against the package.
Change an answer to see the check fail.

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
instead of 31 for the output, and at other sizes it can be wrong for every crop (half
pixels even, as at 224x224):

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
cross-entropy, and the whole backward pass. The image is scaled as for every network trained
from scratch here (notebook 00's `preprocess` does the same): `(pixel/255 - 0.5) / 0.25`.

# %%
rng = np.random.default_rng(0)
image, label = make_sample(rng, 64, 64)                          # (64, 64, 3) uint8, (64, 64) uint8
x = ((image.astype(np.float32) / 255 - 0.5) / 0.25).transpose(2, 0, 1)[None]   # (1, 3, 64, 64)
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
class 0, background, everywhere until it has trained: question 4 of the FAQ,
`docs/faq.md`.)

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

Each answer cell is filled in; the cell after it checks the answer against the package.
Change an answer to see the check fail.

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

NB06 = r'''
# %% [markdown]
# 06 · Training: one SGD step by hand, schedules, resuming, and the skip experiment

Notebooks 01 to 05 built every forward and backward pass of FCN-8s. Training strings them
together: forward, per-pixel loss, backward, an SGD update with momentum, thousands of times.
`minifcn.train.Trainer` does that; this notebook takes it apart:

1. one iteration written out by hand, on a batch of synthetic shapes, checked on numbers
   known in advance and then against `Trainer.step`, bit for bit;
2. a check that the update goes downhill as fast as the gradient says;
3. the learning-rate schedules (fixed, step, poly, warm-up);
4. a summed loss against a per-pixel mean, and what that does to the learning rate;
5. a short training run and its curves;
6. resuming from a checkpoint, with the same parameters to the last bit as a run that never
   stopped;
7. the skip experiment (the paper's Figure 4) and its boundary band, with a live version
   far too small to settle anything.

Everything runs on the `quick` preset: a narrow FCN-8s (`width=1/32`) on batches of two 64x64
images, about a tenth of a second per iteration on an idle CPU.

# %%
import inspect
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

from minifcn.data.palette import colorize
from minifcn.data.synthetic import SYNTHETIC_CLASSES, SyntheticShapes, sample_batch
from minifcn.layers import Parameter
from minifcn.metrics import ConfusionMatrix
from minifcn.models import FCN8s
from minifcn.npzio import load_npz
from minifcn.ops import softmax_cross_entropy_backward, softmax_cross_entropy_forward
from minifcn.preprocess import preprocess
from minifcn.train import SGD, Trainer, TrainingDiverged, evaluate, learning_rate, preset
from minifcn.train import experiment
from minifcn.train.demo import TEST_SEED
from minifcn.train.trainer import model_for_config

np.set_printoptions(precision=4, suppress=True, linewidth=110)
figures = Path(tempfile.mkdtemp())  # pictures and training runs go here, never into the repo


def show(fig, name):
    fig.savefig(figures / name, dpi=80, bbox_inches="tight")
    plt.close(fig)
    display(Image(filename=figures / name))

# %% [markdown]
## 1 · The picture: one batch

The `quick` preset trains on fresh synthetic batches: batch `i` is drawn from
`default_rng([seed, i])`, so every run, and every resumed run, sees the same batches in the
same order. Batch 0, with its label maps (the cream band is void, label 255):

# %%
config = preset("quick")
print({k: getattr(config, k) for k in ("variant", "width", "pad", "image_size", "batch_size",
                                       "lr", "momentum", "weight_decay", "warmup", "reduction")})
images, labels = sample_batch(np.random.default_rng([config.seed, 0]), config.batch_size,
                              config.image_size)      # (2, 64, 64, 3) uint8, (2, 64, 64) uint8
fig, axes = plt.subplots(1, 4, figsize=(8, 2.2))
for n in range(config.batch_size):
    axes[2 * n].imshow(images[n])
    axes[2 * n + 1].imshow(colorize(labels[n]), interpolation="nearest")
for ax, title in zip(axes, ["image 0", "labels 0", "image 1", "labels 1"]):
    ax.set(title=title, xticks=[], yticks=[])
show(fig, "batch.png")

# %% [markdown]
## 2 · The loop: one iteration by hand

Five steps, each a call you have met:

1. preprocess: uint8 `(N, H, W, 3)` to float32 `(N, 3, H, W)`, here `(pixel/255 - 0.5) / 0.25`;
2. forward: `scores = model(x)`, `(N, 5, H, W)`;
3. loss: the mean per-pixel softmax cross-entropy, void pixels left out;
4. backward: `model.backward(dscores)` fills every `p.grad`;
5. update: SGD with momentum and weight decay.

The network is the one the trainer builds for this preset (`model_for_config`: He-normal trunk,
bilinear upsampling, scorers at zero), from the same seed.

# %%
model = model_for_config(config, num_classes=len(SYNTHETIC_CLASSES))
x = preprocess(images, model.preprocessing)            # (2, 3, 64, 64) float32
y = labels.astype(np.int64)                            # (2, 64, 64)
scores = model(x)                                      # (2, 5, 64, 64)
loss, cache = softmax_cross_entropy_forward(scores, y, reduction=config.reduction)
model.backward(softmax_cross_entropy_backward(1.0, cache))
print(f"x {x.shape}, range [{x.min():.2f}, {x.max():.2f}]; scores {scores.shape}; loss {loss:.6f}")

# %% [markdown]
### Checked on numbers known in advance

The score layers start at zero, so every score is 0, every class gets probability 1/5, and
the loss is exactly `log 5 = 1.609438`. For the same reason the first gradient reaches only
the score layers (the trunk's gradient passes through their zero weights), and the three
`upscore` layers have none at all: they are fixed bilinear interpolation.

# %%
assert np.isclose(loss, np.log(5))
for name, p in model.named_parameters():
    if p.grad is None:
        print(f"{name:22s} no gradient (fixed)")
    elif np.abs(p.grad).max() > 0:
        print(f"{name:22s} |g| max {np.abs(p.grad).max():.2e}")
moving = {n for n, p in model.named_parameters() if p.grad is not None and np.abs(p.grad).max() > 0}
still = [n for n, p in model.named_parameters() if p.grad is not None and n not in moving]
print(f"and {len(still)} trunk arrays ({still[0]} ... {still[-1]}) whose gradient is exactly 0")
assert moving <= {f"{s}.{k}" for s in ("score_fr", "score_pool4", "score_pool3")
                  for k in ("weight", "bias")}

# %% [markdown]
The update of `minifcn.train.optim.SGD`, Caffe's and PyTorch's form:

    v = momentum * v + (g + weight_decay * w)      # no weight decay on biases
    w = w - lr * v

On one number, by hand: `w = 1`, gradient `0.5` twice, `lr = 0.1`, momentum `0.9`, weight
decay `0.01`.

- step 1: `v = 0.5 + 0.01*1 = 0.51`, `w = 1 - 0.1*0.51 = 0.949`
- step 2: `v = 0.9*0.51 + (0.5 + 0.01*0.949) = 0.96849`, `w = 0.949 - 0.096849 = 0.852151`

# %%
w = Parameter(np.array([1.0]))
sgd = SGD([("toy.weight", w)], lr=0.1, momentum=0.9, weight_decay=0.01)
for expected in (0.949, 0.852151):
    w.grad = np.array([0.5])
    sgd.step()
    print(w.data, sgd.velocity["toy.weight"])
    assert np.isclose(w.data[0], expected)

# %% [markdown]
Now the same update written out for the network. The learning rate of iteration 0 is the
preset's 0.02 times the warm-up factor `1/5`:

# %%
lr = learning_rate(config.lr, 0, config.schedule, config.iterations, warmup=config.warmup)
print("lr at iteration 0:", lr)
assert np.isclose(lr, 0.02 / 5)
velocity = {}
for name, p in model.named_parameters():
    if not p.requires_grad:
        continue                                   # the bilinear upscore layers stay fixed
    g = p.grad if name.endswith(".bias") else p.grad + config.weight_decay * p.data
    velocity[name] = g.copy()                      # v starts at 0: 0 * momentum + g
    p.data -= np.float32(lr) * velocity[name]

# %% [markdown]
## 3 · The fast version: `Trainer.step`

`Trainer.step` is those five steps (plus fixing the dropout seeds of the iteration, and a
check for a NaN loss):

# %%
print(inspect.getsource(Trainer.step))

# %% [markdown]
A trainer on the same preset takes its first step; its parameters and momentum buffers agree
with the hand-written ones to the last bit:

# %%
trainer = Trainer(config, figures / "one-step", progress=False)
trainer.step()
for (name, mine), (_, theirs) in zip(model.named_parameters(), trainer.model.named_parameters()):
    assert np.array_equal(mine.data, theirs.data), name
for name, v in velocity.items():
    assert np.array_equal(v, trainer.optimizer.velocity[name]), name
print(f"{len(velocity)} parameter arrays and momentum buffers identical")

# %% [markdown]
### Gradient check: downhill at the rate the gradient predicts

To first order a step `w - eps * g` lowers the loss by `eps * |g|^2`, the sum of every
squared gradient entry. The ratio of the real decrease to that prediction goes to 1 as the
step shrinks; a wrong gradient anywhere would leave it elsewhere. In float64 (notebook 01
explains why), from the weights after the step above (the scorers are no longer zero, so the
whole trunk has a gradient), dropout off:

# %%
net64 = FCN8s(5, config.width, pad=config.pad, dropout=0.0, dtype=np.float64)
net64.load_state_dict({k: v.astype(np.float64) for k, v in model.state_dict().items()})
x64 = x.astype(np.float64)


def loss_and_grads(net):
    loss, cache = softmax_cross_entropy_forward(net(x64), y)
    net.backward(softmax_cross_entropy_backward(1.0, cache))
    return loss, {n: p.grad.copy() for n, p in net.named_parameters() if p.requires_grad}


loss0, grads = loss_and_grads(net64)
start = {n: p.data.copy() for n, p in net64.named_parameters()}
g_squared = sum(float((g * g).sum()) for g in grads.values())
print(f"loss {loss0:.6f}, |g|^2 = {g_squared:.4e}")
ratios = []
for eps in (1.0, 0.1, 0.01, 0.001, 0.0001):
    for n, p in net64.named_parameters():
        p.data = start[n] - eps * grads[n] if n in grads else start[n]
    loss1 = softmax_cross_entropy_forward(net64(x64), y)[0]
    ratios.append((loss0 - loss1) / (eps * g_squared))
    print(f"eps {eps:6g}: decrease {loss0 - loss1:.4e}, predicted {eps * g_squared:.4e}, "
          f"ratio {ratios[-1]:.6f}")
assert abs(ratios[-1] - 1) < 1e-3

# %% [markdown]
## 4 · Learning-rate schedules

`learning_rate(base_lr, iteration, schedule, ...)` gives the rate of every iteration:

- `fixed`: `base_lr`;
- `step`: `base_lr * gamma ** (iteration // step_size)`, divided by 10 every `step_size`;
- `poly`: `base_lr * (1 - iteration / max_iter) ** 0.9`, down to 0 at the end (the shipped
  checkpoint's schedule);
- a linear warm-up over the first `warmup` iterations multiplies any of them: iteration `i`
  gets `(i + 1) / warmup` of the rate, so the first big gradients of a random network do not
  throw it far.

# %%
iterations = np.arange(1000)
schedules = {
    "fixed": [learning_rate(0.05, i, "fixed", warmup=50) for i in iterations],
    "step (step_size 300)": [learning_rate(0.05, i, "step", step_size=300, warmup=50)
                             for i in iterations],
    "poly (max_iter 1000)": [learning_rate(0.05, i, "poly", 1000, warmup=50) for i in iterations],
}
fig, ax = plt.subplots(figsize=(6.5, 3))
for name, rates in schedules.items():
    ax.plot(iterations, rates, label=name)
ax.set(xlabel="iteration", ylabel="learning rate", title="base 0.05, 50 warm-up iterations")
ax.legend(loc="center right")
show(fig, "schedules.png")

# %% [markdown]
Read off the curves, and checked:

# %%
print("warm-up, iteration 0:  ", learning_rate(0.05, 0, "fixed", warmup=50))
print("step, iteration 650:   ", learning_rate(0.05, 650, "step", step_size=300))
print("poly, iteration 500:   ", learning_rate(0.05, 500, "poly", 1000))
assert np.isclose(learning_rate(0.05, 0, "fixed", warmup=50), 0.05 / 50)
assert np.isclose(learning_rate(0.05, 650, "step", step_size=300), 0.05 * 0.1 ** 2)
assert np.isclose(learning_rate(0.05, 500, "poly", 1000), 0.05 * 0.5 ** 0.9)
assert learning_rate(0.05, 1000, "poly", 1000) == 0

# %% [markdown]
## 5 · Sum or mean, and the learning rate

The reference sums the loss over the pixels of its one image per batch; minifcn's presets take
the mean over the valid pixels. The summed gradient is `n_valid` times the mean one, so the
learning rate must be `n_valid` times smaller for the same step. On this batch:

# %%
n_valid = int((y != 255).sum())
loss_sum, cache_sum = softmax_cross_entropy_forward(scores, y, reduction="sum")
g_sum = softmax_cross_entropy_backward(1.0, cache_sum)
g_mean = softmax_cross_entropy_backward(1.0, cache)
print(f"{n_valid} valid pixels of {y.size}; loss sum {loss_sum:.1f} = mean {loss:.4f} x {n_valid}")
print(f"lr {config.lr} on the mean takes the step of lr {config.lr / n_valid:.3e} on the sum")
assert np.isclose(loss_sum, loss * n_valid, rtol=1e-5)
assert np.allclose(g_sum, g_mean * n_valid, rtol=1e-4, atol=1e-6)

# %% [markdown]
The same rule gives the reference's tiny rates: 1e-10 on a summed 500x500 image is about
2.5e-5 on a mean. (Weight decay does not scale with it: `weight_decay * w` is added to the
gradient, so under a summed loss it is 250,000 times weaker relative to the data term.)

Use the mean-loss rate with a summed loss and the steps are thousands of times too large. The
trainer stops at the first NaN or infinite loss, says where, and suggests the fix:

# %%
diverged = False
try:
    with np.errstate(over="ignore", invalid="ignore"):   # the overflow is the point here
        Trainer(config.replace(reduction="sum", warmup=0, iterations=20, val_every=0),
                figures / "diverges", progress=False).run()
except TrainingDiverged as exc:
    print("TrainingDiverged:", exc)
    diverged = True
assert diverged

# %% [markdown]
## 6 · A short run and its curves

`Trainer.run` repeats the step, logs every iteration to `log.csv`, validates every `val_every`
iterations on held-out images (their own seed, never a training batch), checkpoints, and at
the end writes `model.npz`, `summary.json` and `curves.png`. Twelve iterations of the `quick`
preset, validated every four, with dropout switched on (0.5, the reference's value), so that
the resume test of section 7 has to reproduce the dropout masks too:

# %%
run_config = config.replace(iterations=12, val_every=4, checkpoint_every=4, dropout=0.5)
straight = Trainer(run_config, figures / "straight", progress=False)
summary = straight.run()
print(summary["stopped_by"], summary["iterations"], "iterations in", summary["seconds"], "s")
print((figures / "straight" / "log.csv").read_text())
display(Image(filename=figures / "straight" / "curves.png"))

# %% [markdown]
The loss falls from `log 5` as the scorers learn the class frequencies: most pixels are
background, so the first thing any segmentation net learns is to say "background" everywhere.
That is a trap worth recognising: predicting background everywhere scores a high pixel
accuracy and a mean IU of exactly the background's pixel share divided by 5 (its IU is its
share, the four shape classes score 0). On the validation set:

# %%
validation = straight.source.validation
all_background = ConfusionMatrix(5)
for i in range(len(validation)):
    _, label = validation[i]
    all_background.update(label, np.zeros_like(label))
s = all_background.scores()
print(f"all background: pixel accuracy {s['pixel_accuracy']:.4f}, mean IU {s['mean_iu']:.4f}")
assert np.isclose(s["mean_iu"], s["pixel_accuracy"] / 5)
print("the run:        pixel accuracy {pixel_accuracy:.4f}, mean IU {mean_iu:.4f}".format(
    **summary["validation"]))

# %% [markdown]
The loss of a single batch is noisy: a batch with more shape pixels (a lower training pixel
accuracy in the log) costs such a net more, which is why the progress bar of `minifcn train`
shows a smoothed loss. Leaving the plateau takes hundreds of iterations; the `demo` and
`shipped` presets (`docs/training.md`) start their scorers at small random values
(`score_init_std=0.05`) to leave it sooner.

## 7 · Resuming, bit for bit

A checkpoint holds the parameters, the momentum buffers and the iteration count, with every
setting in its metadata:

# %%
arrays, meta = load_npz(figures / "straight" / "checkpoint.npz")
print("iteration", meta["iteration"])
print(sorted(arrays)[:3], "...", sorted(arrays)[-3:])
print(sum(k.startswith("model.") for k in arrays), "model arrays,",
      sum(k.startswith("momentum.") for k in arrays), "momentum buffers")

# %% [markdown]
Batch `i` depends only on `(seed, i)` and the dropout masks of iteration `i` only on
`(seed, i, layer)`, so training 6 iterations, stopping, and resuming to 12 must give exactly
the run above. Not close: equal.

# %%
first = Trainer(run_config.replace(iterations=6), figures / "resumed", progress=False)
first.run()
resumed = Trainer.resume(figures / "resumed", progress=False, iterations=12)
print("resumed at iteration", resumed.iteration)
resumed.run()
for (name, a), (_, b) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
    assert np.array_equal(a.data, b.data), name
for name, v in straight.optimizer.velocity.items():
    assert np.array_equal(v, resumed.optimizer.velocity[name]), name
log_a = (figures / "straight" / "log.csv").read_text().splitlines()
log_b = (figures / "resumed" / "log.csv").read_text().splitlines()
assert [r.split(",")[:4] for r in log_a] == [r.split(",")[:4] for r in log_b]
print("parameters, momentum buffers and logged losses identical")

# %% [markdown]
(The log columns compared are iteration, loss, pixel accuracy and learning rate; the wall
time differs, of course.) From the command line: `minifcn train --resume --out RUN
--iterations N`; Ctrl-C finishes the iteration, saves a checkpoint and stops.

## 8 · Do skips help? The paper's Figure 4

FCN-32s upsamples its 1/32-resolution scores in one step, so its predictions are coarse blobs.
FCN-16s adds scored `pool4` (1/16) before upsampling, FCN-8s adds `pool3` (1/8) too. The
paper's Figure 4 shows the outlines sharpening from 32s to 16s to 8s, and its Table 2 the mean
IU rising (59.4, 62.4 and 62.7 on PASCAL VOC 2011 validation images).

`minifcn.train.experiment` reruns that comparison on synthetic shapes: the three variants at
one width, one `conv1_1` padding (81, the smallest FCN-32s allows), one seed, one budget of
iterations (not minutes, so a busy machine cannot favour a faster variant):

# %%
print(inspect.getsource(experiment.run))

# %% [markdown]
Mean IU hides where the variants differ: most pixels lie inside objects or in the background,
far from any edge, where even blobs are right. So the experiment also scores pixel accuracy in
a *trimap band*: the pixels within `width` of a change of class (`boundary_band`).

On numbers you can count: a 4x8 map, class 0 on the left half, 1 on the right. The change
lies between columns 3 and 4, so the band of width `w` covers columns `3 - w` to `4 + w`,
`4 * (2 + 2w)` pixels:

# %%
halves = np.zeros((4, 8), np.uint8)
halves[:, 4:] = 1
print(experiment.boundary_band(halves, width=1).astype(int))
for width in range(4):
    assert experiment.boundary_band(halves, width).sum() == 4 * (2 + 2 * width)

# %% [markdown]
On a test image (void pixels, which already sit on the boundaries, are left out of the band):

# %%
test = SyntheticShapes(10, config.image_size, seed=TEST_SEED)
image, label = test[1]
band = experiment.boundary_band(label, width=3)
fig, axes = plt.subplots(1, 3, figsize=(7, 2.5))
axes[0].imshow(image)
axes[1].imshow(colorize(label), interpolation="nearest")
axes[2].imshow(image // 3)
axes[2].imshow(np.ma.masked_where(~band, band), cmap="autumn", alpha=0.9, interpolation="nearest")
for ax, title in zip(axes, ["image", "labels", "band, width 3"]):
    ax.set(title=title, xticks=[], yticks=[])
show(fig, "band.png")
print(f"{band.sum()} of {label.size} pixels in the band ({band.mean():.0%})")
assert not band[label == 255].any()

# %% [markdown]
### A live version, far too small to show anything

The measured comparison trains each variant at width 1/16 for 3,000 iterations (the default)
and takes a while; its table is in `docs/experiments.md`. Here the same procedure runs on the
`quick` preset's small images and narrow net, 20 iterations per variant and 10 test images, so
that the notebook stays fast. After 20 iterations every variant is still on the background
plateau (compare the last row): **these numbers say nothing about skips**. They show the
procedure, not the result.

# %%
mini = {}
for variant in experiment.VARIANTS:
    cfg = config.replace(variant=variant, pad=experiment.PAD, iterations=20, val_every=0,
                         checkpoint_every=0)
    t = Trainer(cfg, figures / "skips" / variant, progress=False)
    t.run()
    mini[variant] = evaluate(t.model, test)
    mini[variant]["boundary_accuracy"] = experiment.boundary_accuracy(t.model, test)
background, band_right, band_total = ConfusionMatrix(5), 0, 0   # answering 0 everywhere
for i in range(len(test)):
    lab = test[i][1]
    background.update(lab, np.zeros_like(lab))
    band = experiment.boundary_band(lab)
    band_right, band_total = band_right + int((lab[band] == 0).sum()), band_total + int(band.sum())
mini["all background"] = dict(background.scores(), boundary_accuracy=band_right / band_total)
print(f"{'variant':<16}{'mean IU':>9}{'pixel acc.':>11}{'boundary acc.':>14}")
for variant, r in mini.items():
    print(f"{variant:<16}{r['mean_iu']:>9.3f}{r['pixel_accuracy']:>11.3f}"
          f"{r['boundary_accuracy']:>14.3f}")

# %% [markdown]
The real run: `python -m minifcn.train.experiment --iterations 2000 --out runs/skips`. At
2,000 iterations each it measured mean IU 17.3 % (FCN-32s), 60.9 % (FCN-16s) and 70.6 %
(FCN-8s), boundary accuracy 52 -> 68 -> 78 % (`docs/experiments.md`).

## Summary

- One iteration: preprocess, forward, mean per-pixel cross-entropy (void left out), backward,
  then `v = momentum * v + g + weight_decay * w` (weights only) and `w -= lr * v`.
  `Trainer.step` is exactly that, to the bit.
- With its scorers at zero (the reference's start) a fresh FCN scores 0 everywhere: its first
  loss is `log(num_classes)`, and only the scorers get a gradient.
- The learning rate follows a schedule (fixed, step, poly) times a linear warm-up.
- A summed loss needs a learning rate `n_valid` times smaller than a mean loss; mixing them
  diverges, and the trainer stops at the first NaN.
- Batches and dropout masks depend only on `(seed, iteration)`, and checkpoints hold the
  momentum: a resumed run equals the uninterrupted one bit for bit.
- Predicting background everywhere gives a high pixel accuracy and a mean IU of
  `background share / num_classes`: the plateau every run starts on.
- Skips are judged by mean IU and by accuracy in a boundary band; the measured table is in
  `docs/experiments.md`.

## Exercises

Each answer cell is filled in; the cell after it checks the answer against the package.

1. What learning rate does the `shipped` preset use at iteration 0 (base 0.05, 50 warm-up
   iterations, poly over 30,000)?

# %%
answer_1 = 0.05 / 50   # poly: (1 - 0/30000)^0.9 = 1; warm-up: (0 + 1)/50

# %%
shipped = preset("shipped")
assert np.isclose(learning_rate(shipped.lr, 0, shipped.schedule, shipped.iterations,
                                warmup=shipped.warmup), answer_1)

# %% [markdown]
2. A parameter `w = 2` with a constant gradient 1, learning rate 0.1, momentum 0.5 and no
   weight decay: what is `w` after three SGD steps?

# %%
answer_2 = 2 - 0.1 * 1 - 0.1 * 1.5 - 0.1 * 1.75   # v = 1, 1.5, 1.75

# %%
w2 = Parameter(np.array([2.0]))
sgd2 = SGD([("w.weight", w2)], lr=0.1, momentum=0.5, weight_decay=0.0)
for _ in range(3):
    w2.grad = np.array([1.0])
    sgd2.step()
assert np.isclose(w2.data[0], answer_2)

# %% [markdown]
3. A batch of four 96x96 images without void pixels is trained with a summed loss. Which
   learning rate takes the same step as 0.05 on the mean loss?

# %%
answer_3 = 0.05 / (4 * 96 * 96)

# %%
s3 = np.random.default_rng(3).standard_normal((4, 5, 96, 96))
y3 = np.random.default_rng(4).integers(0, 5, (4, 96, 96))
_, cache3_sum = softmax_cross_entropy_forward(s3, y3, reduction="sum")
_, cache3_mean = softmax_cross_entropy_forward(s3, y3)
assert np.allclose(answer_3 * softmax_cross_entropy_backward(1.0, cache3_sum),
                   0.05 * softmax_cross_entropy_backward(1.0, cache3_mean), rtol=1e-6, atol=0), \
    f"answer_3 = {answer_3:g} does not take the same step"

# %% [markdown]
4. How many pixels of the 4x8 `halves` map are in the band of width 2?

# %%
answer_4 = 4 * 6   # columns 1 to 6

# %%
assert experiment.boundary_band(halves, width=2).sum() == answer_4
'''

SOURCES = {
    "00_overview.ipynb": NB00,
    "01_im2col_and_convolution.ipynb": NB01,
    "02_pooling_and_1x1_convolution.ipynb": NB02,
    "04_softmax_cross_entropy_and_metrics.ipynb": NB04,
    "05_fcn8s.ipynb": NB05,
    "06_training.ipynb": NB06,
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
