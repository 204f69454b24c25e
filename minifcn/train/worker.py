"""The worker's side of :mod:`minifcn.train.processes`: one process that computes a share of
every batch for a trainer in another process.

A worker is a fresh interpreter started by the trainer (``processes.BOOT``). It inherits one
end of a socket pair and the descriptors of two shared blocks (the weights, and its own
gradients), receives its setup over the socket, builds the model on the shared weights, and
then answers each ``("step", i)`` with the loss and pixel counts of its share of batch ``i``,
its gradients copied into its block.
"""
from __future__ import annotations

import os
import signal
import traceback
import warnings
from multiprocessing.connection import Connection

import numpy as np

from .processes import SharedArrays, share_pass, shares


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
    connection = Connection(fd)
    try:
        try:
            _, setup = connection.recv()
            model, source, grad_views, params = _build(**setup)
            share = shares(source.batch_size, setup["config"]["processes"])[setup["index"]]
            seed, index = setup["config"]["seed"], setup["index"]
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
                answer = share_pass(model, source, iteration, share, (seed, iteration, index))
                for p, view in zip(params, grad_views):
                    if p.grad is None:
                        view[...] = 0
                    else:
                        np.copyto(view, p.grad)
            except Exception:
                connection.send(("error", traceback.format_exc()))
            else:
                connection.send(("done", *answer))
    except (EOFError, OSError):
        return  # the trainer has gone


def _build(config, preprocessing, index, names, trained, weights, grads, threads):
    """The worker's model (its parameters views of the shared weights), its data source, and
    the views its gradients go to, in the order of ``trained``."""
    from ..engine.memory import keep_freed_memory
    from ..models import MODELS
    from .config import TrainConfig
    from .sources import make_source

    keep_freed_memory()
    if threads:
        from threadpoolctl import threadpool_limits

        os.environ["MINIFCN_NUM_THREADS"] = str(threads)  # the engine's element-wise threads
        threadpool_limits(limits=threads, user_api="blas")
    config = TrainConfig.from_dict(config)
    source = make_source(config)
    model = MODELS[config.variant](source.num_classes, config.width, pad=config.pad,
                                   dropout=config.dropout, learn_upsampling=config.learn_upsampling,
                                   seed=config.seed, ops="engine").train()
    model.preprocessing = preprocessing
    own = dict(model.named_parameters())
    if list(own) != list(names):
        raise RuntimeError(f"the worker's model has parameters {list(own)}, "
                           f"the trainer's {list(names)}")
    for name, view in zip(names, SharedArrays(*weights).arrays):
        if own[name].shape != view.shape:
            raise RuntimeError(f"{name}: the worker's shape {own[name].shape}, "
                               f"the trainer's {view.shape}")
        own[name].data = view
    return model, source, SharedArrays(*grads).arrays, [own[n] for n in trained]
