"""Pictures: matplotlib figures and Pillow animations, always on host (NumPy) arrays.

One module per topic, so that plots of other parts of minifcn sit beside these:

- :mod:`minifcn.viz.conv_figures`: the matrix ``C`` and ``C^T``, the zero-insertion reading,
  "transpose is not inverse", the bilinear kernel.
- :mod:`minifcn.viz.conv_animations`: GIFs of a convolution and a transposed convolution.

Nothing here selects a global matplotlib backend: figures are :class:`matplotlib.figure.Figure`
objects saved straight to files.
"""
from .conv_animations import conv2d_animation, conv_transpose2d_animation
from .conv_figures import (bilinear_figure, bilinear_upsample, conv_matrix_figure, demo_picture,
                           not_inverse_figure, zero_insertion_figure)

__all__ = ["bilinear_figure", "bilinear_upsample", "conv2d_animation", "conv_matrix_figure",
           "conv_transpose2d_animation", "demo_picture", "not_inverse_figure",
           "zero_insertion_figure"]
