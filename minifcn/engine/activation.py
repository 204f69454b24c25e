"""ReLU in place and on every core: the engine's version of :mod:`minifcn.ops.activation`.

The same output and the same mask as the book's ``relu_forward(x)`` (tested equal in
``tests/test_engine_equivalence.py``); keyword-only options let a caller that knows more
save memory traffic: ``inplace=True`` overwrites ``x`` (FCN's ReLUs follow a convolution
whose output nothing else reads), ``mask=False`` skips the mask when no backward follows
(``FCN.inference()``). Dropout is the book's (:func:`minifcn.ops.activation.dropout_forward`).
"""
from __future__ import annotations

from ..backend import get_array_module
from ..ops._util import check_float, check_grad
from .threads import split_work


def relu_forward(x, name="relu", *, inplace=False, mask=True):
    """Replaces :func:`minifcn.ops.activation.relu_forward`.

    Parameters
    ----------
    x : array, any shape
    name : str
        Layer name used in error messages.
    inplace : bool
        Overwrite ``x`` with the result (saves a fresh array as large as ``x``; safe when
        nothing else reads ``x`` afterwards).
    mask : bool
        ``False`` skips the mask (one pass less over memory) when no backward will follow.

    Returns
    -------
    out : array, same shape as ``x`` (``x`` itself when ``inplace``)
    cache : array of bool, the mask ``x > 0``; None with ``mask=False``

    Notes
    -----
    Why: a fresh 125 MB output is faulted in page by page. What it buys (``docs/performance.md``,
    item 5): ``relu1_1`` at 500x500, two threads, 0.21 to 0.02 s in place; ``maximum(x, 0)``
    instead of ``x * (x > 0)``, 17.5 to 13.3 ms on a 64x422x422 map; channels split among
    threads (item 6).
    """
    check_float(x, name, "input")
    xp = get_array_module(x)
    if x.ndim < 2:
        gate = x > 0 if mask else None
        return xp.maximum(x, x.dtype.type(0), out=x if inplace else None), gate
    out = x if inplace else xp.empty_like(x)
    gate = xp.empty(x.shape, dtype=bool) if mask else None

    def relu(c0, c1):  # channels c0:c1 (the channels are split among CPU threads)
        if mask:
            xp.greater(x[:, c0:c1], 0, out=gate[:, c0:c1])  # before x may be overwritten
        xp.maximum(x[:, c0:c1], x.dtype.type(0), out=out[:, c0:c1])

    split_work(relu, x.shape[1], x.nbytes, xp)
    return out, gate


def relu_backward(dout, cache, name="relu", *, inplace=False):
    """Replaces :func:`minifcn.ops.activation.relu_backward`: ``dx = dout * (x > 0)``.

    ``inplace=True`` writes ``dx`` over ``dout`` (fresh memory is costly at FCN's sizes: a
    first touch of 125 MB took 0.3 s on the benchmark machine).
    """
    if cache is None:
        raise ValueError(f"{name}: no mask to go back through (the forward ran with mask=False)")
    check_grad(dout, cache.shape, name)
    xp = get_array_module(dout)
    if dout.ndim < 2:
        return xp.multiply(dout, cache, out=dout if inplace else None)
    dx = dout if inplace else xp.empty_like(dout)

    def gate(c0, c1):
        xp.multiply(dout[:, c0:c1], cache[:, c0:c1], out=dx[:, c0:c1])

    split_work(gate, dout.shape[1], dout.nbytes, xp)
    return dx
