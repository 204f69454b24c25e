"""Random VGG16/FCN weights with the real names, written out by hand for the weight tests.

The shapes here are spelled out independently of :mod:`minifcn.weights.layout`, so a test
that builds a file from them and converts it checks the converter against a second source.
Narrow nets (channel counts / 16, fc 256) keep the files small and the tests fast.
"""
import numpy as np

# VGG16's convolutions at full size: (name, in, out).
FULL_CONVS = [
    ("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512),
]
TORCHVISION_CONV_INDEX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
NARROW = 16  # channel divisor of the narrow nets


def vgg_arrays(classes=10, divisor=NARROW, top=True, seed=0):
    """minifcn-layout VGG16 weights: conv OIHW, fc6 (F, C, 7, 7), fc7/fc8 (out, in, 1, 1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, cin, cout in FULL_CONVS:
        cin = cin if name == "conv1_1" else cin // divisor
        cout //= divisor
        # He-like scale keeps activations O(1) through 13 layers (for the parity tests).
        std = np.sqrt(2.0 / (cin * 9))
        out[f"{name}.weight"] = (rng.standard_normal((cout, cin, 3, 3)) * std).astype(np.float32)
        out[f"{name}.bias"] = (rng.standard_normal(cout) * 0.1).astype(np.float32)
    if not top:
        return out
    c, f = 512 // divisor, 4096 // divisor
    for name, shape in (("fc6", (f, c, 7, 7)), ("fc7", (f, f, 1, 1)), ("fc8", (classes, f, 1, 1))):
        fan_in = int(np.prod(shape[1:]))
        out[f"{name}.weight"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        out[f"{name}.bias"] = (rng.standard_normal(shape[0]) * 0.1).astype(np.float32)
    return out


def fcn_arrays(kind, classes=5, divisor=NARROW, seed=1):
    """minifcn-layout FCN weights (no fc8; score layers; transposed convs (in, out, k, k))."""
    rng = np.random.default_rng(seed)
    out = vgg_arrays(divisor=divisor, seed=seed)
    del out["fc8.weight"], out["fc8.bias"]
    f = 4096 // divisor
    scorers = {"score_fr": f}
    ups = {"fcn32s": {"upscore": 64}, "fcn16s": {"upscore2": 4, "upscore16": 32},
           "fcn8s": {"upscore2": 4, "upscore_pool4": 4, "upscore8": 16}}[kind]
    if kind in ("fcn16s", "fcn8s"):
        scorers["score_pool4"] = 512 // divisor
    if kind == "fcn8s":
        scorers["score_pool3"] = 256 // divisor
    for name, cin in scorers.items():
        out[f"{name}.weight"] = rng.standard_normal((classes, cin, 1, 1)).astype(np.float32)
        out[f"{name}.bias"] = rng.standard_normal(classes).astype(np.float32)
    for name, k in ups.items():
        out[f"{name}.weight"] = rng.standard_normal((classes, classes, k, k)).astype(np.float32)
    return out


def fuzz_values(shape, rng):
    """float32 weights +-2**-63 * (1 + k/256) for the fuzz tests of the weight readers.

    Their exponent bits are 0b01000000 (as a double, 0b01111000000) and their low mantissa
    byte is zero, so no four flipped bits in a value and no byte-order swap can make one
    inf or NaN: a non-finite value read from a fuzzed file came from somewhere else.
    """
    k = rng.integers(0, 256, size=shape)
    sign = rng.choice([-1.0, 1.0], size=shape)
    return (sign * 2.0**-63 * (1 + k / 256)).astype(np.float32)


def to_torchvision(arrays):
    """minifcn names -> torchvision's VGG16 state-dict names and Linear layouts."""
    out = {}
    for (name, _, _), index in zip(FULL_CONVS, TORCHVISION_CONV_INDEX):
        out[f"features.{index}.weight"] = arrays[f"{name}.weight"]
        out[f"features.{index}.bias"] = arrays[f"{name}.bias"]
    for name, index in (("fc6", 0), ("fc7", 3), ("fc8", 6)):
        if f"{name}.weight" in arrays:
            w = arrays[f"{name}.weight"]
            out[f"classifier.{index}.weight"] = w.reshape(w.shape[0], -1)  # channels-first flatten
            out[f"classifier.{index}.bias"] = arrays[f"{name}.bias"]
    return out


def assert_same_arrays(got: dict, expected: dict):
    """Same keys, shapes, float32 dtype and values."""
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        assert got[key].dtype == np.float32, key
        assert got[key].shape == value.shape, (key, got[key].shape, value.shape)
        np.testing.assert_array_equal(got[key], value, err_msg=key)
