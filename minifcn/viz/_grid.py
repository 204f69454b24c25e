"""Drawing grids of numbered cells with Pillow: the building block of the GIF animations."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

CELL = 34  # pixels per cell side
GAP = 36  # pixels between panels
MARGIN = 16

COLOURS = {
    "paper": (255, 255, 255),
    "line": (110, 110, 110),
    "text": (25, 25, 25),
    "faint": (160, 160, 160),
    "pad": (232, 232, 232),  # zero padding / inserted zeros / cropped-away cells
    "window": (155, 195, 245),  # the kernel's current footprint
    "current": (250, 196, 95),  # the pixel being computed or scattered
    "done": (190, 228, 190),  # pixels already finished
    "weight": (25, 70, 170),  # kernel taps written inside a window
}


def font(size):
    """Pillow's built-in scalable font at ``size`` pixels (the bitmap one on old Pillow)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def fmt(v):
    """A cell's number: integers without a decimal point, others with 2 significant digits."""
    v = float(v)
    return str(round(v)) if abs(v - round(v)) < 1e-9 else f"{v:.2g}"


def grid_size(shape):
    """Pixel ``(width, height)`` of a grid of ``shape = (rows, cols)`` cells."""
    return shape[1] * CELL + 1, shape[0] * CELL + 1


def draw_grid(draw, origin, values, fills=None, small=None, faint=None):
    """Draw ``values`` (2-D; NaN leaves a cell blank) as a grid with its top-left at ``origin``.

    Parameters
    ----------
    draw : PIL.ImageDraw.ImageDraw
    origin : (int, int)
        Pixel ``(x, y)`` of the top-left corner.
    values : numpy.ndarray, shape (rows, cols)
    fills : dict, optional
        ``{(r, c): colour name}`` for cells that are not plain paper.
    small : numpy.ndarray, shape (rows, cols), optional
        A second number written small in the bottom-right corner (NaN: none).
    faint : numpy.ndarray of bool, shape (rows, cols), optional
        Cells whose number is drawn in grey (padding zeros).
    """
    fills = fills or {}
    big, tiny = font(15), font(10)
    x0, y0 = origin
    for (r, c), v in np.ndenumerate(values):
        box = (x0 + c * CELL, y0 + r * CELL, x0 + (c + 1) * CELL, y0 + (r + 1) * CELL)
        draw.rectangle(box, fill=COLOURS[fills.get((r, c), "paper")], outline=COLOURS["line"])
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2 - (4 if small is not None else 0))
        if not np.isnan(v):
            colour = COLOURS["faint"] if faint is not None and faint[r, c] else COLOURS["text"]
            draw.text(centre, fmt(v), fill=colour, font=big, anchor="mm")
        if small is not None and not np.isnan(small[r, c]):
            draw.text((box[2] - 3, box[3] - 2), fmt(small[r, c]), fill=COLOURS["weight"],
                      font=tiny, anchor="rb")


TITLE_SIZE, CAPTION_SIZE, FOOTER_SIZE = 16, 13, 14


def panel_layout(shapes, title, footers):
    """Place grids of the given ``(rows, cols)`` shapes side by side under a title.

    The frame is made wide enough for the title and the longest of ``footers``.
    Returns ``(canvas_size, origins)``; each grid sits below a one-line caption.
    """
    top = MARGIN + 22 + 20  # title, then the captions
    x, origins = MARGIN, []
    for shape in shapes:
        origins.append((x, top))
        x += grid_size(shape)[0] + GAP
    text = max(font(TITLE_SIZE).getlength(title),
               max(font(FOOTER_SIZE).getlength(f) for f in footers))
    width = int(max(x - GAP, MARGIN + text)) + MARGIN
    height = top + max(grid_size(s)[1] for s in shapes) + 12 + 20 + MARGIN
    return (width, height), origins


def new_frame(size, title, captions, origins, footer):
    """A blank frame with its title, the panel captions and a footer line drawn."""
    image = Image.new("RGB", size, COLOURS["paper"])
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, MARGIN), title, fill=COLOURS["text"], font=font(TITLE_SIZE))
    for (x, y), caption in zip(origins, captions):
        draw.text((x, y - 4), caption, fill=COLOURS["text"], font=font(CAPTION_SIZE), anchor="lb")
    draw.text((MARGIN, size[1] - MARGIN), footer, fill=COLOURS["text"], font=font(FOOTER_SIZE),
              anchor="lb")
    return image, draw


def save_gif(frames, path, durations):
    """Write frames (RGB images) as a looping GIF with a small shared palette."""
    montage = Image.new("RGB", (frames[0].width, frames[0].height * len(frames)))
    for k, frame in enumerate(frames):  # one palette that holds every frame's colours
        montage.paste(frame, (0, k * frame.height))
    palette = montage.quantize(colors=48, method=Image.Quantize.MEDIANCUT)
    paletted = [f.quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    paletted[0].save(path, save_all=True, append_images=paletted[1:], duration=list(durations),
                     loop=0, optimize=True, disposal=1)
    return path
