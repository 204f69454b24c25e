"""The worker's side of :mod:`minifcn.train.processes`: one process that computes a share of
every batch for a trainer in another process.

A worker is a fresh interpreter started by the trainer (``processes.BOOT``). It inherits one
end of a socket pair and the descriptors of two shared blocks (the weights, and its own
gradients), receives its setup over the socket, builds the model on the shared weights, and
then answers each ``("step", i)`` with the loss and pixel counts of its share of batch ``i``,
its gradients copied into its block.
"""
from __future__ import annotations

import signal
import traceback
import warnings
from multiprocessing.connection import Connection

import numpy as np

from ..engine.memory import cpu_threads, keep_freed_memory
from .config import TrainConfig
from .processes import SharedArrays, share_pass, shares
from .sources import make_source
from .trainer import network_for_config


def main(fd):
    """Serve the trainer at the other end of socket ``fd`` until it says stop or goes away.

    A worker lives as long as its trainer's connection: it ends when told to stop, or when the
    connection closes because the trainer has gone, however that happened. Ctrl-C and SIGTERM
    (which a terminal or a container stop may send to every process of the group) are the
    trainer's to handle: it finishes the iteration, saves and stops its workers. So a worker
    ignores both, and the share it is computing is finished for that last iteration.
    """
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    # overflow in a diverging run is the trainer's guard's to report, in one line
    warnings.simplefilter("ignore", RuntimeWarning)
    keep_freed_memory()  # as the minifcn command does in the trainer's process
    connection = Connection(fd)
    try:
        _, setup = connection.recv()
        with cpu_threads(setup["threads"]):  # this process's share of the cores
            _serve(connection, **setup)
    except (EOFError, OSError):
        return  # the trainer has gone


def _serve(connection, config, preprocessing, index, names, trained, weights, grads, threads):
    """Build the model on the shared weights, say ready, then answer steps until told to stop."""
    try:
        config = TrainConfig.from_dict(config)
        source = make_source(config)
        model, params = _model_on(SharedArrays(*weights), config, source.num_classes, preprocessing,
                                  names, trained)
        grad_views = SharedArrays(*grads).arrays
        share = shares(config.batch_size, config.processes)[index]
    except Exception:
        connection.send(("error", traceback.format_exc()))
        return
    connection.send(("ready",))
    while True:
        message = connection.recv()
        if message[0] != "step":
            return
        iteration = message[1]
        try:
            answer = share_pass(model, source, iteration, share, (config.seed, iteration, index))
            for p, view in zip(params, grad_views):
                if p.grad is None:
                    view[...] = 0
                else:
                    np.copyto(view, p.grad)
        except Exception:
            connection.send(("error", traceback.format_exc()))
        else:
            connection.send(("done", *answer))


def _model_on(weights, config, num_classes, preprocessing, names, trained):
    """The network of ``config`` with its parameters views of the shared ``weights`` (named
    ``names``, in order), and its parameters named ``trained``, whose gradients go back."""
    model = network_for_config(config, num_classes).train()
    model.preprocessing = preprocessing
    own = dict(model.named_parameters())
    if list(own) != list(names):
        raise RuntimeError(f"the worker's model has parameters {list(own)}, "
                           f"the trainer's {list(names)}")
    for name, view in zip(names, weights.arrays):
        if own[name].shape != view.shape:
            raise RuntimeError(f"{name}: the worker's shape {own[name].shape}, "
                               f"the trainer's {view.shape}")
        own[name].data = view
    return model, [own[n] for n in trained]
