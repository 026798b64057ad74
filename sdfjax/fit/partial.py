"""What one depth camera tells about a shape, for shape completion (DeepSDF Sec. 6.3).

DeepSDF completes a shape from one depth image: the latent code is fitted to SDF
observations taken along the camera's rays only. A depth map proves two things and
nothing more, so those are the only observations made here:

  * each hit pixel's 3-D point lies on the surface:            sdf = 0;
  * every point of a ray in front of its first hit (or of a ray
    that hits nothing) is outside the shape, and no farther
    from the surface than the nearest observed surface point:  0 <= sdf <= min_j |x - s_j|.

Nothing behind the visible surface is observed, and a free-space point's distance to
hidden parts (which the camera cannot know) is never used. The observations are
(N, 5) rows x, y, z, lo, hi for `sdfjax.losses.sdf_interval_loss`:

    observed = depth_observations(mesh.vertices, mesh.faces, camera, rng)

The camera is one of sdfjax.render.camera's pinhole cameras; the depth map is a ray cast
of the shape's normalised mesh (sdfjax.render.mesh_caster), as a depth sensor would see it.

A scan given as surface points with normals (no camera) is observed as DeepSDF observes
one, by samples moved along and against each normal, and here also uniform ones, each with
its signed distance to the scan (nearest point, signed by that point's normal), beside the
points themselves at sdf = 0:

    samples = oriented_point_samples(points, normals)   # (M, 4) x, y, z, sdf
"""

from __future__ import annotations

import numpy as np
import scipy.spatial

from sdfjax.render import camera as camera_lib
from sdfjax.render import mesh_caster


def _sphere_span(origins: np.ndarray, directions: np.ndarray, radius: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Ray parameters (t_in, t_out) of each ray's chord through the sphere |x| <= radius (t_in = t_out: misses)."""
    b = np.sum(origins * directions, axis=1)
    c = np.sum(origins**2, axis=1) - radius**2
    disc = np.maximum(b**2 - c, 0.0)
    root = np.sqrt(disc)
    return np.maximum(-b - root, 0.0), np.maximum(-b + root, 0.0)


def depth_observations(vertices: np.ndarray, faces: np.ndarray, camera: camera_lib.Camera,
                       rng: np.random.Generator, free_per_ray: int = 2, near_per_ray: int = 2,
                       near_std: float = 0.025) -> np.ndarray:
    """SDF observations (N, 5) of one depth view of a mesh in the normalised frame (module docstring).

    Args:
      vertices, faces: the shape's normalised mesh (the unit-sphere frame of the dataset).
      camera: the depth camera.
      rng: draws the free-space points.
      free_per_ray, near_per_ray, near_std: as `ray_observations`.

    Returns rows x, y, z, lo, hi: hit points (lo = hi = 0) first, then free-space points (lo = 0).
    """
    cast = mesh_caster.cast_mesh(vertices, faces, camera)
    origins, directions = (a.astype(np.float64) for a in camera.rays())
    return ray_observations(origins, directions, cast["depth"], cast["hit"], rng, free_per_ray, near_per_ray,
                            near_std)


def ray_observations(origins: np.ndarray, directions: np.ndarray, depth: np.ndarray, hit: np.ndarray,
                     rng: np.random.Generator, free_per_ray: int = 2, near_per_ray: int = 2,
                     near_std: float = 0.025) -> np.ndarray:
    """SDF observations (N, 5) of a depth camera's rays, normalised frame (module docstring).

    Args:
      origins, directions: (R, 3) each ray's start and unit direction.
      depth: (R,) distance along each ray to its first surface point; read where `hit` (R,) bool.
      rng: draws the free-space points.
      free_per_ray: points per ray uniform on its free segment inside the unit sphere.
      near_per_ray: points per hit ray just in front of the hit, at |N(0, near_std^2)| along the ray.

    Returns rows x, y, z, lo, hi: hit points (lo = hi = 0) first, then free-space points (lo = 0).
    """
    t_in, t_out = _sphere_span(origins, directions)
    t_end = np.where(hit, np.minimum(depth, t_out), t_out)
    seen = t_end > t_in  # rays that cross the unit sphere before their hit
    surface = origins[hit] + depth[hit, None] * directions[hit]

    starts, ends = t_in[seen], t_end[seen]
    uniform = starts[:, None] + rng.uniform(size=(len(starts), free_per_ray)) * (ends - starts)[:, None]
    rays = np.repeat(np.flatnonzero(seen), free_per_ray)
    t_free = [uniform.reshape(-1)]
    if near_per_ray and hit.any():
        near = np.flatnonzero(hit & seen)
        gap = np.abs(rng.normal(0.0, near_std, (len(near), near_per_ray)))
        t_near = np.maximum(t_end[near, None] - gap, t_in[near, None])
        rays = np.concatenate([rays, np.repeat(near, near_per_ray)])
        t_free.append(t_near.reshape(-1))
    t_free = np.concatenate(t_free)
    keep = t_free < t_end[rays] - 1e-6  # strictly in front of the surface
    free = origins[rays[keep]] + t_free[keep, None] * directions[rays[keep]]

    if len(surface):
        upper, _ = scipy.spatial.cKDTree(surface).query(free)
    else:  # nothing seen: free space is only known to be outside
        upper = np.full(len(free), np.inf)
    rows_surface = np.concatenate([surface, np.zeros((len(surface), 2))], axis=1)
    rows_free = np.concatenate([free, np.zeros((len(free), 1)), upper[:, None]], axis=1)
    return np.concatenate([rows_surface, rows_free]).astype(np.float32)


# Normalised units (the unit sphere): offsets along the normals doubling from inside the thinnest parts of a chair
# to the decoder's clamp (0.1), so the observations cover the band the decoder was trained on, as SDF samples do
# (docs/experiments.md, "Fitting a scan").
NORMAL_OFFSETS = (0.005, 0.01, 0.02, 0.04, 0.08)


def oriented_point_samples(points, normals, offsets=NORMAL_OFFSETS, free_points: int | None = None,
                           seed: int = 0) -> np.ndarray:
    """(M, 4) float32 SDF samples x, y, z, sdf of a scan: N surface points (N, 3) with outward normals (N, 3),
    normalised frame.

    Each point at sdf 0; each point moved by every `offset` along and against its normal; and
    `free_points` (default N) uniform points in the unit cube. The moved and uniform points get
    the signed distance to the scan: the distance to the nearest scan point, positive on the side
    its normal points to (exact near a densely sampled surface, as DeepSDF's samples along the
    normals assume; a point moved into a thin leg and out of its far side is outside again).

    ValueError naming the input when the arrays are not (N, 3), empty, of different lengths, not finite, or a
    normal has no direction."""
    points = np.asarray(points, np.float64)
    if normals is None:
        raise ValueError("normals: surface points need their normals (N, 3) to say which side is outside")
    normals = np.asarray(normals, np.float64)
    for name, a in (("points", points), ("normals", normals)):
        if a.ndim != 2 or a.shape[1] != 3 or not len(a):
            raise ValueError(f"{name}: expected (N, 3) with N > 0, got shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name}: {int(np.sum(~np.isfinite(a).all(axis=1)))} rows are NaN or infinite")
    if len(points) != len(normals):
        raise ValueError(f"points and normals: {len(points)} points but {len(normals)} normals")
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    if np.any(length < 1e-8):
        raise ValueError(f"normals: {int(np.sum(length < 1e-8))} have zero length")
    unit = normals / length
    rng = np.random.default_rng(seed)
    moved = [points + sign * t * unit for t in offsets for sign in (1.0, -1.0)]
    free = rng.uniform(-1.0, 1.0, (len(points) if free_points is None else free_points, 3))
    queries = np.concatenate([*moved, free])
    distance, nearest = scipy.spatial.cKDTree(points).query(queries)
    side = np.sign(np.sum((queries - points[nearest]) * unit[nearest], axis=1))
    sdf = np.where(side == 0, 1.0, side) * distance
    return np.concatenate([np.concatenate([points, np.zeros((len(points), 1))], axis=1),
                           np.concatenate([queries, sdf[:, None]], axis=1)]).astype(np.float32)


def partial_camera(config) -> camera_lib.Camera:
    """The depth camera of `config.fit`: partial_azimuth / partial_elevation at config.render's distance and focal."""
    fc, rc = config.fit, config.render
    resolution = int(fc.partial_resolution)
    return camera_lib.Camera(float(fc.partial_azimuth), float(fc.partial_elevation), float(rc.distance),
                             float(rc.focal) * resolution / float(rc.resolution), resolution, resolution)
