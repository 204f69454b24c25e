"""``minifcn predict``: segment image files, write a colour mask and an overlay for each."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..data.imagefile import read_image
from ..data.palette import overlay, save_palette_png
from ..errors import UsageError
from ..models.fcn import ImageTooSmallError
from ..models.segment import segment
from ..npzio import atomic_write


def output_names(paths):
    """The name each input's results are written under: its file name without the extension,
    made unique.

    Inputs are taken in the order given. Each keeps its own name unless an earlier input
    already has it (``a/cat.png b/cat.png``, or ``cat.png cat.jpg``); then it gets the first
    of ``cat-2``, ``cat-3``, ... that no input has as its own name and none was given yet.
    Names are compared ignoring case, so the results also stay apart on file systems that
    ignore it.

    Examples
    --------
    >>> output_names(["a/cat.png", "b/cat.png", "cat-2.jpg", "dog.png"])
    ['cat', 'cat-3', 'cat-2', 'dog']
    """
    stems = [Path(p).stem for p in paths]
    reserved = {stem.casefold() for stem in stems}  # every input's own name is kept for it
    given, names = set(), []
    for stem in stems:
        name, n = stem, 1
        while name.casefold() in given or (n > 1 and name.casefold() in reserved):
            n += 1
            name = f"{stem}-{n}"
        given.add(name.casefold())
        names.append(name)
    return names


def output_paths(paths, out_dir):
    """``[(mask path, overlay path)]`` for each input, in ``out_dir``; refuses before anything
    is written when one of them would replace one of the inputs."""
    out_dir = Path(out_dir)
    pairs = [(out_dir / f"{name}_mask.png", out_dir / f"{name}_overlay.png") for name in output_names(paths)]
    # a file is its (device, inode): one stat per path, as os.path.samefile compares them
    inputs = {_identity(p): p for p in paths if Path(p).is_file()}  # missing: the reader's to report
    for output in (o for pair in pairs for o in pair):
        path = inputs.get(_identity(output))
        if path is not None:
            raise UsageError(f"predict: the output {output} would replace the input image "
                             f"{path}: choose another --out")
    return pairs


def _identity(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def predict_files(model, paths, out_dir):
    """Write ``<name>_mask.png`` (VOC palette, class indices) and ``<name>_overlay.png`` for
    each image into ``out_dir``, ``name`` from :func:`output_names` (no two inputs share one).
    Returns ``[(image path, mask path, overlay path, classes)]``."""
    from PIL import Image

    out_dir = Path(out_dir)
    outputs = iter(output_paths(paths, out_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        image = read_image(path)
        try:
            labels = segment(model, image)
        except ImageTooSmallError as exc:
            raise ImageTooSmallError(f"{path}: {exc}") from None
        mask_path, overlay_path = next(outputs)
        # each written whole under a temporary name first: an interrupted run leaves no
        # half-written PNG under a result's name
        atomic_write(mask_path, lambda tmp: save_palette_png(tmp, labels.astype(np.uint8)),
                     suffix=".png")
        atomic_write(overlay_path, lambda tmp: Image.fromarray(overlay(image, labels)).save(tmp),
                     suffix=".png")
        written.append((Path(path), mask_path, overlay_path, sorted(np.unique(labels).tolist())))
    return written
