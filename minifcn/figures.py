"""``minifcn figures``: regenerate the pictures of the documentation from the real ops.

::

    minifcn figures                  # writes docs/figures/*.png, *.gif
    minifcn figures --out /tmp/figs

Every picture is computed, none is drawn by hand: the numbers in the cells come from
:mod:`minifcn.ops`, the predictions from the checkpoints shipped in ``minifcn/assets``, so
the figures cannot drift from the code.
"""
from __future__ import annotations

import importlib
from pathlib import Path

DEFAULT_OUT = Path("docs") / "figures"

# file name -> (function of minifcn.viz, keyword arguments); referenced by
# docs/transposed-convolution.md and docs/checkerboard.md. Named, not imported: matplotlib takes
# most of a second to import, and every other command of the CLI would pay it at start-up.
FIGURES = {
    "conv_matrix.png": ("conv_matrix_figure", {}),
    "receptive_field.png": ("receptive_field_figure", {}),
    "conv2d_k3_s1_p0.gif": ("conv2d_animation", {}),
    "conv_transpose2d_k3_s1_p0.gif": ("conv_transpose2d_animation", {}),
    "conv2d_k3_s2_p1.gif": ("conv2d_animation", {"input_hw": (5, 5), "stride": 2, "padding": 1}),
    "conv_transpose2d_k3_s2_p1.gif": ("conv_transpose2d_animation",
                                      {"input_hw": (3, 3), "stride": 2, "padding": 1}),
    "zero_insertion.png": ("zero_insertion_figure", {}),
    "not_inverse.png": ("not_inverse_figure", {}),
    "bilinear.png": ("bilinear_figure", {}),
    "checkerboard.png": ("checkerboard_figure", {}),
    # the shipped skips-* checkpoints on held-out images; docs/experiments.md, notebook 06
    "skips.png": ("skip_comparison_figure", {}),
}


def make_figures(out_dir=DEFAULT_OUT, names=None):
    """Write the figures into ``out_dir`` (created if missing).

    Parameters
    ----------
    out_dir : str or Path
    names : iterable of str, optional
        A subset of :data:`FIGURES`' file names; all of them by default.

    Returns
    -------
    paths : list of Path
        The files written, in :data:`FIGURES` order.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    wanted = list(FIGURES) if names is None else list(names)
    unknown = sorted(set(wanted) - set(FIGURES))
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; known: {sorted(FIGURES)}")
    viz = importlib.import_module("minifcn.viz")
    return [Path(getattr(viz, function)(out_dir / name, **kwargs))
            for name, (function, kwargs) in FIGURES.items() if name in wanted]


def run_figures(args):
    """Entry point of ``minifcn figures``; returns the exit status (errors go to
    :func:`minifcn.cli.main`, which prints them)."""
    paths = make_figures(args.out, args.only or None)
    if not args.only:  # the concept pages' figures live in a sub-folder of their own
        from .viz import make_concept_figures

        paths += make_concept_figures(Path(args.out) / "concepts")
    for path in paths:
        print(f"{path}  ({path.stat().st_size / 1024:.0f} KB)")
    return 0


def add_figures_parser(subparsers):
    """Add the ``figures`` command to an ``argparse`` sub-parser set; sets ``func``."""
    parser = subparsers.add_parser(
        "figures", help="regenerate the documentation's figures",
        description="Draw the documentation's figures and animations from the real ops: "
                    "transposed convolution into OUT, the concept pages' figures into OUT/concepts.")
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(FIGURES),
                        help="write only these files")
    parser.set_defaults(func=run_figures)
    return parser
