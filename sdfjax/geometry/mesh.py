"""Loading, checking, orienting and normalising triangle meshes.

Every mesh that enters sdfjax goes through `load_mesh`, which merges multi-part scenes
into one triangle soup and rejects input that would silently poison SDF samples (no
faces, NaN/inf vertices, zero area). Errors are `MeshError`s whose message names the file.

Frames: the *original* frame is the one the file is written in. The *normalised* frame
is DeepSDF's (Park et al. 2019, supplementary, "Data preparation"):

    x_normalised = (x_original + offset) * scale

with `offset = -centre`, `centre` the bounding-box centre of the vertices used by faces,
and `scale` chosen so that the farthest such vertex lies at radius 1 / 1.03.
"""

from __future__ import annotations

import dataclasses
import os

import igl
import numpy as np
import trimesh

MESH_EXTENSIONS = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")

# DeepSDF leaves a 3% margin between the unit sphere and the normalised shape.
NORMALIZATION_MARGIN = 1.03


class MeshError(ValueError):
    """A mesh file that cannot be used; the message names the file and the reason."""


def load_mesh(path: str | os.PathLike) -> trimesh.Trimesh:
    """Loads any mesh file trimesh reads as one triangle mesh and checks it.

    Multi-part files (OBJ groups, GLB scenes) are concatenated into one mesh, with their
    scene-graph transforms applied, without merging or repairing anything: overlapping
    and open parts stay as they are (the SDF code copes with them).

    Raises:
      MeshError: the file is missing or unreadable, or the mesh fails `check_mesh`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MeshError(f"{path}: mesh file not found")
    try:
        loaded = trimesh.load(path, force="mesh", process=False, skip_materials=True)
    except Exception as e:  # trimesh raises many types for bad files; report them all alike.
        raise MeshError(f"{path}: cannot read mesh ({type(e).__name__}: {e})") from e
    if not isinstance(loaded, trimesh.Trimesh):
        raise MeshError(f"{path}: file holds no triangles (got {type(loaded).__name__})")
    check_mesh(loaded, path)
    return loaded


def check_mesh(mesh: trimesh.Trimesh, name: str) -> None:
    """Raises MeshError, naming `name`, if the mesh cannot give a meaningful SDF."""
    vertices = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.faces)
    if len(faces) == 0 or len(vertices) == 0:
        raise MeshError(f"{name}: empty mesh (no faces)")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshError(f"{name}: face indices out of range for {len(vertices)} vertices")
    used = vertices[np.unique(faces)]
    if not np.all(np.isfinite(used)):
        bad = int(np.sum(~np.all(np.isfinite(used), axis=1)))
        raise MeshError(f"{name}: {bad} vertices are NaN or infinite")
    if not float(mesh.area) > 0.0:
        raise MeshError(f"{name}: zero-area mesh (all {len(faces)} faces are degenerate)")


@dataclasses.dataclass(frozen=True)
class Normalization:
    """`x_normalised = (x_original + offset) * scale` (DeepSDF's convention)."""

    offset: np.ndarray  # (3,) float64
    scale: float

    def to_normalized(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, np.float64) + self.offset) * self.scale

    def to_original(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, np.float64) / self.scale - self.offset

    def to_json(self) -> dict:
        return {"offset": [float(v) for v in self.offset], "scale": float(self.scale)}

    @classmethod
    def from_json(cls, d: dict) -> "Normalization":
        return cls(offset=np.asarray(d["offset"], np.float64), scale=float(d["scale"]))


def compute_normalization(mesh: trimesh.Trimesh) -> Normalization:
    """DeepSDF's normalisation of a mesh's used vertices (`points_normalization`)."""
    return points_normalization(np.asarray(mesh.vertices, np.float64)[np.unique(mesh.faces)], "mesh")


def points_normalization(points: np.ndarray, name: str = "points") -> Normalization:
    """DeepSDF's normalisation: bounding-box centre of (N, 3) points at the origin, the farthest at 1/1.03.
    MeshError naming `name` when they are a single point."""
    centre = 0.5 * (points.min(axis=0) + points.max(axis=0))
    radius = float(np.max(np.linalg.norm(points - centre, axis=1)))
    if not radius > 0:
        raise MeshError(f"{name} has a single point: it cannot be normalised")
    return Normalization(offset=-centre, scale=1.0 / (radius * NORMALIZATION_MARGIN))


def normalize_mesh(mesh: trimesh.Trimesh, normalization: Normalization) -> trimesh.Trimesh:
    """The mesh in the normalised frame, keeping only vertices used by faces."""
    faces = np.asarray(mesh.faces)
    used, remapped = np.unique(faces, return_inverse=True)
    vertices = normalization.to_normalized(np.asarray(mesh.vertices)[used])
    return trimesh.Trimesh(vertices, remapped.reshape(faces.shape), process=False)


def orient_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces re-ordered so each connected patch is consistently oriented, outward.

    ShapeNet meshes mix front- and back-facing triangles. A winding number over such a
    soup is wrong near every flipped face, so first make the winding consistent within
    each edge-connected patch (breadth-first over shared edges, libigl's `bfs_orient`),
    then flip every patch whose signed volume is negative, i.e. whose normals point
    inward. The volume of an open patch (a closed part with a few holes) is still
    dominated by its closed part, so its sign is still meaningful.
    """
    vertices = np.ascontiguousarray(vertices, np.float64)
    oriented, patch = igl.bfs_orient(np.ascontiguousarray(faces, np.int64))
    tri = vertices[oriented]
    # Signed volume of the cone from the patch centroid to each triangle (divergence theorem).
    num_patches = int(patch.max()) + 1
    counts = np.bincount(patch, minlength=num_patches)[:, None]
    centroid = np.zeros((num_patches, 3))
    np.add.at(centroid, patch, tri.mean(axis=1))
    centroid /= np.maximum(counts, 1)
    rel = tri - centroid[patch][:, None, :]
    cone_volume = np.einsum("ij,ij->i", rel[:, 0], np.cross(rel[:, 1], rel[:, 2])) / 6.0
    patch_volume = np.bincount(patch, weights=cone_volume, minlength=num_patches)
    flip = patch_volume[patch] < 0
    oriented[flip] = oriented[flip][:, ::-1]
    return oriented
