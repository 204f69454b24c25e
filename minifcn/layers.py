"""Layer objects: parameters, their gradients and the forward cache, around the pure ops.

Each layer holds its :class:`Parameter` objects (``.data`` and ``.grad`` arrays), remembers
what its backward needs from the last forward, and offers ``forward(x)`` / ``backward(dout)``.
The networks in :mod:`minifcn.models` are wired from these.

Every layer is built with the op set it runs, ``ops="book"`` (the default: the textbook ops
of :mod:`minifcn.ops`, what a learner steps through) or ``ops="engine"`` (:mod:`minifcn.engine`:
the same names and results, fast; what the ``minifcn`` command and the trainer run), and
calls its ops through ``self.ops``. :meth:`Layer.routes` says which functions its forward
and backward hand their work to under either set.

What the caches hold decides a network's memory. The book's caches are the textbook's (a
convolution its columns, a max-pool its argmax). The engine's keep as little as the backward
needs: a convolution keeps a reference to its input (the blob the previous layer made anyway;
its columns are recomputed in backward), a ReLU its mask as booleans, a max-pool references to
its input and output (its backward finds the winners from them). Every layer caches in eval
mode too, so that a backward may follow any forward (as in the parity tests); for FCN-8s at
500x500 on the engine that costs about 0.7 GB on top of the 0.54 GB of weights (numbers in
docs/performance.md). A layer whose ``keep_cache`` is False (set for a whole network by
:meth:`minifcn.models.fcn.FCN.inference`) drops its cache as soon as its forward returns.
"""
from __future__ import annotations

import numpy as np

from . import engine
from . import ops as book
from .backend import get_array_module

OP_SETS = {"book": book, "engine": engine}


def op_set(name):
    """The module of ops that ``name`` picks: ``"book"`` (:mod:`minifcn.ops`) or ``"engine"``
    (:mod:`minifcn.engine`)."""
    if name not in OP_SETS:
        raise ValueError(f"ops must be 'book' (minifcn.ops) or 'engine' (minifcn.engine), "
                         f"got {name!r}")
    return OP_SETS[name]


class Parameter:
    """A learnable array and its gradient.

    Attributes
    ----------
    data : array
    grad : array or None
        Filled (overwritten) by the owning layer's ``backward``; None from the start of a
        backward until it returns, and after a backward that failed.
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

    op_names = ()  # the op set's (forward, backward) functions this layer calls

    def __init__(self, name, ops="book"):
        self.name = name
        self.ops = op_set(ops)
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

    def routes(self, ops=None):
        """The functions this layer's forward and backward hand their work to.

        An op that chooses among routes by the layer's weight and geometry carries that
        choice as ``op.route(weight, stride, padding)`` (the engine's convolutions); the
        answer is the op set's own decision, not a table kept beside it.

        Parameters
        ----------
        ops : {"book", "engine"}, optional
            The op set to ask; default the layer's own.

        Returns
        -------
        forward, backward : function
        """
        module = self.ops if ops is None else op_set(ops)
        args = self.route_args()
        return tuple(_follow(getattr(module, name), args) for name in self.op_names)

    def route_args(self):
        """What an op's ``route`` needs to choose: ``(weight, stride, padding)``, or nothing."""
        return ()

    def blank(self, constant):
        """This layer's output, per channel, where its whole window reads ``constant``
        (shape (C,)): the blank-image response that the engine's trunk does not recompute
        (:mod:`minifcn.engine.border`). The constant itself, unless the layer says otherwise."""
        return constant

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

    op_names = ("conv2d_forward", "conv2d_backward")

    def __init__(self, name, weight, bias=None, stride=1, padding=0, ops="book"):
        super().__init__(name, ops)
        self.weight = Parameter(weight)
        self.bias = Parameter(bias) if bias is not None else None
        self.stride, self.padding = stride, padding

    def parameters(self):
        params = {"weight": self.weight}
        if self.bias is not None:
            params["bias"] = self.bias
        return params

    def route_args(self):
        return self.weight.data, self.stride, self.padding

    def blank(self, constant):
        """``bias + (weight summed over its taps) @ constant``: every tap reads ``constant``."""
        out = self.weight.data.sum(axis=(2, 3)) @ constant  # (C_out, C_in) @ (C_in,)
        return out if self.bias is None else out + self.bias.data

    def forward(self, x, border=None):
        """``border`` (FCN's trunk on the engine): a :class:`minifcn.engine.border.ConvBorder`,
        the blank-image constant of this call, so that only what the image reaches is
        computed. The book is never given one."""
        bias = self.bias.data if self.bias is not None else None
        args = (x, self.weight.data, bias, self.stride, self.padding, self.name)
        if border is None:
            out, self.cache = self.ops.conv2d_forward(*args)
        else:
            out, self.cache = self.ops.conv2d_forward(*args, border=border)
        return out

    def backward(self, dout, input_grad=True):
        """``input_grad=False`` (a net's first layer) skips the gradient of the input and
        returns None; ``"box"`` (the engine, FCN's trunk in training) wants it exact only
        on the input's box and frames (:func:`minifcn.engine.conv.conv2d_backward`); a frozen
        weight's gradient is never computed. The last backward's gradients are dropped first
        (:func:`_release`)."""
        cache = self.backward_check()
        _release(self.weight, self.bias)
        dx, dweight, dbias = self.ops.conv2d_backward(dout, cache, input_grad,
                                                      self.weight.requires_grad, self.name)
        _store(self.weight, dweight)
        _store(self.bias, dbias)
        return dx


class ConvTranspose2d(Layer):
    """Transposed-convolution layer: weight (C_in, C_out, kh, kw), optional bias (C_out,)."""

    op_names = ("conv_transpose2d_forward", "conv_transpose2d_backward")

    def __init__(self, name, weight, bias=None, stride=1, padding=0, output_padding=0, ops="book"):
        super().__init__(name, ops)
        self.weight = Parameter(weight)
        self.bias = Parameter(bias) if bias is not None else None
        self.stride, self.padding, self.output_padding = stride, padding, output_padding

    parameters = Conv2d.parameters
    route_args = Conv2d.route_args

    def forward(self, x):
        bias = self.bias.data if self.bias is not None else None
        out, self.cache = self.ops.conv_transpose2d_forward(
            x, self.weight.data, bias, self.stride, self.padding, self.output_padding, self.name)
        return out

    def backward(self, dout, input_grad=True):
        """As :meth:`Conv2d.backward`: frozen upsamplers compute no weight gradient."""
        cache = self.backward_check()
        _release(self.weight, self.bias)
        dx, dweight, dbias = self.ops.conv_transpose2d_backward(
            dout, cache, input_grad, self.weight.requires_grad, self.name)
        _store(self.weight, dweight)
        _store(self.bias, dbias)
        return dx


class MaxPool2d(Layer):
    """Max-pooling layer (``ceil_mode=True`` is FCN's)."""

    op_names = ("max_pool2d_forward", "max_pool2d_backward")

    def __init__(self, name, kernel_size, stride=None, padding=0, ceil_mode=False, ops="book"):
        super().__init__(name, ops)
        self.kernel_size, self.stride = kernel_size, stride
        self.padding, self.ceil_mode = padding, ceil_mode

    def forward(self, x):
        out, self.cache = self.ops.max_pool2d_forward(
            x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.name)
        return out

    def backward(self, dout):
        return self.ops.max_pool2d_backward(dout, self.backward_check(), self.name)


class ReLU(Layer):
    """``max(x, 0)``.

    ``inplace=True`` lets the engine overwrite the input: FCN's models ask for it after every
    convolution, whose output nothing else reads. The engine then also skips the mask when no
    backward can follow (``keep_cache`` False). The book's ReLU is the plain one: a new
    array and its mask, every time.
    """

    op_names = ("relu_forward", "relu_backward")

    def __init__(self, name, inplace=False, ops="book"):
        super().__init__(name, ops)
        self.inplace = inplace

    def blank(self, constant):
        return get_array_module(constant).maximum(constant, 0)

    def forward(self, x):
        if self.ops is engine:  # keyword-only options that only the engine's ReLU takes
            out, self.cache = engine.relu_forward(x, self.name, inplace=self.inplace,
                                                  mask=self.keep_cache)
        else:
            out, self.cache = self.ops.relu_forward(x, self.name)
        return out

    def backward(self, dout):
        if self.ops is engine:
            # in place only when the forward was: then the gradient buffer is the network's own
            return engine.relu_backward(dout, self.backward_check(), self.name,
                                        inplace=self.inplace)
        return self.ops.relu_backward(dout, self.backward_check(), self.name)


class Dropout(Layer):
    """Inverted dropout; identity in eval mode. ``seed`` makes the masks reproducible."""

    op_names = ("dropout_forward", "dropout_backward")

    def __init__(self, name, p=0.5, seed=0, ops="book"):
        super().__init__(name, ops)
        self.p = p
        self.seed = seed
        self.rng = None

    def forward(self, x):
        if self.training and self.p > 0:
            xp = get_array_module(x)
            if self.rng is None or (xp is not np) != _is_cupy_rng(self.rng):
                self.rng = xp.random.default_rng(self.seed)
        out, self.cache = self.ops.dropout_forward(x, self.p, self.training, self.rng, self.name)
        self.cache = ("mask", self.cache)  # wrapped so that "no mask" is not "no forward"
        return out

    def reseed(self, seed=None):
        """Draw the next masks afresh from ``seed`` (None: the layer's own seed).

        The masks of the following forwards then depend on the seed alone, not on how many
        forwards came before: a resumed run, or a repeated forward in a gradient check,
        draws the same masks again.
        """
        if seed is not None:
            self.seed = int(seed)
        self.rng = None  # made from self.seed by the next forward, on the input's device

    def backward(self, dout):
        return self.ops.dropout_backward(dout, self.backward_check()[1], self.name)


class Crop(Layer):
    """Crop to a reference size at a fixed top-left offset."""

    op_names = ("crop_forward", "crop_backward")

    def __init__(self, name, offset, ops="book"):
        super().__init__(name, ops)
        self.offset = offset

    def forward(self, x, size):
        out, self.cache = self.ops.crop_forward(x, self.offset, size, self.name)
        return out

    def backward(self, dout):
        return self.ops.crop_backward(dout, self.backward_check(), self.name)


class Scale(Layer):
    """Multiply by a fixed factor (the at-once FCN-8s skip scales)."""

    op_names = ("scale_forward", "scale_backward")

    def __init__(self, name, factor, ops="book"):
        super().__init__(name, ops)
        self.factor = factor

    def forward(self, x):
        out, self.cache = self.ops.scale_forward(x, self.factor)
        return out

    def backward(self, dout):
        return self.ops.scale_backward(dout, self.backward_check())


def _follow(op, args):
    """The function ``op`` hands its work to for these arguments: ``op.route(*args)`` where
    the op chooses, else ``op`` itself."""
    route = getattr(op, "route", None)
    return op if route is None else route(*args)


def _is_cupy_rng(rng):
    return type(rng).__module__.split(".")[0] == "cupy"


def _release(*params):
    """Drop the gradients of the last backward before computing new ones, so that the two never
    take memory together: FCN's ``fc6`` gradient is 411 MB, and a training pass at 500x500
    peaked in ``fc6``'s backward while it held both (2.57 GB; 2.46 GB with this and the box
    input gradient's sums, ``docs/performance.md``, *The training peak*)."""
    for param in params:
        if param is not None:
            param.grad = None


def _store(param, grad):
    """Write a gradient into a parameter unless it is absent or frozen."""
    if param is not None and param.requires_grad:
        param.grad = grad
