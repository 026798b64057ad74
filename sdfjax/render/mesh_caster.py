"""Ground-truth renders of triangle meshes by ray casting, with the tracer's cameras.

    out = cast_mesh(vertices, faces, camera)  # hit, depth, normals per pixel

Rays come from `sdfjax.render.camera`, so a mesh and the SDF of the same shape render
pixel for pixel alike. Intersections use Embree through point-cloud-utils. Normals are
the hit faces' normals, turned to face the camera: ShapeNet meshes are not consistently
oriented, and what a normal map shows is the side the camera sees.
"""

from __future__ import annotations

import numpy as np
import point_cloud_utils as pcu

from sdfjax.render import camera as camera_lib


def cast_mesh(vertices: np.ndarray, faces: np.ndarray, camera: camera_lib.Camera) -> dict[str, np.ndarray]:
    """Per pixel (H*W,): hit (bool), depth (distance along the ray), normals (H*W, 3)."""
    origins, directions = camera.rays()
    v = np.ascontiguousarray(vertices, np.float64)
    f = np.ascontiguousarray(faces, np.int32)
    face_id, _, t = pcu.ray_mesh_intersection(v, f, np.ascontiguousarray(origins, np.float64),
                                              np.ascontiguousarray(directions, np.float64))
    hit = (face_id >= 0) & np.isfinite(t)
    tri = v[f[np.where(hit, face_id, 0)]]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-20)
    facing = np.sum(normals * directions, axis=1) > 0
    normals[facing] *= -1
    normals[~hit] = 0.0
    return {"hit": hit, "depth": np.where(hit, t, 0.0).astype(np.float32), "normals": normals.astype(np.float32)}


def normal_map_uint8(normals: np.ndarray, hit: np.ndarray, camera: camera_lib.Camera) -> np.ndarray:
    """(H, W, 3) uint8 image of (n + 1) / 2 on white (docs/design.md, "Conventions")."""
    image = np.where(hit[:, None], (normals + 1.0) / 2.0, 1.0).reshape(camera.height, camera.width, 3)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
