"""Partial observations for shape completion (DeepSDF Sec. 6.3).

DeepSDF completes shapes from one depth view: it fits the latent code to SDF samples
along the rays of a depth camera only, i.e. free space in front of the visible surface
and a thin band around it, never the back of the shape. The released code has no such
step; this module makes that observation from a shape's preprocessed samples:

    observed = partial_observation(sdf_samples, surface_points, camera.direction_from_angles(30, 20))

The camera is orthographic, looking along -d (d points from the object to the camera).
The visible surface is a z-buffer of the surface samples on a grid over the image
plane; a sample is observed when its pixel sees the object and it lies in front of
the visible surface or at most `band` behind it, or when its pixel sees background
(the whole ray is free space).
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage



def _image_basis(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([0.0, 1.0, 0.0]) if abs(d[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(helper, d)
    u /= np.linalg.norm(u)
    return u, np.cross(d, u)


def partial_observation(sdf_samples: np.ndarray, surface_points: np.ndarray, direction: np.ndarray,
                        resolution: int = 96, band: float = 0.025) -> np.ndarray:
    """The rows of `sdf_samples` (N, 4) a depth camera looking along -`direction` observes.

    Args:
      sdf_samples: (N, 4) x, y, z, sdf in the normalised frame.
      surface_points: (M, 3+) points on the surface (the dataset's surface_samples).
      direction: unit vector from the object towards the camera.
      resolution: pixels per side of the depth image over [-1, 1]^2.
      band: how far behind the visible surface samples are still observed (normalised units).
    """
    d = np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    u, v = _image_basis(d)

    def pixels(points):
        ij = np.floor((np.stack([points @ u, points @ v], -1) + 1) / 2 * resolution).astype(np.int64)
        return np.clip(ij, 0, resolution - 1)

    surface = np.asarray(surface_points[:, :3], np.float64)
    depth = np.full((resolution, resolution), -np.inf)  # larger = nearer the camera
    ij = pixels(surface)
    np.maximum.at(depth, (ij[:, 0], ij[:, 1]), surface @ d)
    seen = np.isfinite(depth)
    # Close pinholes between splatted points so they do not read as background.
    closed = scipy.ndimage.binary_closing(seen, iterations=2, border_value=0) | seen
    # A pixel may hold only points of a back surface (no front point fell in it): the
    # nearest depth of its 3x3 neighbourhood stands for it, which errs towards observing less.
    depth = scipy.ndimage.grey_dilation(depth, size=3)
    xyz = np.asarray(sdf_samples[:, :3], np.float64)
    ij = pixels(xyz)
    background = ~closed[ij[:, 0], ij[:, 1]]
    surface_depth = depth[ij[:, 0], ij[:, 1]]  # -inf in a closed pinhole: nothing observed there
    observed = background | (np.isfinite(surface_depth) & (xyz @ d >= surface_depth - band))
    return sdf_samples[observed]
