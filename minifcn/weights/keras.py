"""Read Keras' VGG16 ``.h5`` weight files into a minifcn state dict (needs ``h5py``).

Layout of ``vgg16_weights_tf_dim_ordering_tf_kernels{,_notop}.h5``: the root attribute
``layer_names`` lists the layers in order; each layer is a group (``block1_conv1`` ...
``block5_conv3``, then ``fc1``, ``fc2``, ``predictions`` unless the file is ``_notop``) whose
attribute ``weight_names`` names its datasets, ``<layer>_W_1:0`` (kernel) and
``<layer>_b_1:0`` (bias). Files saved by newer Keras name them ``<layer>/kernel:0``; both are
looked up the same way. A whole saved model keeps the same tree under ``model_weights``.

Keras' layouts are channels-last:

* conv kernel ``(kh, kw, in, out)`` (HWIO) -> transpose to ``(out, in, kh, kw)``;
* dense kernel ``(in, out)``, the transpose of PyTorch's;
* fc1 reads the flattened ``(7, 7, 512)`` pool5 map in channels-LAST order, so its kernel
  ``(25088, 4096)`` reshapes to ``(7, 7, 512, 4096)`` before becoming ``(4096, 512, 7, 7)``.
  Reshaping it straight to ``(4096, 512, 7, 7)`` (as for Caffe or torchvision) would give a
  file of the right shape and the wrong numbers.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import MinifcnError, one_line
from .hdf5_checks import HDF5Checks
from .layout import FC6_KERNEL, WeightFileError


def _import_h5py():
    try:
        import h5py  # noqa: PLC0415 - optional dependency, imported only when needed
    except ImportError:
        raise ImportError("reading Keras .h5 files needs h5py: pip install h5py "
                          "(or pip install 'minifcn[weights]')") from None
    return h5py


# What h5py raises for a file HDF5 cannot make sense of (corrupt, truncated, crafted).
_H5PY_ERRORS = (OSError, KeyError, TypeError, ValueError, RuntimeError, IndexError,
                OverflowError)


def read_keras_h5(path) -> dict:
    """Every layer of a Keras weight file that has weights.

    Nothing the file says is trusted before it is checked (see :mod:`.hdf5_checks`): links
    must be plain hard links inside the file, datasets plain numbers stored in the file.

    Returns
    -------
    dict of str -> list of ndarray
        Layer name -> its weights in file order (kernel, then bias), in Keras layouts.

    Raises
    ------
    WeightFileError
        If the file is not a readable HDF5 file, or holds links, external or virtual
        data, or datasets that are not plain numbers; the message names the file (and the
        dataset or link).
    """
    h5py = _import_h5py()
    path = Path(path)
    checks = HDF5Checks(h5py, path)
    try:
        with h5py.File(path, "r") as f:
            whole_model = f.get("model_weights", getlink=True) is not None
            root = checks.child(f, "model_weights") if whole_model else f
            layers = {}
            for layer in checks.string_list(root, "layer_names") or list(root.keys()):
                group = checks.child(root, layer)
                if not isinstance(group, h5py.Group):
                    raise WeightFileError(f"{path.name}: layer {layer} is not an HDF5 group")
                # no attribute: take the datasets found inside (kernel and bias by rank)
                names = checks.string_list(group, "weight_names") or checks.dataset_names(group)
                weights = [checks.read(checks.child(group, n)) for n in names]
                if weights:
                    layers[layer] = weights
    except MinifcnError:
        raise
    except _H5PY_ERRORS as exc:
        raise WeightFileError(f"{path.name}: not a readable Keras HDF5 weight file "
                              f"({one_line(exc)})") from None
    if not layers:
        raise WeightFileError(f"{path.name}: no layers with weights in this HDF5 file")
    return layers


def _kernel_and_bias(weights, layer, src):
    """Split a layer's weights by rank: the 1-D one is the bias."""
    kernels = [w for w in weights if w.ndim > 1]
    biases = [w for w in weights if w.ndim == 1]
    if len(kernels) != 1 or len(biases) > 1:
        raise WeightFileError(f"{src}: layer {layer} has weights of shapes "
                              f"{[w.shape for w in weights]}; expected a kernel and a bias")
    return kernels[0], (biases[0] if biases else None)


def keras_state_dict(layers: dict, src="keras") -> dict:
    """Map Keras VGG16 layers to minifcn keys and layouts.

    Returns
    -------
    dict of str -> ndarray
        ``conv1_1.weight`` (64, 3, 3, 3) ... and, unless the file is ``_notop``,
        ``fc6.weight`` (4096, 512, 7, 7), ``fc7``, ``fc8``.
    """
    arrays, unknown = {}, []
    pool5_channels = None
    for layer, weights in layers.items():
        kernel, bias = _kernel_and_bias(weights, layer, src)
        block_conv = re.fullmatch(r"block(\d)_conv(\d)", layer)
        if block_conv:                                       # block{b}_conv{i} -> conv{b}_{i}
            b, i = block_conv.groups()
            if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
                raise WeightFileError(
                    f"{src}: {layer} kernel has shape {kernel.shape}; expected (3, 3, in, out). "
                    "Only channels-last ('tf_dim_ordering') files are supported")
            name = f"conv{b}_{i}"
            weight = kernel.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
            pool5_channels = kernel.shape[3] if name == "conv5_3" else pool5_channels
        elif layer in ("fc1", "fc2", "predictions") and kernel.ndim == 2:
            name = {"fc1": "fc6", "fc2": "fc7", "predictions": "fc8"}[layer]
            if layer == "fc1":
                weight = _fc1_to_conv(kernel, pool5_channels, src)
            else:
                weight = kernel.T[:, :, None, None]           # (in, out) -> (out, in, 1, 1)
        else:
            unknown.append(layer)
            continue
        arrays[f"{name}.weight"] = weight
        if bias is not None:
            arrays[f"{name}.bias"] = bias
    if unknown:
        raise WeightFileError(f"{src}: layers that VGG16 does not have: {', '.join(unknown)}")
    return arrays


def _fc1_to_conv(kernel, channels, src):
    """fc1 kernel (7*7*C, F), input flattened as (7, 7, C) -> conv weight (F, C, 7, 7)."""
    if channels is None:
        raise WeightFileError(f"{src}: fc1 found but no block5_conv3 to tell pool5's channels")
    k = FC6_KERNEL
    if kernel.shape[0] != k * k * channels:
        raise WeightFileError(f"{src}: fc1 kernel has shape {kernel.shape}; expected "
                              f"({k * k * channels}, out) = 7 x 7 x {channels} inputs")
    kernel = kernel.reshape(k, k, channels, kernel.shape[1])  # (7*7*C, F) -> (7, 7, C, F)
    return kernel.transpose(3, 2, 0, 1)                        # -> (F, C, 7, 7)
