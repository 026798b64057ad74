"""Synthetic sketches: edges of normal maps and depth, as Sketch2Shape makes them.

A sketch is the union of Canny edges (Canny 1986, via scikit-image) of each channel of
the normal map (creases and parts) and of the depth map (occluding contours), plus
the silhouette's outline: black lines on white, uint8 (H, W).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage
from skimage import feature


def sketch_from_render(normal_map: np.ndarray, depth: np.ndarray, hit: np.ndarray, sigma: float = 1.0,
                       line_width: int = 1) -> np.ndarray:
    """Black-on-white sketch (H, W) uint8 from a normal map (H, W, 3) uint8, depth and hit mask (H, W)."""
    normals = normal_map.astype(np.float32) / 255.0
    edges = np.zeros(hit.shape, bool)
    for c in range(3):
        edges |= feature.canny(normals[..., c], sigma=sigma, low_threshold=0.08, high_threshold=0.2)
    depth_far = np.where(hit, depth, depth[hit].max() + 1.0 if hit.any() else 0.0)
    scale = max(float(np.ptp(depth[hit])) if hit.any() else 1.0, 1e-6)
    edges |= feature.canny(depth_far / scale, sigma=sigma, low_threshold=0.1, high_threshold=0.3)
    edges |= hit & ~scipy.ndimage.binary_erosion(hit)  # the silhouette's outline
    if line_width > 1:
        edges = scipy.ndimage.binary_dilation(edges, iterations=line_width - 1)
    return np.where(edges, 0, 255).astype(np.uint8)
