"""The engine: the book's ops, made fast, under the same names.

Everything in minifcn that exists for speed or memory lives here: banded convolution and
kept scratch buffers (:mod:`.bands`, :mod:`.memory`), FCN's padded border computed as a
constant (:mod:`.border`, :mod:`.bordered`), the backward on the final crop's reach
(:mod:`.reach`), the stride-1 backward (:mod:`.stride1`), the forward of the layers with many
channels in 4/9 of the multiplications (:mod:`.winograd`),
col2im by phases and the CuPy gather kernel (:mod:`.im2col`), separable bilinear upsampling
(:mod:`.separable`), pooling that finds its winners in the backward (:mod:`.pool`), in-place
ReLU (:mod:`.activation`), element-wise work on several CPU threads (:mod:`.threads`) and the
allocator and thread settings of the ``minifcn`` command (:mod:`.memory`).

Each function that replaces one of the book's (:mod:`minifcn.ops`) takes the book's arguments
(a call that the book accepts, the engine accepts; some add keyword-only options) and returns
the same results, tested equal in ``tests/test_engine_equivalence.py``; its docstring names
the book function, why it differs and what that measurably buys (``docs/performance.md``).
The ops the engine does not replace (crop, sum, scale, dropout, the loss, the loop twins,
the size arithmetic) are the book's own, re-exported here, so that a layer can hold either
module as its op set: ``Conv2d(..., ops="engine")``, ``FCN8s(..., ops="engine")``.
"""
from ..ops import (add_backward, add_forward, col2im_naive, conv2d_backward_naive, conv2d_naive,
                   conv_output_size, conv_transpose2d_naive, crop_backward, crop_forward,
                   crop_naive, dropout_backward, dropout_forward, im2col_naive,
                   max_pool2d_backward_naive, max_pool2d_naive, relu_naive, scale_backward,
                   scale_forward, softmax_cross_entropy_backward, softmax_cross_entropy_forward,
                   softmax_cross_entropy_naive, transposed_output_size)
from .activation import relu_backward, relu_forward
from .conv import conv2d_backward, conv2d_forward, conv_weight_grad
from .conv_transpose import conv_transpose2d_backward, conv_transpose2d_forward
from .im2col import col2im, im2col
from .pool import max_pool2d_backward, max_pool2d_forward

__all__ = [
    # the engine's own
    "conv2d_forward", "conv2d_backward", "conv_weight_grad", "conv_transpose2d_forward",
    "conv_transpose2d_backward", "im2col", "col2im", "max_pool2d_forward", "max_pool2d_backward",
    "relu_forward", "relu_backward",
    # the book's, unchanged
    "add_forward", "add_backward", "crop_forward", "crop_backward", "scale_forward",
    "scale_backward", "dropout_forward", "dropout_backward", "softmax_cross_entropy_forward",
    "softmax_cross_entropy_backward", "conv_output_size", "transposed_output_size",
    "conv2d_naive", "conv2d_backward_naive", "conv_transpose2d_naive", "im2col_naive",
    "col2im_naive", "max_pool2d_naive", "max_pool2d_backward_naive", "relu_naive", "crop_naive",
    "softmax_cross_entropy_naive",
]
