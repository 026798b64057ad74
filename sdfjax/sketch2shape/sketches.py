"""Sketches as the optimiser reads them: any user drawing normalised to a dataset-like sketch.

    grey = load_image("chair.png")                     # any image file -> (H, W) in [0, 1]
    sketch = normalize_sketch(grey, 256, fill=0.8)     # cropped, centred, 1 px black lines on white
    inside = filled_outline(sketch)                    # the region the drawing encloses
    inside, known = outline_masks(sketch)              # what the silhouette loss may trust
    inside, known, carvable = view_masks(sketch, carve_margin=1)  # ... and where it may remove material

A user's drawing may be grey or colour, with or without alpha, dark lines on light or
light on dark, of any size; `normalize_sketch` crops it to the drawing, centres it,
scales its longer side to `fill` of the image and thins its lines to one pixel, like
the sketches of the dataset (sdfjax.render.edges). A wide pen's lines (over PEN_PIXELS)
are thinned to their centres before anything else, so the pen's width changes neither the
framing nor the lines.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import scipy.ndimage
from PIL import Image, ImageOps, UnidentifiedImageError
from skimage import measure, morphology

from sdfjax import errors

MAX_PIXELS = 4096 * 4096  # a sketch larger than this is refused before it is decoded
PEN_PIXELS = 2.5  # lines wider than this are thinned to their centres before framing


FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")  # as Pillow names them
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "F")  # Pillow's one-channel modes of more than 8 bits


def check_image_header(path: str, max_pixels: int = MAX_PIXELS) -> tuple[int, int, str]:
    """(width, height, Pillow's mode) of an image file read from its header alone; errors.DataError naming the
    file when it is not an image of an accepted format or has more than `max_pixels` (never decoded: a
    decompression bomb is a small file that decodes to gigabytes)."""
    try:
        with Image.open(path, formats=FORMATS) as im:
            (width, height), mode = im.size, im.mode
    except Image.DecompressionBombError as e:  # Pillow's own header check, for sizes far above ours
        raise errors.DataError(f"{path}: refused as a decompression bomb ({e}); a sketch may have at most "
                               f"{max_pixels:,} pixels") from None
    except UnidentifiedImageError:
        raise errors.DataError(f"{path}: not a readable image in an accepted format ({', '.join(FORMATS[:2])}, "
                               "WebP, BMP or GIF)") from None
    except (OSError, ValueError) as e:
        raise errors.DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    if width * height > max_pixels:
        raise errors.DataError(f"{path}: the image is {width} x {height} pixels, more than the "
                               f"{max_pixels:,} a sketch may have; scale it down")
    return width, height, mode


def load_image(path: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """An image file (PNG, JPEG, WebP, BMP or GIF) as float greyscale (H, W) in [0, 1], transparency composited on
    white, turned as its EXIF orientation says (a phone's photo of a drawing); 16-bit and palette images keep
    their full range. An animated image gives its first frame, with a warning.

    Raises errors.DataError naming the file when it is missing, not an image, in another format, or larger
    than `max_pixels` (checked from the header, before decoding: a decompression bomb,
    a small file that decodes to gigabytes, is refused without being decoded).
    """
    if not os.path.isfile(path):
        raise errors.DataError(f"{path}: no such sketch file")
    check_image_header(path, max_pixels)
    try:
        with Image.open(path, formats=FORMATS) as im:
            if getattr(im, "n_frames", 1) > 1:
                warnings.warn(f"{path}: an animated image; its first frame is the sketch", stacklevel=2)
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in WIDE_MODES:
                wide = np.asarray(im, np.float32)
                top = 65535.0 if im.mode != "F" and wide.max() <= 65535 else max(float(wide.max()), 1e-12)
                return np.clip(wide / top, 0.0, 1.0)
            rgba = im.convert("RGBA")
    except UnidentifiedImageError:
        raise errors.DataError(f"{path}: not a readable image in an accepted format ({', '.join(FORMATS[:2])}, "
                               "WebP, BMP or GIF)") from None
    except (OSError, ValueError) as e:
        raise errors.DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    return grey_of_pixels(np.asarray(rgba))


# ITU-R BT.601 luma, the weights of Pillow's convert("L"): a coloured stroke reads as the same
# grey whether it comes from a file or from the page's canvas.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


def grey_of_pixels(pixels: np.ndarray) -> np.ndarray:
    """(H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA uint8 pixels -> (H, W) grey in [0, 1].

    Transparency is white paper (the pixel is composited onto white), colour becomes its
    BT.601 luma.
    """
    pixels = np.asarray(pixels, np.float32) / 255.0
    if pixels.ndim == 2:
        return pixels
    if pixels.ndim != 3 or pixels.shape[-1] not in (3, 4):
        raise errors.DataError(f"expected (H, W), (H, W, 3) or (H, W, 4) pixels, got shape {pixels.shape}")
    rgb = pixels[..., :3]
    if pixels.shape[-1] == 4:
        alpha = pixels[..., 3:]
        rgb = rgb * alpha + (1.0 - alpha)
    return rgb @ LUMA_WEIGHTS


def normalize_sketch(grey: np.ndarray, resolution: int, fill: float = 0.8, name: str = "sketch",
                     centre: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """A drawing (H, W) in [0, 1] -> a dataset-like sketch (resolution, resolution) uint8, black lines on white.

    The drawing's bounding box is scaled so that its longer side is `fill` of the image and
    its centre lies `centre` (right, down; fractions of the image's side) from the image's
    centre. The background level is the image's median; lines are what differs from it by more
    than half the largest difference. Raises errors.DataError when nothing does (blank).
    """
    grey = np.asarray(grey, np.float32)
    if grey.ndim != 2:
        raise errors.DataError(f"{name}: expected a 2-D image, got shape {grey.shape}")
    if min(grey.shape) < 2:
        raise errors.DataError(f"{name}: the image is {grey.shape[1]} x {grey.shape[0]} pixels; a sketch needs at "
                               "least 2 x 2")
    ink = np.abs(grey - np.median(grey))  # either polarity: lines differ from the background
    contrast = float(ink.max())
    if contrast < 0.1:
        raise errors.DataError(f"{name}: the image is blank (contrast {contrast:.3f}); draw dark lines on light "
                               "or light lines on dark")
    lines = ink > 0.5 * contrast
    if lines.mean() > 1 / 3:  # a photo or a filled picture, not lines
        raise errors.DataError(f"{name}: {lines.mean():.0%} of the image is lines; expected a line drawing")
    rows, cols = np.nonzero(lines)
    # A wide pen's lines are thinned to their centres first, so that a 1 px and a 5 px drawing are framed and
    # read alike (its width measured as twice the median distance from its centre lines to the paper).
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    centres = morphology.skeletonize(lines[box])
    if 2 * np.median(scipy.ndimage.distance_transform_edt(lines[box])[centres]) > PEN_PIXELS:
        lines = np.zeros_like(lines)
        lines[box] = centres
        ink = lines.astype(np.float32) * contrast
        rows, cols = np.nonzero(lines)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = int(np.ceil(max(bottom - top, right - left) / fill))
    height, width = bottom - top, right - left
    oy = (side - height) // 2 + int(round(centre[1] * side))
    ox = (side - width) // 2 + int(round(centre[0] * side))
    square = np.zeros((side, side), np.float32)
    y0, y1, x0, x1 = max(oy, 0), min(oy + height, side), max(ox, 0), min(ox + width, side)
    if y1 > y0 and x1 > x0:  # a drawing moved off centre is cut at the border, not wrapped
        square[y0:y1, x0:x1] = ink[top + y0 - oy:top + y1 - oy, left + x0 - ox:left + x1 - ox] / contrast
    factor = max(1, side // resolution)  # max-pool after resizing keeps thin lines when shrinking a lot
    resized = np.asarray(Image.fromarray(square).resize((resolution * factor,) * 2, Image.Resampling.BILINEAR))
    pooled = measure.block_reduce(resized, (factor, factor), np.max)
    thin = morphology.skeletonize(pooled > 0.3)
    return np.where(thin, 0, 255).astype(np.uint8)


def _within(mask: np.ndarray, pixels: int) -> np.ndarray:
    """(H, W) bool: the pixels within `pixels` (chessboard distance) of `mask`; `mask` itself at 0 (scipy's
    binary_dilation would read 0 iterations as "until nothing changes")."""
    if not pixels:
        return mask
    return scipy.ndimage.binary_dilation(mask, structure=np.ones((3, 3)), iterations=pixels)


def grown_lines(sketches: np.ndarray, pixels: int) -> np.ndarray:
    """Sketches (..., H, W), dark lines on light (uint8 or [0, 1]), with their lines grown by `pixels` (chessboard
    distance: `pixels` 3 x 3 minimum filters, the image's own dtype kept)."""
    if pixels < 0:
        raise ValueError(f"config.sketch.encoder_line_growth={pixels}: expected pixels >= 0")
    sketches = np.asarray(sketches)
    size = (1,) * (sketches.ndim - 2) + (3, 3)
    for _ in range(pixels):
        sketches = scipy.ndimage.minimum_filter(sketches, size=size, mode="nearest")
    return sketches


def _closed_lines(sketch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lines, lines closed by one pixel) (H, W) bool of a black-on-white sketch."""
    lines = np.asarray(sketch) < 128
    return lines, scipy.ndimage.binary_closing(lines, structure=np.ones((3, 3)), iterations=1) | lines


def filled_outline(sketch: np.ndarray) -> np.ndarray:
    """(H, W) bool: the region a black-on-white sketch encloses (its lines closed by one pixel, then filled)."""
    return scipy.ndimage.binary_fill_holes(_closed_lines(sketch)[1])


# A drawing whose lines, once their gaps are closed, enclose this much more area than as drawn has gaps: closed
# contours (the dataset's sketches) stay near 1, a hand's broken ones enclose far more (docs/experiments.md).
GAP_AREA_RATIO = 1.1


def has_gaps(as_drawn: np.ndarray, grown: np.ndarray, tolerance: int) -> bool:
    """Whether a drawing's contours have gaps: `grown`, the fill of its lines grown by `tolerance` px, shrunk back
    by as much, encloses more than GAP_AREA_RATIO times the area of `as_drawn`, the fill of its lines as drawn."""
    gaps_closed = as_drawn | scipy.ndimage.binary_erosion(grown, structure=np.ones((3, 3)), iterations=tolerance)
    return gaps_closed.sum() > GAP_AREA_RATIO * max(as_drawn.sum(), 1)


def _fills(sketch: np.ndarray, tolerance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(lines closed by one pixel, their fill, the fill of the lines grown by `tolerance` px if the drawing has gaps
    (`has_gaps`), else None) (H, W) bool."""
    if tolerance < 0:
        raise ValueError(f"config.sketch.outline_tolerance={tolerance}: expected pixels >= 0")
    lines, closed = _closed_lines(sketch)
    filled = scipy.ndimage.binary_fill_holes(closed)
    if not tolerance:
        return closed, filled, None
    grown = scipy.ndimage.binary_fill_holes(closed | _within(lines, tolerance))
    return closed, filled, grown if has_gaps(filled, grown, tolerance) else None


def outline_masks(sketch: np.ndarray, tolerance: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(inside, known) (H, W) bool masks of a black-on-white sketch for the silhouette loss.

    Lines (closed by one pixel) are the object; background that reaches the image border
    is not. A region the lines enclose may be a face of the object (a seat seen from
    above) or background between parts (between slats or legs): lines alone cannot tell,
    so such regions are left out of the loss (known = False).

    `tolerance` > 0, for a drawing whose contours have gaps, grows the lines by that many
    pixels before deciding what they enclose: a gap in a stroke of up to 2 * tolerance
    pixels no longer lets the outside flow into the drawing (a hand-drawn contour is rarely
    closed), and background within `tolerance` pixels of a line is unknown rather than
    outside (a hand's lines miss the true contour by a pixel or two). A drawing has gaps
    when closing them encloses more than GAP_AREA_RATIO times the area its lines enclose as
    drawn (`has_gaps`); a closed drawing keeps its masks as at tolerance 0,
    its background next to the lines known.
    """
    return _outline(*_fills(sketch, tolerance))


def _outline(closed: np.ndarray, filled: np.ndarray, grown: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """`outline_masks` from a sketch's `_fills`."""
    if grown is not None:
        filled = grown
    return closed, closed | ~filled


def view_masks(sketch: np.ndarray, tolerance: int = 0, carve_margin: int = 0, line_band: int = 0,
               gap_carve_margin: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inside, known, carvable) (H, W) bool of a sketch: its `outline_masks`, less the background within
    `line_band` pixels (chessboard distance) of its lines, and the known background rays where the soft
    silhouette may remove material (carve a hit).

    A hand's lines lie a pixel or two off the true outline, so the object's own pixels beside a
    line may read as background: `line_band` leaves them out of the loss. Carvable rays lie
    farther than `carve_margin` pixels from `inside`; a drawing whose contours have gaps (see
    `outline_masks` with `tolerance`) has none with `gap_carve_margin` < 0 (a hand that leaves
    gaps also leaves out strokes, and carving would remove the parts they stood for), else those
    farther than `gap_carve_margin` pixels from its lines.
    """
    for name, pixels in (("carve_margin", carve_margin), ("line_band", line_band)):
        if pixels < 0:
            raise ValueError(f"config.sketch.{name}={pixels}: expected pixels >= 0")
    fills = _fills(sketch, tolerance)
    inside, known = _outline(*fills)
    known = known & ~(_within(fills[0], line_band) & ~inside)
    if fills[2] is not None:
        if gap_carve_margin < 0:
            return inside, known, np.zeros_like(known)
        return inside, known, known & ~_within(fills[0], gap_carve_margin)
    return inside, known, known & ~_within(inside, carve_margin)
