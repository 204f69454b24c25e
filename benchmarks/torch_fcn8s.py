"""FCN-8s in PyTorch, built from a minifcn state dict: the benchmark's reference.

Written from the layer table of the reference network (VGG16 trunk, conv1_1 padded by
``pad``, ceil-mode pooling, fc6 7x7 and fc7 1x1 as convolutions, bias-free upsamplers, skip
crops at offsets 5 and 9, final crop at ``pad - 69``, i.e. 31 for the reference's pad 100).
The offsets are typed in here rather than derived by minifcn, so the two networks share
nothing but their parameters. Imported only by the benchmark's PyTorch workers.

``timer``, when given, is called as ``timer(name, seconds)`` after each layer's forward, and
the layer's output tensor is handed to ``on_output(name, tensor)`` (used to time backward).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

TRUNK_BLOCKS = (2, 2, 3, 3, 3)  # convolutions per VGG16 block
POOL4_OFFSET, POOL3_OFFSET = 5, 9


def state_to_torch(state, device="cpu", requires_grad=False):
    """``{name: tensor}`` sharing memory with the NumPy arrays when on the CPU."""
    out = {}
    for name, array in state.items():
        t = torch.from_numpy(array) if device == "cpu" else torch.as_tensor(array, device=device)
        out[name] = t.requires_grad_(requires_grad)
    return out


def fcn8s_forward(params, x, pad=100, timer=None, on_output=None, sync=None):
    """Scores (N, n_class, H, W) of FCN-8s with the tensors in ``params`` on input ``x``.
    ``sync`` (e.g. ``torch.cuda.synchronize``) brackets each timed layer on a GPU."""

    def run(name, fn, *args):
        if timer is not None and sync is not None:
            sync()
        start = time.perf_counter()
        out = fn(*args)
        if timer is not None:
            if sync is not None:
                sync()
            timer(name, time.perf_counter() - start)
        if on_output is not None:
            on_output(name, out)
        return out

    def conv(name, h, padding=0):
        return F.conv2d(h, params[f"{name}.weight"], params[f"{name}.bias"], padding=padding)

    def crop(h, offset, size):
        return h[:, :, offset:offset + size[0], offset:offset + size[1]]

    h, pools = x, {}
    for block, count in enumerate(TRUNK_BLOCKS, start=1):
        for i in range(1, count + 1):
            name = f"conv{block}_{i}"
            h = run(name, conv, name, h, pad if name == "conv1_1" else 1)
            h = run(f"relu{block}_{i}", F.relu, h)
        h = run(f"pool{block}", F.max_pool2d, h, 2, 2, 0, 1, True)  # ceil_mode=True
        pools[block] = h
    for name in ("fc6", "fc7"):
        h = run(f"relu{name[2:]}", F.relu, run(name, conv, name, h))
    score_fr = run("score_fr", conv, "score_fr", h)
    upscore2 = run("upscore2", F.conv_transpose2d, score_fr, params["upscore2.weight"], None, 2)
    score_pool4 = run("score_pool4", conv, "score_pool4", pools[4])
    fuse4 = upscore2 + crop(score_pool4, POOL4_OFFSET, upscore2.shape[2:])
    up4 = run("upscore_pool4", F.conv_transpose2d, fuse4, params["upscore_pool4.weight"], None, 2)
    score_pool3 = run("score_pool3", conv, "score_pool3", pools[3])
    fuse3 = up4 + crop(score_pool3, POOL3_OFFSET, up4.shape[2:])
    upscore8 = run("upscore8", F.conv_transpose2d, fuse3, params["upscore8.weight"], None, 8)
    return crop(upscore8, pad - 69, x.shape[2:])
