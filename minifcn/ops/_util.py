"""Argument checks and size arithmetic shared by the ops.

Every check raises an error that names the layer (``name``) and the shapes involved, so a
mistake deep inside a network reads like ``conv3_1: input has 128 channels but weight
(256, 256, 3, 3) expects 256``.
"""
from __future__ import annotations

def pair(v, what="value"):
    """Return ``(v, v)`` for an int, or the 2-tuple itself (for ``stride=(2, 1)`` etc.)."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{what} must be an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


def check_input(x, name, ndim=4):
    """Raise unless ``x`` is a floating-point array with ``ndim`` dimensions (NCHW)."""
    shape = getattr(x, "shape", None)
    if shape is None:
        raise TypeError(f"{name}: expected an array, got {type(x).__name__}")
    if len(shape) != ndim:
        layout = "(N, C, H, W)" if ndim == 4 else f"{ndim}-D"
        raise ValueError(f"{name}: expected a {ndim}-D input {layout}, got shape {tuple(shape)}")
    check_float(x, name, "input")


def check_float(a, name, what):
    """Raise ``TypeError`` unless ``a`` has a floating-point dtype."""
    if a.dtype.kind != "f":
        raise TypeError(f"{name}: {what} must be floating point (float32 or float64), got {a.dtype}")


def check_same_dtype(name, **arrays):
    """Raise ``TypeError`` when the given arrays do not share one dtype."""
    found = {k: a.dtype for k, a in arrays.items() if a is not None}
    if len(set(found.values())) > 1:
        listed = ", ".join(f"{k} {v}" for k, v in found.items())
        raise TypeError(f"{name}: dtypes differ ({listed}); cast them to one float dtype")


def conv_output_size(size, kernel, stride, padding, ceil_mode=False):
    """Output length of a sliding window along one axis.

    ``floor((size + 2*padding - kernel) / stride) + 1`` (or ``ceil`` with ``ceil_mode``),
    computed in integers. With ``ceil_mode`` the last window may hang off the end; as in Caffe
    it is dropped when it would start inside the bottom/right padding only.
    """
    span = size + 2 * padding - kernel
    if ceil_mode:
        # a window may hang off the end, even one longer than the whole input
        out = max(-(-span // stride) + 1, 0)
        if padding > 0 and (out - 1) * stride >= size + padding:
            out -= 1
        return out
    return span // stride + 1 if span >= 0 else 0


def transposed_output_size(size, kernel, stride, padding, output_padding=0):
    """Output length of a transposed convolution: ``stride*(size-1) + kernel - 2*padding + output_padding``."""
    return stride * (size - 1) + kernel - 2 * padding + output_padding
