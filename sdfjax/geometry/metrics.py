"""Surface reconstruction metrics: Chamfer, EMD, F-score and normal consistency.

    points, normals = sdf_lib.sample_surface(mesh, 30_000, rng)
    report = evaluate_mesh(mesh, gt_points, gt_normals, normalization)

Definitions (docs/design.md, "Conventions"):

  chamfer             DeepSDF (Park et al. 2019, Sec. 6 and its evaluate.py): 30,000 points
                      on each surface, *in the original frame*,
                      CD = mean_a min_b |a - b|^2 + mean_b min_a |a - b|^2, reported x1000.
  emd                 Sketch2Shape: 4,096 points on each surface, the exact optimal one-to-one
                      assignment, mean Euclidean distance of matched pairs.
  fscore@tau          Tatarchenko et al. 2019: precision = share of generated points within
                      tau of the ground truth, recall = the converse, F = 2PR / (P + R).
  normal_consistency  Mescheder et al. 2019 (Occupancy Networks): mean |n_a . n_b| of each
                      point's normal and its nearest neighbour's, averaged over both ways.

EMD, F-score and normal consistency are computed in the normalised frame (unit sphere),
where tau = 0.01 and 0.02 mean a fixed share of the shape's size. An empty or degenerate
mesh gives NaN for every metric and a warning naming the shape, never an exception.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.optimize
import scipy.spatial
import trimesh

from sdfjax.geometry import mesh as mesh_lib
from sdfjax.geometry import sdf as sdf_lib

CHAMFER_POINTS = 30_000
EMD_POINTS = 4_096
FSCORE_THRESHOLDS = (0.01, 0.02)
METRIC_NAMES = ("chamfer", "emd", "fscore@0.01", "fscore@0.02", "normal_consistency")


def nearest_distances(queries: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each query to its nearest point, and that point's index."""
    return scipy.spatial.cKDTree(points).query(queries, k=1, workers=-1)


def neighbours(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(distance, index) of each point of `a`'s nearest in `b`, then of each of `b`'s nearest in `a`: one query
    each way, shared by Chamfer, F-score and normal consistency."""
    return (*nearest_distances(a, b), *nearest_distances(b, a))


def chamfer_distance(a: np.ndarray, b: np.ndarray, near=None) -> float:
    """DeepSDF's Chamfer distance: sum of the two mean squared nearest-neighbour distances (`near`:
    `neighbours(a, b)` when already known)."""
    d_ab, _, d_ba, _ = neighbours(a, b) if near is None else near
    return float(np.mean(d_ab**2) + np.mean(d_ba**2))


def earth_movers_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance of the optimal bijection between equal-sized point sets (exact, O(n^3))."""
    if len(a) != len(b):
        raise ValueError(f"EMD needs equal point counts, got {len(a)} and {len(b)}")
    cost = scipy.spatial.distance.cdist(a, b)
    rows, cols = scipy.optimize.linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def fscore(a: np.ndarray, b: np.ndarray, tau: float, near=None) -> float:
    """F-score of generated points `a` against ground truth `b` at distance `tau` (`near`: `neighbours(a, b)`)."""
    d_ab, _, d_ba, _ = neighbours(a, b) if near is None else near
    precision = np.mean(d_ab < tau)
    recall = np.mean(d_ba < tau)
    return float(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))


def normal_consistency(a: np.ndarray, a_normals: np.ndarray, b: np.ndarray, b_normals: np.ndarray,
                       near=None) -> float:
    """Mean |cos| between each point's normal and its nearest neighbour's, both directions (`near`:
    `neighbours(a, b)`)."""
    _, ab, _, ba = neighbours(a, b) if near is None else near
    cos_ab = np.abs(np.sum(a_normals * b_normals[ab], axis=-1))
    cos_ba = np.abs(np.sum(b_normals * a_normals[ba], axis=-1))
    return float((cos_ab.mean() + cos_ba.mean()) / 2)


def is_degenerate(mesh: trimesh.Trimesh | None) -> bool:
    """True for a missing mesh, no faces, or zero total area (nothing to sample)."""
    return mesh is None or len(mesh.faces) == 0 or not np.isfinite(mesh.area) or mesh.area <= 0


def nan_metrics() -> dict[str, float]:
    return {name: float("nan") for name in METRIC_NAMES}


def evaluate_mesh(mesh: trimesh.Trimesh | None, gt_points: np.ndarray, gt_normals: np.ndarray,
                  normalization: mesh_lib.Normalization, name: str = "", seed: int = 0,
                  emd_points: int = EMD_POINTS, chamfer_points: int = CHAMFER_POINTS) -> dict[str, float]:
    """All metrics of a reconstructed mesh against ground-truth surface samples.

    Args:
      mesh: the reconstruction in the normalised frame (or None if extraction failed).
      gt_points, gt_normals: (M, 3) ground-truth surface samples in the normalised frame
        (the dataset's `surface_samples`); DeepSDF uses M = 30,000.
      normalization: the shape's normalisation, to compute Chamfer in the original frame.
      name: the shape's obj_id, for the warning on a degenerate mesh.
      seed: seeds the sampling of the reconstruction's surface.

    Returns:
      {metric name: value}; every value NaN (with a warning) when `mesh` is degenerate.
    """
    if is_degenerate(mesh):
        warnings.warn(f"{name or 'mesh'}: the reconstructed mesh is empty or degenerate; its metrics are NaN",
                      stacklevel=2)
        return nan_metrics()
    rng = np.random.default_rng(seed)
    points, normals = sdf_lib.sample_surface(mesh, chamfer_points, rng)
    # Nearest neighbours are the same in both frames (the original is the normalised one scaled by 1 / scale and
    # moved), and distances scale by 1 / scale: one query each way serves every metric.
    near = neighbours(points, gt_points)
    result = {"chamfer": 1000.0 * chamfer_distance(points, gt_points, near) / normalization.scale**2}
    gen_idx = rng.choice(len(points), size=min(emd_points, len(points)), replace=False)
    gt_idx = rng.choice(len(gt_points), size=min(emd_points, len(gt_points)), replace=False)
    count = min(len(gen_idx), len(gt_idx))
    result["emd"] = earth_movers_distance(points[gen_idx[:count]], gt_points[gt_idx[:count]])
    for tau in FSCORE_THRESHOLDS:
        result[f"fscore@{tau}"] = fscore(points, gt_points, tau, near)
    result["normal_consistency"] = normal_consistency(points, normals, gt_points, gt_normals, near)
    return result
