"""The shipped photograph (:func:`minifcn.data.sample_photo`) through the networks: notebook 00.

- :func:`trunk_features`: a model's activations at the end of each VGG16 block, over the photo.
- :func:`features_figure`: a few channels of each block, side by side.
- :func:`upsampling_figure`: the photo made 8 times coarser, then brought back by nearest
  neighbour and by FCN's bilinear transposed convolution.
- :func:`released_weights`, :func:`segmentation_figure`: the released FCN-8s (when
  ``minifcn download fcn8s-heavy-pascal`` has been run) segmenting the photo.

Like the other viz modules, nothing here uses pyplot: each function returns a
:class:`matplotlib.figure.Figure` for the caller to save or show.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..backend import to_host
from ..data.palette import colorize, overlay, voc_colormap
from ..models.coords import coordinate_maps
from ..preprocess import preprocess, scratch_preprocessing
from ..weights.download import local_paths
from .conv_figures import bilinear_upsample

__all__ = ["BLOCK_ENDS", "block_mean", "features_figure", "released_weights",
           "segmentation_figure", "trunk_features", "upsampling_figure"]

# the last ReLU of each VGG16 block: what the block hands to its pool
BLOCK_ENDS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")


def _image_rows(coord_map, size):
    """The slice of a blob's rows (or columns) whose centres lie over the image's ``size``
    pixels: ``0 <= scale*x + shift <= size - 1``."""
    first = math.ceil(-coord_map.shift / coord_map.scale)
    last = math.floor((size - 1 - coord_map.shift) / coord_map.scale)
    return slice(max(first, 0), last + 1)


def trunk_features(model, image, names=BLOCK_ENDS):
    """Run ``model``'s trunk on one image and keep the blobs ``names``, cropped to the image.

    conv1_1's padding puts a frame of padding around the image in every blob of the trunk;
    each blob's coordinate map (:func:`minifcn.models.coords.coordinate_maps`) says which of
    its pixels sit over the image, and only those are kept.

    Parameters
    ----------
    model : FCN
        Its ``preprocessing`` (or the scratch one) turns the pixels into its input.
    image : uint8 array, shape (H, W, 3)
    names : sequence of str
        Trunk blobs to keep (default: the end of each block, :data:`BLOCK_ENDS`).

    Returns
    -------
    dict of str -> float array, shape (C, h, w)
        On the host, in ``names`` order; ``h, w`` about ``H / stride, W / stride``.
    """
    missing = [n for n in names if n not in model.trunk_names]
    if missing:
        raise ValueError(f"trunk_features: {missing} are not trunk blobs of {model}; "
                         f"expected names from {model.trunk_names}")
    spec = model.preprocessing or scratch_preprocessing()
    x = preprocess(image, spec, xp=model.xp).astype(model.dtype, copy=False)  # (1, 3, H, W)
    maps = coordinate_maps(model.specs)
    kept = {}
    was_training = model.training
    try:
        with model.eval().inference():  # no backward follows: keep no caches
            for name in model.trunk_names[:max(model.trunk_names.index(n) for n in names) + 1]:
                x = model.layers[name](x)
                if name in names:
                    rows = _image_rows(maps[name], image.shape[0])
                    cols = _image_rows(maps[name], image.shape[1])
                    kept[name] = to_host(x[0, :, rows, cols]).copy()  # (C, h, w); ReLUs work in place
    finally:
        model.train(was_training)
    return {name: kept[name] for name in names}


def features_figure(features, channels=4):
    """The ``channels`` most active channels of each blob, one row per blob.

    Parameters
    ----------
    features : dict of str -> array (C, h, w)
        As :func:`trunk_features` returns.
    channels : int
        Channels shown per blob: those with the largest mean activation (a ReLU output
        that is zero everywhere shows nothing), each scaled to its own range.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=(1.9 * channels + 0.6, 2.1 * len(features)))
    axes = fig.subplots(len(features), channels, squeeze=False)
    for row, (name, blob) in zip(axes, features.items()):
        strongest = np.argsort(-blob.mean(axis=(1, 2)), kind="stable")[:channels]
        for ax, channel in zip(row, strongest):
            ax.imshow(blob[channel], cmap="magma")
            dead = " (all 0)" if not blob[channel].any() else ""  # a ReLU that never fires here
            ax.set_title(f"{name} ch {channel}{dead}", fontsize=8)
            ax.set(xticks=[], yticks=[])
        for ax in row[len(strongest):]:
            ax.axis("off")
        row[0].set_ylabel(f"{blob.shape[0]} x {blob.shape[1]} x {blob.shape[2]}", fontsize=8)
    fig.subplots_adjust(left=0.06, right=0.99, top=0.95, bottom=0.01, hspace=0.3, wspace=0.05)
    return fig


def block_mean(image, factor):
    """Average ``factor x factor`` blocks of an (H, W, 3) image (rows and columns past the last
    whole block are dropped): a map ``factor`` times coarser, as a strided network sees it.

    Returns
    -------
    float array, shape (H // factor, W // factor, 3), in the image's units
    """
    h, w = image.shape[0] // factor, image.shape[1] // factor
    blocks = image[:h * factor, :w * factor].reshape(h, factor, w, factor, -1)  # (h, f, w, f, 3)
    return blocks.astype(np.float64).mean(axis=(1, 3))


def upsampling_figure(image, factor=8):
    """The image beside its ``factor x factor`` block means upsampled back two ways.

    The bilinear upsampling is a transposed convolution with FCN's bilinear kernel
    (:func:`minifcn.viz.conv_figures.bilinear_upsample`: kernel ``2*factor``, stride
    ``factor``). Each panel's title gives its mean absolute difference from the image
    (0-255 units), away from a border ``factor`` pixels wide, where the bilinear output fades
    because border pixels have a neighbour on one side only.

    Returns
    -------
    fig : matplotlib.figure.Figure
    errors : dict
        ``{"nearest": float, "bilinear": float}``, the numbers in the titles.
    """
    coarse = block_mean(image, factor) / 255                       # (h, w, 3) in [0, 1]
    h, w = coarse.shape[0] * factor, coarse.shape[1] * factor
    original = image[:h, :w] / 255                                  # (h*f, w*f, 3)
    nearest = coarse.repeat(factor, axis=0).repeat(factor, axis=1)  # (h*f, w*f, 3)
    smooth = bilinear_upsample(coarse.transpose(2, 0, 1), factor).transpose(1, 2, 0)
    inner = (slice(factor, h - factor), slice(factor, w - factor))
    errors = {name: float(255 * np.abs(up[inner] - original[inner]).mean())
              for name, up in (("nearest", nearest), ("bilinear", smooth))}
    fig = Figure(figsize=(8.4, 3.7))
    axes = fig.subplots(1, 3)
    panels = [(original, f"photo {h}x{w}"),
              (nearest, f"{coarse.shape[0]}x{coarse.shape[1]} block means, nearest x{factor}\n"
                        f"off by {errors['nearest']:.1f}"),
              (smooth, f"bilinear transposed conv k={2 * factor} s={factor}\n"
                       f"off by {errors['bilinear']:.1f}")]
    for ax, (picture, title) in zip(axes, panels):
        ax.imshow(np.clip(picture, 0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set(xticks=[], yticks=[])
    fig.subplots_adjust(left=0.01, right=0.99, top=0.85, bottom=0.01, wspace=0.05)
    return fig, errors


def released_weights(name="fcn8s-heavy-pascal"):
    """The converted ``.npz`` that ``minifcn download NAME`` leaves in the cache, or None.

    ``minifcn download`` writes the original file to :func:`minifcn.weights.cache_dir` and
    its conversion beside it, under the same name with the suffix ``.npz``.
    """
    path = local_paths(name).npz
    return path if path.is_file() else None


def segmentation_figure(model, image, class_names):
    """Segment ``image`` with ``model``: the photo, the label map and the overlay.

    Parameters
    ----------
    model : FCN
        Trained on the classes ``class_names`` (e.g. the released FCN-8s and
        :data:`minifcn.data.VOC_CLASSES`); its own preprocessing is applied.
    image : uint8 array, shape (H, W, 3)
    class_names : sequence of str
        One name per class index.

    Returns
    -------
    fig : matplotlib.figure.Figure
    label : int64 array, shape (H, W)
        The class of every pixel (``model.predict(image)``).
    """
    if len(class_names) != model.num_classes:
        raise ValueError(f"segmentation_figure: {len(class_names)} class names for a model "
                         f"with {model.num_classes} classes")
    label = model.predict(image)  # (H, W)
    present, counts = np.unique(label, return_counts=True)
    colours = voc_colormap() / 255
    fig = Figure(figsize=(9, 3.8))
    axes = fig.subplots(1, 3)
    for ax, (picture, title) in zip(axes, [(image, "photo"), (colorize(label), "label map"),
                                           (overlay(image, label), "overlay")]):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set(xticks=[], yticks=[])
    handles = [Patch(color=colours[c], label=f"{class_names[c]} {n / label.size:.0%}")
               for c, n in zip(present, counts)]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(len(handles), 5), fontsize=9)  # below the pictures: save with bbox "tight"
    fig.subplots_adjust(left=0.01, right=0.99, top=0.92, bottom=0.01, wspace=0.05)
    return fig, label
