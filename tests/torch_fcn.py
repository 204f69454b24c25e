"""A PyTorch FCN built from a minifcn state dict: the oracle of the model parity tests.

Written straight from the reference's layer table (REFERENCE.md section 1), with the crop
offsets typed in as the reference states them (19; 5, 27; 5, 9, 31), so that it shares
nothing with minifcn's derivation of them.
"""
import torch
import torch.nn.functional as F

OFFSETS = {"fcn32s": {"score": 19}, "fcn16s": {"pool4": 5, "score": 27},
           "fcn8s": {"pool4": 5, "pool3": 9, "score": 31}}
OFFSETS["fcn8s-atonce"] = OFFSETS["fcn8s"]
BLOCKS = [2, 2, 3, 3, 3]


def _conv(state, name, x, padding=0):
    return F.conv2d(x, state[f"{name}.weight"], state[f"{name}.bias"], padding=padding)


def _crop(x, offset, like):
    h, w = like.shape[2:]
    return x[:, :, offset:offset + h, offset:offset + w]


def torch_fcn_forward(state, x, variant, pad=100):
    """Scores of the FCN ``variant`` whose parameters are the tensors in ``state``."""
    h, skips = x, {}
    for b, n in enumerate(BLOCKS, start=1):
        for i in range(1, n + 1):
            h = F.relu(_conv(state, f"conv{b}_{i}", h, pad if (b, i) == (1, 1) else 1))
        h = F.max_pool2d(h, 2, 2, ceil_mode=True)
        skips[f"pool{b}"] = h
    h = F.relu(_conv(state, "fc6", h))
    h = F.relu(_conv(state, "fc7", h))
    score = _conv(state, "score_fr", h)
    off = OFFSETS[variant]
    scale = {"pool4": 0.01, "pool3": 0.0001} if variant == "fcn8s-atonce" else {"pool4": 1, "pool3": 1}
    if variant == "fcn32s":
        up = F.conv_transpose2d(score, state["upscore.weight"], stride=32)
        return _crop(up, off["score"], x)
    up = F.conv_transpose2d(score, state["upscore2.weight"], stride=2)
    up = up + _crop(_conv(state, "score_pool4", skips["pool4"] * scale["pool4"]), off["pool4"], up)
    if variant == "fcn16s":
        return _crop(F.conv_transpose2d(up, state["upscore16.weight"], stride=16), off["score"], x)
    up = F.conv_transpose2d(up, state["upscore_pool4.weight"], stride=2)
    up = up + _crop(_conv(state, "score_pool3", skips["pool3"] * scale["pool3"]), off["pool3"], up)
    return _crop(F.conv_transpose2d(up, state["upscore8.weight"], stride=8), off["score"], x)
