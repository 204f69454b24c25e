"""FCN-32s, FCN-16s, FCN-8s (and the at-once FCN-8s), as the reference release defines them."""
from .coords import CoordMap, coordinate_maps, crop_offsets, receptive_fields
from .fcn import FCN, MODELS, FCN8s, FCN8sAtOnce, FCN16s, FCN32s
from .io import load_model, save_model
from .spec import VARIANTS, LayerSpec, network_specs

__all__ = ["FCN", "FCN32s", "FCN16s", "FCN8s", "FCN8sAtOnce", "MODELS", "VARIANTS", "LayerSpec",
           "network_specs", "CoordMap", "coordinate_maps", "crop_offsets", "receptive_fields",
           "load_model", "save_model"]
