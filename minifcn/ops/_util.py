"""Argument checks and size arithmetic shared by the ops.

Every check raises an error that names the layer (``name``) and the shapes involved, so a
mistake deep inside a network reads like ``conv3_1: input has 128 channels but weight
(256, 256, 3, 3) expects 256``.
"""
from __future__ import annotations

import numpy as np


def pair(v, what="value"):
    """Return ``(v, v)`` for an int, or the 2-tuple itself (for ``stride=(2, 1)`` etc.)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{what} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def check_input(x, name, ndim=4):
    """Raise unless ``x`` is a float32 or float64 array with ``ndim`` dimensions (NCHW)."""
    shape = getattr(x, "shape", None)
    if shape is None:
        raise TypeError(f"{name}: expected an array, got {type(x).__name__}")
    if len(shape) != ndim:
        layout = "(N, C, H, W)" if ndim == 4 else f"{ndim}-D"
        raise ValueError(f"{name}: expected a {ndim}-D input {layout}, got shape {tuple(shape)}")
    check_float(x, name, "input")


SUPPORTED_DTYPES = ("float32", "float64")


def check_float(a, name, what):
    """Raise ``TypeError`` unless ``a`` (an array or a dtype) is float32 or float64.

    Other floats are refused too, not only integers and complex numbers: float16 keeps 11
    bits, so a convolution's sums of thousands of products lose most of their digits (and
    its range ends at 65504); longdouble differs from machine to machine, and neither BLAS
    nor CuPy computes in it.
    """
    dtype = np.dtype(getattr(a, "dtype", a))
    if dtype.name not in SUPPORTED_DTYPES:
        raise TypeError(f"{name}: {what} must be floating point, float32 or float64; got {dtype}")


def check_grad(dout, expected_shape, name):
    """Raise unless ``dout``, the gradient arriving at an op's output, fits that output.

    Every backward calls this first: a gradient of another shape would otherwise be
    broadcast, cropped or padded into a wrong answer without a word (a crop's backward
    pads whatever it is given). ``expected_shape`` is the shape of the forward's output.
    """
    shape = getattr(dout, "shape", None)
    if shape is None:
        raise TypeError(f"{name}: the upstream gradient must be an array, "
                        f"got {type(dout).__name__}")
    if tuple(shape) != tuple(expected_shape):
        raise ValueError(f"{name}: the upstream gradient has shape {tuple(shape)} but the "
                         f"forward's output has shape {tuple(expected_shape)}")
    check_float(dout, name, "the upstream gradient")


def check_same_dtype(name, **arrays):
    """Raise ``TypeError`` when the given arrays do not share one dtype."""
    found = {k: a.dtype for k, a in arrays.items() if a is not None}
    if len(set(found.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in found.items())
        raise TypeError(f"{name}: dtypes differ ({listed}); cast them to one float dtype")


def conv_output_size(size, kernel, stride, padding, ceil_mode=False):
    """Output length of a sliding window along one axis.

    ``floor((size + 2*padding - kernel) / stride) + 1`` (or ``ceil`` with ``ceil_mode``),
    computed in integers. With ``ceil_mode`` the last window may hang off the end, but it
    must start inside the input: a last window that would start in the bottom/right padding
    or past the input (a kernel smaller than the stride) holds no pixel and is dropped, as
    in PyTorch (Caffe drops it only when there is padding, and pools ``-FLT_MAX`` otherwise).
    Every pooling path takes its output size from here.
    """
    span = size + 2 * padding - kernel
    if ceil_mode:
        # a window may hang off the end, even one longer than the whole input
        out = max(-(-span // stride) + 1, 0)
        if (out - 1) * stride >= size + padding:  # the last window starts at or past the end
            out -= 1
        return out
    return span // stride + 1 if span >= 0 else 0


def transposed_output_size(size, kernel, stride, padding, output_padding=0):
    """Output length of a transposed convolution: ``stride*(size-1) + kernel - 2*padding + output_padding``."""
    return stride * (size - 1) + kernel - 2 * padding + output_padding


def check_layer_args(x, weight, bias, stride, padding, name, transposed=False):
    """The checks a convolution and a transposed convolution share.

    ``weight`` is (C_out, C_in, kh, kw) for a convolution and (C_in, C_out, kh, kw) for a
    transposed one. Returns ``(kh, kw, sh, sw, ph, pw)``.
    """
    layout = "(C_in, C_out, kh, kw)" if transposed else "(C_out, C_in, kh, kw)"
    check_input(x, name)
    if getattr(weight, "ndim", None) != 4:
        raise ValueError(f"{name}: weight must be 4-D {layout}, got shape {tuple(weight.shape)}")
    check_float(weight, name, "weight")
    check_same_dtype(name, input=x, weight=weight, bias=bias)
    c_in, c_out = (weight.shape[0], weight.shape[1]) if transposed else (weight.shape[1], weight.shape[0])
    if x.shape[1] != c_in:
        shown = f"{tuple(weight.shape)} {layout}" if transposed else f"{tuple(weight.shape)}"
        raise ValueError(f"{name}: input {tuple(x.shape)} has {x.shape[1]} channels but weight "
                         f"{shown} expects {c_in}")
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(f"{name}: bias shape {tuple(bias.shape)} does not match ({c_out},)")
    sh, sw = pair(stride, "stride")
    ph, pw = pair(padding, "padding")
    if sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(f"{name}: stride must be >= 1 and padding >= 0, got {stride}, {padding}")
    return weight.shape[2], weight.shape[3], sh, sw, ph, pw

