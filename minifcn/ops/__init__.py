"""The book: functional ops, ``*_forward(...) -> (out, cache)`` / ``*_backward(dout, cache)`` pairs.

Each op is the textbook algorithm as runnable code, forward and backward side by side:
convolution is im2col and one matrix product, its backward three products and a col2im.
Backward returns the gradients in the order of the forward's array arguments. Every op has
a naive loop twin (``*_naive``) written from the definition: the oracle in tests and notebooks.
All layouts are NCHW; every op takes its array module (NumPy or CuPy) from its inputs.

Nothing here exists for speed or memory: that is the engine's job (:mod:`minifcn.engine`,
the same names, tested equal to these), and nothing here imports it.
"""
from ._util import conv_output_size, transposed_output_size
from .activation import dropout_backward, dropout_forward, relu_backward, relu_forward, relu_naive
from .conv import (conv2d_backward, conv2d_backward_naive, conv2d_forward, conv2d_naive,
                   conv_weight_grad)
from .conv_transpose import (conv_transpose2d_backward, conv_transpose2d_forward,
                             conv_transpose2d_naive)
from .crop import (add_backward, add_forward, crop_backward, crop_forward, crop_naive,
                   scale_backward, scale_forward)
from .im2col import col2im, col2im_naive, im2col, im2col_naive
from .loss import (softmax_cross_entropy_backward, softmax_cross_entropy_forward,
                   softmax_cross_entropy_naive)
from .pool import (max_pool2d_backward, max_pool2d_backward_naive, max_pool2d_forward,
                   max_pool2d_naive)

__all__ = [name for name in dir() if not name.startswith("_")]
