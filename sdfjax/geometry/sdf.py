"""Signed distances to triangle meshes and DeepSDF's training samples.

Distances are exact point-to-triangle distances (libigl's AABB tree). Signs come from
the generalised winding number (Jacobson et al. 2013, fast approximation of Barill et
al. 2018) of a consistently re-oriented copy of the faces (`mesh.orient_faces`): the
winding number tolerates holes and overlapping parts, and the re-orientation removes
its one weakness, flipped triangles. A point is inside where the winding number > 1/2.

Convention: negative inside, positive outside, in the units of the mesh's frame.
"""

from __future__ import annotations

import dataclasses

import igl
import numpy as np
import trimesh

from sdfjax.geometry import mesh as mesh_lib


@dataclasses.dataclass(frozen=True)
class SignedDistanceField:
    """A mesh prepared for repeated signed-distance queries (faces already oriented)."""

    vertices: np.ndarray  # (V, 3) float64
    faces: np.ndarray  # (F, 3) int64, consistently oriented outward

    @classmethod
    def from_mesh(cls, mesh: trimesh.Trimesh) -> "SignedDistanceField":
        vertices = np.ascontiguousarray(mesh.vertices, np.float64)
        return cls(vertices, mesh_lib.orient_faces(vertices, np.asarray(mesh.faces)))

    def unsigned_distance(self, points: np.ndarray) -> np.ndarray:
        """Exact distance from each point to the nearest triangle, (N,) float64."""
        sq, _, _ = igl.point_mesh_squared_distance(_f64(points), self.vertices, self.faces)
        return np.sqrt(sq)

    def winding_number(self, points: np.ndarray) -> np.ndarray:
        """Fast generalised winding number of each point, (N,) float64."""
        return igl.fast_winding_number(self.vertices, self.faces, _f64(points))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Signed distance of each point, (N,) float64: negative inside."""
        distance = self.unsigned_distance(points)
        inside = self.winding_number(points) > 0.5
        return np.where(inside, -distance, distance)


def _f64(points: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(points, np.float64).reshape(-1, 3))


def sample_surface(
    mesh: trimesh.Trimesh, count: int, rng: np.random.Generator, faces: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted uniform points on the surface and their (unit) face normals.

    Args:
      mesh: the triangle mesh.
      count: number of points.
      rng: source of randomness (the result is a function of its state).
      faces: optional re-oriented faces (`orient_faces`) whose normals to return;
        defaults to the mesh's own faces.

    Returns:
      points (count, 3) and normals (count, 3), float64.
    """
    faces = np.asarray(mesh.faces if faces is None else faces)
    tri = np.asarray(mesh.vertices, np.float64)[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    double_area = np.linalg.norm(cross, axis=1)
    face_index = rng.choice(len(faces), size=count, p=double_area / double_area.sum())
    # Uniform barycentric coordinates by reflecting the unit square onto the triangle.
    u, v = rng.random((2, count))
    flip = u + v > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    t = tri[face_index]
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    normals = cross[face_index] / np.maximum(double_area[face_index], 1e-300)[:, None]
    return points, normals


@dataclasses.dataclass(frozen=True)
class SamplingSpec:
    """DeepSDF's SDF sampling (Park et al. 2019, Sec. 5 and its released preprocessing).

    `near_fraction` of the samples are surface points perturbed by isotropic Gaussian
    noise, each surface point perturbed once per variance in `variances` (DeepSDF:
    variance 0.005 and 0.0005, i.e. std 0.0707 and 0.0224); the rest are uniform in the
    cube [-bound, bound]^3.
    """

    num_samples: int = 500_000
    near_fraction: float = 47 / 50
    variances: tuple[float, ...] = (0.005, 0.0005)
    bound: float = 1.0

    @property
    def num_surface_points(self) -> int:
        return int(round(self.num_samples * self.near_fraction)) // len(self.variances)

    @property
    def num_near(self) -> int:
        return self.num_surface_points * len(self.variances)

    @property
    def num_uniform(self) -> int:
        return self.num_samples - self.num_near


def sample_sdf(
    field: SignedDistanceField, mesh: trimesh.Trimesh, spec: SamplingSpec, rng: np.random.Generator
) -> np.ndarray:
    """DeepSDF training samples of a normalised mesh, (num_samples, 4) float32 [x, y, z, sdf].

    Rows are in the order: perturbations with variances[0], with variances[1], ...,
    then the uniform samples.
    """
    surface, _ = sample_surface(mesh, spec.num_surface_points, rng)
    near = [surface + rng.normal(scale=np.sqrt(var), size=surface.shape) for var in spec.variances]
    uniform = rng.uniform(-spec.bound, spec.bound, size=(spec.num_uniform, 3))
    points = np.concatenate(near + [uniform], axis=0)
    sdf = field(points)
    return np.concatenate([points, sdf[:, None]], axis=1).astype(np.float32)
