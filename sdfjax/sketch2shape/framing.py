"""Where a user's drawing sits in its camera's image: the scale and offset the shape it shows would have there.

    fill, centre = self_consistent_framing(grey, encode, silhouettes, resolution=64)
    sketch = normalize_sketch(grey, 64, fill, centre=centre)

A dataset sketch is framed by its camera: the normalised shape (DeepSDF: farthest vertex at
1/1.03) seen from 4 units through a 512 px focal length. A user's drawing has no frame:
`normalize_sketch` can only give its longer side a fixed share of the image
(config.sketch.fill, the dataset's median) and centre it. But that share depends on the shape
and the view, and the encoder, trained on the dataset's framing, reads the size of a drawing
as part of the shape: a drawing framed too large comes out as another chair.

The frame is the one the drawing agrees with: drawn at fill f, the encoder predicts a shape
whose own silhouette from the camera fills f_out(f) of the image. Where f_out(f) = f (going from
above f to below it as f grows, where f <- f_out(f) settles), the encoder's shape and the drawing's
framing agree; the drawing is centred where that shape's silhouette is (docs/experiments.md,
"Framing", compares it with fixed framing and with the true framing).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sdfjax.sketch2shape.sketches import normalize_sketch

# The fills tried: they span what the dataset's sketches fill of their image.
FILLS = tuple(np.round(np.arange(0.55, 1.0001, 0.05), 2))
# Pixels per side of the traced silhouettes: a box's fill needs few pixels, and finer traces framed no better.
SILHOUETTE_RESOLUTION = 32


def silhouette_box(hit: np.ndarray) -> tuple[float, tuple[float, float]] | None:
    """(fill, centre) of a hit mask (R, R): its bounding box's longer side as a share of R and the box's centre
    (right, down) from the image centre in fractions of R; None when nothing is hit."""
    rows, cols = np.nonzero(hit)
    if not len(rows):
        return None
    size = hit.shape[0]
    fill = max(rows.max() + 1 - rows.min(), cols.max() + 1 - cols.min()) / size
    return float(fill), (float((cols.min() + cols.max() + 1) / 2 / size - 0.5),
                         float((rows.min() + rows.max() + 1) / 2 / size - 0.5))


def agreeing_fill(fills: np.ndarray, rendered: np.ndarray) -> float:
    """The fill f where rendered(f) = f: the largest f at which rendered - f goes from >= 0 to < 0 (linearly
    interpolated between the tried `fills`, ascending); without such a crossing, the tried fill closest to
    its render's."""
    gap = np.asarray(rendered, np.float64) - np.asarray(fills, np.float64)
    crossings = [i for i in range(len(gap) - 1) if gap[i] >= 0 > gap[i + 1]]
    if not crossings:
        return float(fills[int(np.argmin(np.abs(gap)))])
    i = crossings[-1]
    return float(fills[i] + (fills[i + 1] - fills[i]) * gap[i] / (gap[i] - gap[i + 1]))


def self_consistent_framing(grey: np.ndarray, encode: Callable[[np.ndarray], np.ndarray],
                            silhouettes: Callable[[np.ndarray], np.ndarray], resolution: int,
                            fills: tuple[float, ...] = FILLS, name: str = "sketch"
                            ) -> tuple[float, tuple[float, float]]:
    """(fill, centre) for `normalize_sketch` of a user's drawing (H, W) in [0, 1] (module docstring).

    `encode(sketches (K, R, R) uint8) -> (K, L)` latents (R = `resolution`) and `silhouettes(latents (K, L)) ->
    (K, S, S)` bool hit masks (any S, e.g. SILHOUETTE_RESOLUTION) are the encoder and the tracer from the drawing's
    camera. The centre is that of the silhouette drawn at the tried fill closest to the chosen one.
    """
    fills = np.asarray(sorted(fills), np.float64)
    sketches = np.stack([normalize_sketch(grey, resolution, float(f), name=name) for f in fills])
    boxes = [silhouette_box(h) for h in silhouettes(encode(sketches))]
    rendered = np.asarray([b[0] if b else 0.0 for b in boxes])
    fill = agreeing_fill(fills, rendered)
    nearest = boxes[int(np.argmin(np.abs(fills - fill)))]
    return fill, (nearest[1] if nearest else (0.0, 0.0))
