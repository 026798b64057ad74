"""Reconstruction metrics against brute-force NumPy definitions."""

import itertools
import warnings

import numpy as np
import pytest
import trimesh

from sdfjax.geometry import mesh as mesh_lib
from sdfjax.geometry import metrics
from sdfjax.geometry import sdf as sdf_lib


def _pairwise(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def test_chamfer_is_deepsdfs_sum_of_mean_squared_nearest_distances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(70, 3))
    d = _pairwise(a, b)
    expected = np.mean(d.min(1) ** 2) + np.mean(d.min(0) ** 2)
    np.testing.assert_allclose(metrics.chamfer_distance(a, b), expected, rtol=1e-12)
    assert metrics.chamfer_distance(a, a) == 0.0


def test_emd_is_the_exact_optimal_assignment():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    d = _pairwise(a, b)
    best = min(np.mean(d[np.arange(6), list(p)]) for p in itertools.permutations(range(6)))
    np.testing.assert_allclose(metrics.earth_movers_distance(a, b), best, rtol=1e-12)
    with pytest.raises(ValueError, match="equal point counts"):
        metrics.earth_movers_distance(a, b[:5])


def test_fscore_and_normal_consistency_against_brute_force():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(size=(40, 3)), rng.uniform(size=(60, 3))
    na, nb = rng.normal(size=(40, 3)), rng.normal(size=(60, 3))
    na /= np.linalg.norm(na, axis=1, keepdims=True)
    nb /= np.linalg.norm(nb, axis=1, keepdims=True)
    d = _pairwise(a, b)
    tau = 0.15
    precision, recall = np.mean(d.min(1) < tau), np.mean(d.min(0) < tau)
    np.testing.assert_allclose(metrics.fscore(a, b, tau), 2 * precision * recall / (precision + recall))
    nc = (np.abs((na * nb[d.argmin(1)]).sum(1)).mean() + np.abs((nb * na[d.argmin(0)]).sum(1)).mean()) / 2
    np.testing.assert_allclose(metrics.normal_consistency(a, na, b, nb), nc, rtol=1e-12)
    assert metrics.fscore(a, a + 10.0, tau) == 0.0


def test_a_mesh_against_its_own_samples_scores_near_perfect_and_chamfer_uses_the_original_frame():
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.8)
    rng = np.random.default_rng(3)
    points, normals = sdf_lib.sample_surface(sphere, 30_000, rng)
    identity = mesh_lib.Normalization(np.zeros(3), 1.0)
    m = metrics.evaluate_mesh(sphere, points, normals, identity, emd_points=512)
    assert m["chamfer"] < 0.3 and m["fscore@0.02"] > 0.95 and m["normal_consistency"] > 0.99
    assert m["emd"] < 0.2  # two independent 512-point samplings are ~0.1 apart
    # Half the scale in the normalised frame = twice the size in the original: chamfer x4.
    halved = metrics.evaluate_mesh(sphere, points, normals, mesh_lib.Normalization(np.zeros(3), 0.5),
                                   emd_points=512)
    np.testing.assert_allclose(halved["chamfer"], 4 * m["chamfer"], rtol=1e-9)
    assert halved["fscore@0.01"] == m["fscore@0.01"]


def test_empty_or_degenerate_mesh_gives_nan_and_a_warning_naming_the_shape():
    points = np.zeros((10, 3))
    identity = mesh_lib.Normalization(np.zeros(3), 1.0)
    flat = trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], process=False)
    for mesh in (None, trimesh.Trimesh(), flat):
        with pytest.warns(UserWarning, match="chair_7"):
            m = metrics.evaluate_mesh(mesh, points, points, identity, name="chair_7")
        assert set(m) == set(metrics.METRIC_NAMES) and all(np.isnan(v) for v in m.values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not metrics.is_degenerate(trimesh.creation.box())
