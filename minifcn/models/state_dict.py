"""The state-dict contract: every key a network's weights have, with its shape, read off the
layer table of :mod:`minifcn.models.spec`.

Names are the reference FCN's (``conv1_1`` ... ``conv5_3``, ``fc6``, ``fc7``, ``score_fr``,
``upscore8`` ...). Layouts are PyTorch's:

* convolution weight ``(out, in, kh, kw)`` (OIHW) and bias ``(out,)``;
* transposed convolution weight ``(in, out, kh, kw)``, no bias (as in Caffe).

VGG16's fully connected layers are kept as convolutions ("convolutionalization"): fc6 is a
7x7 convolution over pool5, fc7 and fc8 are 1x1 convolutions. At a 224x224 input pool5 is
7x7, fc6-as-conv gives a 1x1 map and the network is exactly the classifier; on a larger
input the same weights slide over pool5 and give a map of class scores. VGG16 itself is the
FCN trunk with ``fc8`` (ImageNet's 1000 classes) where the FCN has ``score_fr``.

Width
-----
The checks here do not insist on the full-size VGG16. A file's *width* is read off
``conv1_1`` (``64 * width`` output channels) and every other array is then checked against
the shapes that width implies (:func:`minifcn.models.spec.scaled`). Width 1 is the real
VGG16; narrow nets with the same names keep tests fast. Pass ``width=1.0`` to
:func:`validate` to insist on the full size.
"""
from __future__ import annotations

import numpy as np

from ..errors import WeightFileError
from .spec import VARIANTS, network_specs, trunk_specs

KINDS = ("vgg16", "vgg16-notop", *VARIANTS)
FCN_KINDS = VARIANTS
IMAGENET_CLASSES = 1000


def _kind_specs(kind, num_classes, width):
    """The specs of ``kind`` that hold weights: convolutions and transposed convolutions."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: expected one of {KINDS}")
    if kind in FCN_KINDS:
        specs = network_specs(kind, num_classes, width)
    else:  # VGG16 is the trunk, its classifier fc8 in place of score_fr
        specs = trunk_specs(width, num_classes=num_classes)
        if kind == "vgg16-notop":
            specs = [s for s in specs if s.name.startswith("conv")]
    return [s for s in specs if s.op in ("conv", "upscore")]


def expected_shapes(kind: str, num_classes: int | None = None, width: float = 1.0) -> dict:
    """Every key of a ``kind`` state dict with its shape.

    Parameters
    ----------
    kind : str
        One of :data:`KINDS`.
    num_classes : int or None
        Output classes of ``fc8`` (``vgg16``, usually 1000) or of ``score_fr`` (FCN kinds);
        None means ImageNet's 1000. Ignored for ``vgg16-notop``.
    width : float
        Channel multiplier (1.0 = the real VGG16).

    Returns
    -------
    dict of str -> tuple of int
        In network order (the order of :func:`minifcn.models.spec.network_specs`).
    """
    n = IMAGENET_CLASSES if num_classes is None else int(num_classes)
    shapes = {}
    for spec in _kind_specs(kind, n, width):
        name = "fc8" if kind == "vgg16" and spec.name == "score_fr" else spec.name
        k = spec.kernel
        if spec.op == "upscore":  # transposed: (in, out, kh, kw)
            shapes[f"{name}.weight"] = (spec.in_channels, spec.out_channels, k, k)
        else:
            shapes[f"{name}.weight"] = (spec.out_channels, spec.in_channels, k, k)
        if spec.bias:
            shapes[f"{name}.bias"] = (spec.out_channels,)
    return shapes


def infer_width(arrays: dict, src="weights") -> float:
    """Channel multiplier read off ``conv1_1.weight`` (64 output channels at width 1)."""
    full = trunk_specs()[0].out_channels  # conv1_1's channels at width 1
    if "conv1_1.weight" not in arrays:
        raise WeightFileError(f"{src}: no conv1_1.weight found, so this is not a VGG16/FCN file")
    shape = np.shape(arrays["conv1_1.weight"])
    if not shape or shape[0] < 1:  # no width to read off: a scalar, or no output channel
        raise WeightFileError(f"{src}: conv1_1.weight has shape {shape}; expected "
                              "(out, 3, 3, 3) with at least one output channel")
    return shape[0] / full


def infer_num_classes(arrays: dict, kind: str) -> int | None:
    """Classes of the head: ``fc8`` rows for VGG16, ``score_fr`` rows for FCNs."""
    key = {"vgg16": "fc8.weight", "vgg16-notop": None}.get(kind, "score_fr.weight")
    if key is None or key not in arrays or not np.shape(arrays[key]):
        return None
    return int(np.shape(arrays[key])[0])


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
