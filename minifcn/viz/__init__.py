"""Pictures: matplotlib figures and Pillow animations, always on host (NumPy) arrays.

One module per topic, so that plots of other parts of minifcn sit beside these:

- :mod:`minifcn.viz.conv_figures`: the matrix ``C`` and ``C^T``, the zero-insertion reading,
  "transpose is not inverse", the bilinear kernel.
- :mod:`minifcn.viz.conv_animations`: GIFs of a convolution and a transposed convolution.
- :mod:`minifcn.viz.checkerboard`: uneven overlap of a transposed convolution, measured and drawn.
- :mod:`minifcn.viz.concept_figures`: the concept pages' figures (im2col, pooling, 1x1
  convolution, crops and skips, the loss, the metrics).
- :mod:`minifcn.viz.net_figures`: the whole network: its crops at any input size, and what a
  unit of it sees (its receptive field, theoretical and effective).
- :mod:`minifcn.viz.skip_figures`: FCN-32s, FCN-16s and FCN-8s side by side, boundary
  errors painted, with the coarse ``score_fr`` map each starts from.

Nothing here selects a global matplotlib backend: figures are :class:`matplotlib.figure.Figure`
objects saved straight to files.
"""
from .checkerboard import checkerboard_figure, constant_response_figure
from .concept_figures import CONCEPT_FIGURES, make_concept_figures
from .conv_animations import conv2d_animation, conv_transpose2d_animation
from .conv_figures import (bilinear_figure, bilinear_upsample, conv_matrix_figure, demo_picture,
                           not_inverse_figure, zero_insertion_figure)
from .net_figures import receptive_field_figure
from .skip_figures import error_picture, skip_comparison_figure, skip_figure

__all__ = ["CONCEPT_FIGURES", "make_concept_figures", "bilinear_figure", "bilinear_upsample",
           "checkerboard_figure", "constant_response_figure", "conv2d_animation",
           "conv_matrix_figure", "conv_transpose2d_animation", "demo_picture", "error_picture",
           "not_inverse_figure", "receptive_field_figure", "skip_comparison_figure", "skip_figure",
           "zero_insertion_figure"]
