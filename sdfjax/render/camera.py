"""Pinhole cameras on a sphere around the object, and their rays.

Frame: the normalised object frame (DeepSDF's unit sphere), y up; a chair's seat faces +y
and its front +z (data_gen.synthetic). The one view convention of sdfjax: a camera at
azimuth `a` and elevation `e` (degrees) and distance `r` sits at

    position = r * (cos e sin a, sin e, cos e cos a)

and looks at the origin: azimuth 0 sees the object from the front (+z), azimuth 90 from
+x, and a **positive elevation looks from above** (the seat's top side), a negative one
from below. Its image has H x W pixels, row i from the top and column j from the left,
image up the projection of +y; the ray of pixel (i, j) goes through the pixel's centre:

    d = normalize(forward + (j + 0.5 - W/2) / f * right - (i + 0.5 - H/2) / f * up)

with `forward` towards the origin, `right = normalize(forward x y)`, `up = right x forward`,
and focal length f in pixels.

Sketch2Shape writes its camera as world_to_camera = T(r) Rx(e') Ry(a') (4 x 4 matrices,
camera looking along its +z): the same camera is ours at azimuth 180 - a' and elevation
-e' (`from_sketch2shape`), so its views "from above" have negative elevations. Its
view set (docs/design.md, "Published numbers") is 18 azimuths x 5 elevations at 256 x 256,
f = 512, r = 4; the dataset's views here (config.render) keep its azimuths, distance and
focal length, with elevations from above, where people draw chairs from (DATASET_ELEVATIONS);
view index = azimuth index * len(elevations) + elevation index.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax.numpy as jnp
import numpy as np

DATASET_AZIMUTHS = tuple(range(0, 360, 20))  # degrees: all around, every 20
# degrees above the seat: a near-level side view, the 15-35 degrees people draw three-quarter views from, a high view
DATASET_ELEVATIONS = (5, 15, 25, 35, 50)


def from_sketch2shape(azimuth_deg, elevation_deg) -> tuple:
    """(azimuth, elevation) in this module's convention of Sketch2Shape's camera at (azim, elev), in degrees."""
    return (180.0 - np.asarray(azimuth_deg)) % 360.0, -np.asarray(elevation_deg)


def direction_from_angles(azimuth_deg, elevation_deg) -> np.ndarray:
    """Unit vector from the origin towards a camera at (azimuth, elevation), in degrees."""
    a, e = np.radians(azimuth_deg), np.radians(elevation_deg)
    return np.stack([np.cos(e) * np.sin(a), np.sin(e), np.cos(e) * np.cos(a)], axis=-1)


@dataclasses.dataclass(frozen=True)
class Camera:
    """One pinhole camera looking at the origin (see the module docstring)."""

    azimuth: float = 0.0  # degrees
    elevation: float = 0.0  # degrees
    distance: float = 4.0
    focal: float = 512.0  # pixels
    width: int = 256
    height: int = 256

    @property
    def position(self) -> np.ndarray:
        return self.distance * direction_from_angles(self.azimuth, self.elevation)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(forward, right, up) unit vectors in the object frame."""
        forward = -direction_from_angles(self.azimuth, self.elevation)
        right = np.cross(forward, [0.0, 1.0, 0.0])
        norm = np.linalg.norm(right)
        if norm < 1e-8:  # looking straight up or down: any right vector orthogonal to forward
            right = np.array([1.0, 0.0, 0.0])
        else:
            right = right / norm
        return forward, right, np.cross(right, forward)

    def rays(self) -> tuple[np.ndarray, np.ndarray]:
        """origins (H*W, 3) and unit directions (H*W, 3), float32, row-major over pixels."""
        forward, right, up = self.axes()
        j, i = np.meshgrid(np.arange(self.width), np.arange(self.height))
        x = (j.reshape(-1) + 0.5 - self.width / 2) / self.focal
        y = (i.reshape(-1) + 0.5 - self.height / 2) / self.focal
        d = forward + x[:, None] * right - y[:, None] * up
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        origins = np.broadcast_to(self.position, d.shape)
        return origins.astype(np.float32), d.astype(np.float32)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def scaled(self, resolution: int) -> "Camera":
        """The same view at another square resolution (focal scaled with it)."""
        return dataclasses.replace(self, focal=self.focal * resolution / self.width, width=resolution,
                                   height=resolution)


def view_set(azimuths=DATASET_AZIMUTHS, elevations=DATASET_ELEVATIONS, resolution: int = 256,
             focal: float = 512.0, distance: float = 4.0) -> list[Camera]:
    """Cameras for every (azimuth, elevation) pair, azimuth-major (90 views by default)."""
    return [Camera(float(a), float(e), distance, focal, resolution, resolution)
            for a, e in itertools.product(azimuths, elevations)]


def views_from_config(render_config) -> list[Camera]:
    """The dataset's view set of `config.render` (resolution and focal scaled together)."""
    return view_set(tuple(render_config.azimuths), tuple(render_config.elevations), render_config.resolution,
                    render_config.focal, render_config.distance)


def view_angles(cameras) -> np.ndarray:
    """(V, 2) float32 azimuth and elevation in degrees of `cameras` (what a view-reading encoder takes)."""
    return np.asarray([[c.azimuth, c.elevation] for c in cameras], np.float32).reshape(-1, 2)


def stack_rays(cameras) -> tuple[jnp.ndarray, jnp.ndarray]:
    """origins and directions (V, H*W, 3) of several cameras of one resolution."""
    rays = [c.rays() for c in cameras]
    return jnp.asarray(np.stack([r[0] for r in rays])), jnp.asarray(np.stack([r[1] for r in rays]))
