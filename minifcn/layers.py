"""Layer objects: parameters, their gradients and the forward cache, around the pure ops.

Each layer holds its :class:`Parameter` objects (``.data`` and ``.grad`` arrays), remembers
what its backward needs from the last forward, and offers ``forward(x)`` / ``backward(dout)``.
The networks in :mod:`minifcn.models` are wired from these.

What the caches hold decides a network's memory, so each keeps as little as its backward
needs: a convolution keeps a reference to its input (the blob the previous layer made
anyway; its im2col columns are recomputed in backward, see :mod:`minifcn.ops.conv`), a ReLU
its mask as booleans (a quarter of a float32 blob), a max-pool references to its input and
output (its backward finds the winners from them, :mod:`minifcn.ops.pool`). Every layer
caches in eval mode too, so that a backward may follow any forward (as in the parity tests);
for FCN-8s at 500x500 that costs about 0.7 GB on top of the 0.54 GB of weights (numbers in
docs/performance.md). A layer whose ``keep_cache`` is False (set for a whole network by
:meth:`minifcn.models.fcn.FCN.inference`) drops its cache as soon as its forward returns.
"""
from __future__ import annotations

import numpy as np

from .backend import get_array_module
from .ops import (conv2d_backward, conv2d_forward, conv_transpose2d_backward,
                  conv_transpose2d_forward, crop_backward, crop_forward, dropout_backward,
                  dropout_forward, max_pool2d_backward, max_pool2d_forward, max_pool2d_pinned, relu_backward,
                  relu_forward, scale_backward, scale_forward)


class Parameter:
    """A learnable array and its gradient.

    Attributes
    ----------
    data : array
    grad : array or None
        Filled (overwritten) by the owning layer's ``backward``.
    requires_grad : bool
        ``False`` freezes it: backward skips its gradient and optimisers skip it.
    """

    def __init__(self, data, requires_grad=True):
        self.data = data
        self.grad = None
        self.requires_grad = requires_grad

    @property
    def shape(self):
        return self.data.shape

    def __repr__(self):
        return f"Parameter(shape={tuple(self.data.shape)}, dtype={self.data.dtype})"


class Layer:
    """Base class: a named op with optional parameters and a train/eval switch.

    ``keep_cache = False`` makes the layer forget what its backward would need as soon as
    its forward returns, for passes that no backward follows.
    """

    def __init__(self, name):
        self.name = name
        self.training = True
        self.keep_cache = True
        self.cache = None

    def parameters(self):
        """``{"weight": Parameter, ...}``: this layer's parameters by short name."""
        return {}

    def train(self, mode=True):
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def backward_check(self):
        if self.cache is None:
            raise RuntimeError(f"{self.name}: backward called before forward (or after a "
                               f"forward that kept no cache, as inside FCN.inference())")
        return self.cache

    def __call__(self, *args):
        out = self.forward(*args)
        self.output_shape = tuple(out.shape)
        if not self.keep_cache:
            self.cache = None
        return out

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


class Conv2d(Layer):
    """Convolution layer: weight (C_out, C_in, kh, kw), bias (C_out,)."""

    def __init__(self, name, weight, bias=None, stride=1, padding=0):
        super().__init__(name)
        self.weight = Parameter(weight)
        self.bias = Parameter(bias) if bias is not None else None
        self.stride, self.padding = stride, padding

    def parameters(self):
        params = {"weight": self.weight}
        if self.bias is not None:
            params["bias"] = self.bias
        return params

    def forward(self, x):
        bias = self.bias.data if self.bias is not None else None
        out, self.cache = conv2d_forward(x, self.weight.data, bias, self.stride, self.padding, self.name)
        return out

    def backward(self, dout, input_grad=True):
        """``input_grad=False`` (a net's first layer) skips the gradient of the input and
        returns None; a frozen weight's gradient is never computed."""
        dx, dweight, dbias = conv2d_backward(dout, self.backward_check(), input_grad,
                                             self.weight.requires_grad, self.name)
        _store(self.weight, dweight)
        _store(self.bias, dbias)
        return dx


class ConvTranspose2d(Layer):
    """Transposed-convolution layer: weight (C_in, C_out, kh, kw), optional bias (C_out,)."""

    def __init__(self, name, weight, bias=None, stride=1, padding=0, output_padding=0):
        super().__init__(name)
        self.weight = Parameter(weight)
        self.bias = Parameter(bias) if bias is not None else None
        self.stride, self.padding, self.output_padding = stride, padding, output_padding

    parameters = Conv2d.parameters

    def forward(self, x):
        bias = self.bias.data if self.bias is not None else None
        out, self.cache = conv_transpose2d_forward(
            x, self.weight.data, bias, self.stride, self.padding, self.output_padding, self.name)
        return out

    def backward(self, dout, input_grad=True):
        """As :meth:`Conv2d.backward`: frozen upsamplers compute no weight gradient."""
        dx, dweight, dbias = conv_transpose2d_backward(dout, self.backward_check(), input_grad,
                                                       self.weight.requires_grad, self.name)
        _store(self.weight, dweight)
        _store(self.bias, dbias)
        return dx


class MaxPool2d(Layer):
    """Max-pooling layer (``ceil_mode=True`` is FCN's)."""

    def __init__(self, name, kernel_size, stride=None, padding=0, ceil_mode=False):
        super().__init__(name)
        self.kernel_size, self.stride = kernel_size, stride
        self.padding, self.ceil_mode = padding, ceil_mode

    frozen = None

    def forward(self, x):
        if self.frozen is not None:
            return max_pool2d_pinned(x, self.frozen)
        out, self.cache = max_pool2d_forward(
            x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.name)
        return out

    def freeze(self, frozen=True):
        """Pin the winners of the last forward: later forwards read those pixels (for
        gradient checks: the pooled value then moves smoothly with its winner)."""
        self.frozen = self.backward_check() if frozen else None

    def backward(self, dout):
        return max_pool2d_backward(dout, self.backward_check(), self.name)


class ReLU(Layer):
    """``max(x, 0)``. ``freeze()`` pins the mask of the last forward (for gradient checks).

    ``inplace=True`` overwrites the input: FCN's models use it after every convolution,
    whose output nothing else reads (the convolution caches its *input*).
    """

    frozen = None

    def __init__(self, name, inplace=False):
        super().__init__(name)
        self.inplace = inplace

    def forward(self, x):
        if self.frozen is not None:
            return x * self.frozen
        out, self.cache = relu_forward(x, self.inplace, mask=self.keep_cache, name=self.name)
        return out

    def freeze(self, frozen=True):
        self.frozen = self.backward_check() if frozen else None

    def backward(self, dout):
        # in place only when the forward was: then the gradient buffer is the network's own
        return relu_backward(dout, self.backward_check(), self.inplace, self.name)


class Dropout(Layer):
    """Inverted dropout; identity in eval mode. ``seed`` makes the masks reproducible."""

    def __init__(self, name, p=0.5, seed=0):
        super().__init__(name)
        self.p = p
        self.seed = seed
        self.rng = None

    def forward(self, x):
        if self.training and self.p > 0:
            xp = get_array_module(x)
            if self.rng is None or (xp is not np) != _is_cupy_rng(self.rng):
                self.rng = xp.random.default_rng(self.seed)
        out, self.cache = dropout_forward(x, self.p, self.training, self.rng, self.name)
        self.cache = ("mask", self.cache)  # wrapped so that "no mask" is not "no forward"
        return out

    def backward(self, dout):
        return dropout_backward(dout, self.backward_check()[1], self.name)


class Crop(Layer):
    """Crop to a reference size at a fixed top-left offset."""

    def __init__(self, name, offset):
        super().__init__(name)
        self.offset = offset

    def forward(self, x, size):
        out, self.cache = crop_forward(x, self.offset, size, self.name)
        return out

    def backward(self, dout):
        return crop_backward(dout, self.backward_check(), self.name)


class Scale(Layer):
    """Multiply by a fixed factor (the at-once FCN-8s skip scales)."""

    def __init__(self, name, factor):
        super().__init__(name)
        self.factor = factor

    def forward(self, x):
        out, self.cache = scale_forward(x, self.factor)
        return out

    def backward(self, dout):
        return scale_backward(dout, self.backward_check())


def _is_cupy_rng(rng):
    return type(rng).__module__.split(".")[0] == "cupy"


def _store(param, grad):
    """Write a gradient into a parameter unless it is absent or frozen."""
    if param is not None and param.requires_grad:
        param.grad = grad
