"""Receptive fields: the input pixels a unit can see, and how much each of them counts.

The *theoretical* receptive field of a unit is the window of input pixels that can change
it at all. Along the straight trunk (convolutions and poolings) it follows from walking one
index interval back, layer by layer: output pixels ``lo .. hi`` of a layer with kernel ``k``,
stride ``s`` and padding ``p`` read bottom pixels ``s*lo - p .. s*hi - p + k - 1``
(:func:`field_interval`). For ``score_fr`` of FCN-8s that window is 404 pixels wide, the
``RF`` column of ``minifcn describe``.

The *effective* receptive field is how much each of those pixels matters: the gradient of
one unit with respect to the input image (:func:`unit_input_gradient`), computed by the
network's own backward pass from a one-hot gradient at that unit. Luo et al. (2016) found it
roughly Gaussian and much narrower than the theoretical window; :func:`centred_extent`
measures its size.

References
----------
W. Luo, Y. Li, R. Urtasun, R. Zemel, "Understanding the Effective Receptive Field in Deep
Convolutional Neural Networks", NeurIPS 2016.
"""
from __future__ import annotations

import numpy as np

from ..backend import to_host

__all__ = ["field_interval", "unit_input_gradient", "centred_extent"]


def _trunk_chain(specs, blob):
    """The specs from the input up to ``blob``, which must lie on the straight trunk."""
    names = [s.name for s in specs]
    if blob not in names or not all(s.trunk for s in specs[:names.index(blob) + 1]):
        trunk = [s.name for s in specs if s.trunk]
        raise ValueError(f"receptive field: {blob!r} is not a trunk blob; expected one of "
                         f"{trunk[0]} .. {trunk[-1]}")
    return specs[:names.index(blob) + 1]


def field_interval(specs, blob, index):
    """Input pixels that pixel ``index`` of a trunk blob can see, along one axis.

    Parameters
    ----------
    specs : list of LayerSpec
        A network's layer specs (:func:`~minifcn.models.network_specs`).
    blob : str
        A blob of the trunk, ``conv1_1`` to ``score_fr``.
    index : int
        The pixel's row (or column) in that blob.

    Returns
    -------
    first, last : int
        The window, inclusive, in input coordinates: pixel 0 is the image's first pixel,
        negative ones (and those past its end) lie in conv1_1's zero padding.

    Notes
    -----
    ``last - first + 1`` is the receptive field of
    :func:`~minifcn.models.coords.receptive_fields`, and the window's centre is the blob's
    coordinate map at ``index`` (:func:`~minifcn.models.coords.coordinate_maps`).
    """
    first = last = index
    for spec in reversed(_trunk_chain(specs, blob)):
        if spec.op in ("conv", "pool"):  # elementwise layers keep the window
            first = spec.stride * first - spec.padding
            last = spec.stride * last - spec.padding + spec.kernel - 1
    return first, last


def unit_input_gradient(model, x, blob, channel, row, col):
    """Gradient of one unit of ``blob`` with respect to the input, by the model's backward.

    Parameters
    ----------
    model : FCN
        Any variant; its weights are left as they are (set to eval mode for the call, so
        dropout keeps every unit). A fresh model's score layers are zero: their units have
        zero gradient until the model is trained or its scorers are set.
    x : ndarray, shape (N, 3, H, W)
        Input images, in the model's dtype.
    blob : str
        ``"score"`` (the final score map) or a trunk blob (``conv1_1`` .. ``score_fr``).
    channel, row, col : int
        The unit: a class (or channel) and a position in ``blob``.

    Returns
    -------
    dx : ndarray, shape (N, 3, H, W)
        ``d blob[n, channel, row, col] / d x[n]`` for every image ``n`` (the images do not
        interact, so one backward pass gives all of them).

    Notes
    -----
    The backward pass starts from a one-hot gradient at the unit, and every parameter is
    frozen for the call, so no weight gradient is computed or stored.
    """
    params = model.parameters()
    saved = [(p.requires_grad, p.grad) for p in params]
    training = model.training
    model.eval()
    for p in params:
        p.requires_grad = False
    try:
        if blob == "score":
            out = model(x)
        else:
            layers = [model.layers[s.name] for s in _trunk_chain(model.specs, blob)]
            out = x
            for layer in layers:
                out = layer(out)
        xp = model.xp
        dout = xp.zeros_like(out)  # (N, C, h, w), one-hot at the unit
        dout[:, channel, row, col] = 1
        if blob == "score":
            dx = model.backward(dout)
        else:
            for layer in reversed(layers):
                dout = layer.backward(dout)
            dx = dout
    finally:
        model.train(training)
        for p, (requires_grad, grad) in zip(params, saved):
            p.requires_grad, p.grad = requires_grad, grad
    return dx


def centred_extent(weight, centre, fraction=0.95):
    """Side of the smallest square centred on ``centre`` that holds ``fraction`` of ``weight``.

    Parameters
    ----------
    weight : ndarray, shape (H, W)
        Non-negative, e.g. the squared input gradient summed over images and channels.
    centre : (float, float)
        Row and column of the square's centre (a half pixel when the unit's window has an
        even side).
    fraction : float
        Share of the total to enclose, in (0, 1].

    Returns
    -------
    side : int
        The square's side in pixels: it covers ``centre +- (side - 1) / 2`` (cut to the array).

    Notes
    -----
    A square of side ``n`` centred on ``centre`` holds exactly the pixels whose distance
    ``max(|row - cy|, |col - cx|)`` is at most ``(n - 1) / 2``: sorting the pixels by that
    distance and adding up their weights finds the side in one pass.
    """
    weight = np.asarray(to_host(weight), dtype=np.float64)
    if not 0 < fraction <= 1:
        raise ValueError(f"centred_extent: fraction must be in (0, 1], got {fraction}")
    cy, cx = centre
    rows, cols = np.indices(weight.shape)  # (2, H, W)
    distance = np.maximum(np.abs(rows - cy), np.abs(cols - cx)).ravel()  # (H*W,)
    order = np.argsort(distance, kind="stable")
    held = np.cumsum(weight.ravel()[order])  # (H*W,) weight within each distance
    k = min(int(np.searchsorted(held, fraction * held[-1])), held.size - 1)
    return int(round(2 * distance[order[k]] + 1))
