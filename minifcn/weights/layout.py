"""The state-dict contract every converter produces: names, layouts and expected shapes.

Names are the reference FCN's (``conv1_1`` ... ``conv5_3``, ``fc6``, ``fc7``, ``score_fr``,
``upscore8`` ...). Layouts are PyTorch's:

* convolution weight ``(out, in, kh, kw)`` (OIHW) and bias ``(out,)``;
* transposed convolution weight ``(in, out, kh, kw)``, no bias (as in Caffe).

VGG16's fully connected layers are kept as convolutions ("convolutionalization"): fc6 is a
7x7 convolution over pool5, fc7 and fc8 are 1x1 convolutions. At a 224x224 input pool5 is
7x7, fc6-as-conv gives a 1x1 map and the network is exactly the classifier; on a larger
input the same weights slide over pool5 and give a map of class scores.

Width
-----
The checks here do not insist on the full-size VGG16. A file's *width* is read off
``conv1_1`` (``64 * width`` output channels) and every other array is then checked against
the shapes that width implies, with ``scaled(c, width) = max(1, round(c * width))`` channels
where the full net has ``c``. Width 1 is the real VGG16; narrow nets with the same names keep
tests fast. Pass ``width=1.0`` to :func:`validate` to insist on the full size.
"""
from __future__ import annotations

import numpy as np

from ..errors import FileFormatError

# (name, in channels, out channels) of VGG16's 3x3 convolutions; conv1_1 reads the image.
VGG16_CONVS = (
    ("conv1_1", 3, 64), ("conv1_2", 64, 64),
    ("conv2_1", 64, 128), ("conv2_2", 128, 128),
    ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
    ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
    ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512),
)
CONV_NAMES = tuple(name for name, _, _ in VGG16_CONVS)
FC_WIDTH = 4096        # VGG16's fc6/fc7 output channels
FC6_KERNEL = 7         # pool5 is 7x7 at a 224x224 input: fc6 covers all of it
IMAGENET_CLASSES = 1000

# Transposed convolutions of each FCN variant: name -> kernel size (stride is half of it).
UPSCORE_LAYERS = {
    "fcn32s": {"upscore": 64},
    "fcn16s": {"upscore2": 4, "upscore16": 32},
    "fcn8s": {"upscore2": 4, "upscore_pool4": 4, "upscore8": 16},
}
UPSCORE_LAYERS["fcn8s-atonce"] = UPSCORE_LAYERS["fcn8s"]
SKIP_SCORERS = {  # 1x1 scorers on the pooled features: name -> full-size input channels
    "fcn32s": {},
    "fcn16s": {"score_pool4": 512},
    "fcn8s": {"score_pool4": 512, "score_pool3": 256},
}
SKIP_SCORERS["fcn8s-atonce"] = SKIP_SCORERS["fcn8s"]
KINDS = ("vgg16", "vgg16-notop", "fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")
FCN_KINDS = ("fcn32s", "fcn16s", "fcn8s", "fcn8s-atonce")


class WeightFileError(FileFormatError):
    """A weight file could not be read or does not hold what it should.

    The message always names the file, and where it applies the key and the expected and
    found shapes, so it can be shown to the user as it is (no traceback needed).
    """


def scaled(channels: int, width: float) -> int:
    """Channel count of a layer with ``channels`` channels at full size, at ``width``."""
    return max(1, int(round(channels * width)))


def expected_shapes(kind: str, num_classes: int | None = None, width: float = 1.0) -> dict:
    """Every key of a ``kind`` state dict with its shape.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    num_classes : int or None
        Output classes of ``fc8`` (``vgg16``, usually 1000) or of ``score_fr`` (FCN kinds);
        ignored for ``vgg16-notop``.
    width : float
        Channel multiplier (1.0 = the real VGG16).

    Returns
    -------
    dict of str -> tuple of int
        In network order: backbone, then fc6/fc7, then the head.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: expected one of {KINDS}")
    shapes = {}
    for name, cin, cout in VGG16_CONVS:
        cin = cin if name == "conv1_1" else scaled(cin, width)  # the image has 3 channels
        shapes[f"{name}.weight"] = (scaled(cout, width), cin, 3, 3)
        shapes[f"{name}.bias"] = (scaled(cout, width),)
    if kind == "vgg16-notop":
        return shapes
    fc, pool5 = scaled(FC_WIDTH, width), scaled(512, width)
    shapes["fc6.weight"] = (fc, pool5, FC6_KERNEL, FC6_KERNEL)
    shapes["fc6.bias"] = (fc,)
    shapes["fc7.weight"] = (fc, fc, 1, 1)
    shapes["fc7.bias"] = (fc,)
    n = IMAGENET_CLASSES if num_classes is None else int(num_classes)
    if kind == "vgg16":
        shapes["fc8.weight"] = (n, fc, 1, 1)
        shapes["fc8.bias"] = (n,)
        return shapes
    shapes["score_fr.weight"] = (n, fc, 1, 1)
    shapes["score_fr.bias"] = (n,)
    for name, cin in SKIP_SCORERS[kind].items():
        shapes[f"{name}.weight"] = (n, scaled(cin, width), 1, 1)
        shapes[f"{name}.bias"] = (n,)
    for name, k in UPSCORE_LAYERS[kind].items():
        shapes[f"{name}.weight"] = (n, n, k, k)  # (in, out, kh, kw), no bias
    return shapes


def kind_from_keys(keys) -> str:
    """Tell the network from the layer names present (``fcn8s`` for both 8s variants)."""
    keys = set(keys)
    if "upscore8.weight" in keys:
        return "fcn8s"
    if "upscore16.weight" in keys:
        return "fcn16s"
    if "upscore.weight" in keys:
        return "fcn32s"
    if any(k.startswith(("fc6.", "fc7.", "fc8.", "score_fr.")) for k in keys):
        return "vgg16"
    return "vgg16-notop"


def infer_width(arrays: dict, src="weights") -> float:
    """Channel multiplier read off ``conv1_1.weight`` (64 output channels at width 1)."""
    if "conv1_1.weight" not in arrays:
        raise WeightFileError(f"{src}: no conv1_1.weight found, so this is not a VGG16/FCN file")
    return np.shape(arrays["conv1_1.weight"])[0] / 64


def infer_num_classes(arrays: dict, kind: str) -> int | None:
    """Classes of the head: ``fc8`` rows for VGG16, ``score_fr`` rows for FCNs."""
    key = {"vgg16": "fc8.weight", "vgg16-notop": None}.get(kind, "score_fr.weight")
    if key is None or key not in arrays:
        return None
    return int(np.shape(arrays[key])[0])


def fc_to_conv(weight, in_channels: int, kernel: int, key: str, src="weights"):
    """Reshape a fully connected weight ``(out, in_channels * kernel**2)`` to a conv weight.

    The input must have been flattened channels-first (C, H, W), as Caffe and torchvision do;
    channels-last sources (Keras) reorder before calling this.

    Returns
    -------
    ndarray, shape (out, in_channels, kernel, kernel)
    """
    weight = np.asarray(weight)
    if weight.ndim == 4:  # already a convolution (FCN caffemodels, pytorch-fcn, timm)
        return weight
    expected_in = in_channels * kernel * kernel
    if weight.ndim != 2 or weight.shape[1] != expected_in:
        raise WeightFileError(
            f"{src}: {key} has shape {tuple(weight.shape)}; expected (out, {expected_in}) "
            f"= (out, {in_channels} channels x {kernel} x {kernel}) to become a "
            f"{kernel}x{kernel} conv"
        )
    return weight.reshape(weight.shape[0], in_channels, kernel, kernel)  # (out, C, k, k)


def validate(arrays: dict, kind: str, src="weights", width: float | None = None) -> dict:
    """Check that ``arrays`` is exactly a ``kind`` state dict and return its facts.

    Parameters
    ----------
    arrays : dict of str -> ndarray
    kind : str
    src : str
        File name used in error messages.
    width : float or None
        Insist on this width; ``None`` reads it off ``conv1_1``.

    Returns
    -------
    dict
        ``{"width": float, "num_classes": int or None}``.

    Raises
    ------
    WeightFileError
        Naming the file and every missing or unexpected key and every shape that differs
        (expected vs found).
    """
    found_width = infer_width(arrays, src)
    width = found_width if width is None else float(width)
    num_classes = infer_num_classes(arrays, kind)
    expected = expected_shapes(kind, num_classes, width)
    problems = [f"missing {k} (expected shape {s})" for k, s in expected.items() if k not in arrays]
    problems += [f"unexpected key {k}" for k in arrays if k not in expected]
    for key, shape in expected.items():
        if key in arrays and tuple(np.shape(arrays[key])) != shape:
            problems.append(f"{key}: expected shape {shape}, found {tuple(np.shape(arrays[key]))}")
    if problems:
        shown = "; ".join(problems[:6])
        if len(problems) > 6:  # one readable line, even for a file of another network
            shown += f"; and {len(problems) - 6} more"
        raise WeightFileError(f"{src}: not a valid {kind} state dict (width {width:g}): {shown}")
    return {"width": width, "num_classes": num_classes}


def checked_values(arrays: dict, src="weights", dtype=np.float32, allow_nonfinite=False) -> dict:
    """``arrays`` as ``dtype``, once every one is made of real floating-point numbers that
    stay finite in ``dtype``.

    Parameters
    ----------
    arrays : dict of str -> ndarray
    src : str
        File name used in error messages.
    dtype : numpy dtype
        What the network computes in (float32; float64 for gradient checks).
    allow_nonfinite : bool
        Accept NaN and inf (e.g. to inspect a diverged run's weights). A network with one
        such weight computes NaN or inf wherever it reaches, so they are refused by default;
        a finite float64 weight too large for float32 counts as inf.

    Returns
    -------
    dict of str -> ndarray
        The same keys; an array already of ``dtype`` is not copied.

    Raises
    ------
    WeightFileError
        Naming the file and the key: a dtype that is not real floating point (complex,
        integer, text), or the number of non-finite values and where the first one is.
    """
    out = {}
    for key, value in arrays.items():
        value = np.asarray(value)
        if value.dtype.kind != "f":  # casting would drop imaginary parts or invent numbers
            raise WeightFileError(f"{src}: {key} has dtype {value.dtype} "
                                  f"({_DTYPE_KINDS.get(value.dtype.kind, 'not numbers')}); "
                                  "weights must be real floating-point numbers (float16, "
                                  "float32 or float64)")
        with np.errstate(over="ignore"):  # overflow to inf is reported just below
            value = value.astype(dtype, copy=False)
        finite = np.isfinite(value)
        if not allow_nonfinite and not finite.all():
            first = tuple(int(i) for i in np.argwhere(~finite)[0])
            count = int(finite.size - np.count_nonzero(finite))
            raise WeightFileError(
                f"{src}: {key} holds {count} non-finite value{'s' * (count > 1)} (NaN or inf "
                f"in {np.dtype(dtype).name}), the first at index {first}; refused "
                "(allow_nonfinite=True, or convert --allow-nonfinite, accepts them)")
        out[key] = value
    return out


_DTYPE_KINDS = {"c": "complex numbers", "b": "booleans", "i": "integers",
                "u": "unsigned integers", "U": "text", "S": "bytes"}
