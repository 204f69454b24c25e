"""Image and label folders paired by file name, as in the prepped CamVid set.

The CamVid copy used by many segmentation tutorials stores ``images_prepped_train/*.png`` next
to ``annotations_prepped_train/*.png`` (and ``..._test``), the annotation holding the class
index 0..11 of 12 classes in every pixel. Any set laid out this way can be read.
"""
from __future__ import annotations

from minifcn.data.common import IMAGE_EXTENSIONS, SegmentationFiles, require_dir
from minifcn.data.labelfile import decode_label

__all__ = ["FolderPairs"]


class FolderPairs(SegmentationFiles):
    """Images in one folder, label PNGs of the same name in another.

    Parameters
    ----------
    image_dir, label_dir : path-like
        The two folders. The label of ``image_dir/x.jpg`` is ``label_dir/x.jpg`` if present,
        else ``label_dir/x.png``. Labels hold class indices (palette, greyscale, or RGB with
        R = G = B); a JPEG label is refused when read, its compression having changed them.
    num_classes : int, optional
        Number of classes; when neither it nor ``class_names`` is given it is found by reading
        every label once (largest index other than 255, plus one).
    class_names : sequence of str, optional
        One name per class; ``class 0``, ``class 1``, ... by default.
    """

    def __init__(self, image_dir, label_dir, num_classes=None, class_names=None):
        image_dir = require_dir(image_dir, "image folder")
        label_dir = require_dir(label_dir, "label folder")
        images = sorted(p for p in image_dir.iterdir()
                        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not images:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {image_dir}")
        labels = []
        for p in images:
            same, png = label_dir / p.name, label_dir / f"{p.stem}.png"
            if not same.is_file() and not png.is_file():
                raise FileNotFoundError(f"image {p} has no label: expected {same} or {png}")
            labels.append(same if same.is_file() else png)
        if num_classes is None:
            num_classes = len(class_names) if class_names is not None else _count_classes(labels)
        if class_names is None:
            class_names = [f"class {i}" for i in range(num_classes)]
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.image_dir, self.label_dir = image_dir, label_dir
        super().__init__([p.stem for p in images], images, labels, num_classes, class_names)


def _count_classes(label_paths):
    """One more than the largest non-void index over all label files."""
    largest = 0
    for path in label_paths:
        label, _ = decode_label(path)
        values = label[label != 255]
        if values.size:
            largest = max(largest, int(values.max()))
    return largest + 1
