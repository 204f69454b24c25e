"""minifcn: FCN-8s semantic segmentation written by hand in NumPy/CuPy.

Every layer has its forward and backward pass written out (:mod:`minifcn.ops`), checked
against a naive loop twin and numerical gradients (:mod:`minifcn.gradcheck`), and assembled
into FCN-32s, FCN-16s and FCN-8s as the reference release defines them.
"""
__version__ = "0.1.0"

from .models import FCN8s, FCN8sAtOnce, FCN16s, FCN32s, load_model, save_model  # noqa: E402

__all__ = ["FCN32s", "FCN16s", "FCN8s", "FCN8sAtOnce", "load_model", "save_model", "__version__"]
