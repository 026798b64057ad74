"""A hand-drawn-style version of a clean sketch, for evaluation only.

    wobbly = hand_drawn(sketch, rng)      # (H, W) uint8 black-on-white -> the same, redrawn

The dataset's sketches are exact edge maps. A person's strokes are each a little off
on their own: moved and turned, bent along their length, broken where the pen lifted,
drawn thicker or thinner. This redraws each stroke that way; a stroke is a run of line
pixels between junctions (pixels with three or more line neighbours), so a chair drawn
as one connected figure still falls apart into its edges. It is deliberately not the encoder's training augmentation
(sdfjax.train.augment, which warps and erases the whole image at once): the evaluation
measures how the encoder and the refinement cope with a kind of variation they were
not trained on.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage
from skimage import morphology


def hand_drawn(sketch: np.ndarray, rng: np.random.Generator, shift_pixels: float = 1.0, turn_degrees: float = 3.0,
               bend_pixels: float = 0.8, gaps_per_100_pixels: float = 1.5, gap_radius: float = 1.0,
               thick_share: float = 0.3) -> np.ndarray:
    """`sketch` (H, W) uint8, black lines on white, with every stroke redrawn as the module docstring says.

    Per stroke: a shift of N(0, shift_pixels) per axis, a turn of U(+-turn_degrees) about
    its centroid, a bend (a displacement varying smoothly along the stroke's principal
    axis, amplitude N(0, bend_pixels)), Poisson(gaps_per_100_pixels per 100 pixels) gaps of
    radius `gap_radius`, and a one-pixel thickening with probability `thick_share`.
    """
    lines = morphology.skeletonize(np.asarray(sketch) < 128)  # one pixel wide, so junctions are junctions
    neighbours = scipy.ndimage.convolve(lines.astype(np.int32), np.ones((3, 3), np.int32), mode="constant") - 1
    junctions = lines & (neighbours >= 3)
    labels, count = scipy.ndimage.label(lines & ~junctions, structure=np.ones((3, 3)))
    h, w = lines.shape
    out = junctions.copy()
    for stroke in range(1, count + 1):
        pts = np.argwhere(labels == stroke).astype(np.float64)
        centre = pts.mean(axis=0)
        rel = pts - centre
        # position along the stroke's principal axis, for a bend that varies smoothly along it
        axis = np.linalg.svd(rel, full_matrices=False)[2][0] if len(pts) > 1 else np.array([1.0, 0.0])
        along = rel @ axis
        span = max(np.ptp(along), 1.0)
        normal = np.array([-axis[1], axis[0]])
        bend = rng.normal(0.0, bend_pixels) * np.sin(np.pi * (along - along.min()) / span + rng.uniform(0, np.pi))
        angle = np.radians(rng.uniform(-turn_degrees, turn_degrees))
        c, s = np.cos(angle), np.sin(angle)
        moved = rel @ np.array([[c, s], [-s, c]]) + centre + rng.normal(0.0, shift_pixels, 2) + bend[:, None] * normal
        if len(pts) > 4:
            for _ in range(rng.poisson(gaps_per_100_pixels * len(pts) / 100.0)):
                cut = moved[rng.integers(len(moved))]
                moved = moved[np.linalg.norm(moved - cut, axis=1) > gap_radius]
        ij = np.round(moved).astype(int)
        ij = ij[(ij[:, 0] >= 0) & (ij[:, 0] < h) & (ij[:, 1] >= 0) & (ij[:, 1] < w)]
        drawn = np.zeros_like(lines)
        drawn[ij[:, 0], ij[:, 1]] = True
        if rng.random() < thick_share:
            drawn = scipy.ndimage.binary_dilation(drawn, structure=np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool))
        out |= drawn
    return np.where(out, 0, 255).astype(np.uint8)
