"""Signed distances and DeepSDF samples against analytic answers."""

import numpy as np
import pytest
import trimesh

from sdfjax.geometry import mesh as mesh_lib
from sdfjax.geometry import sdf as sdf_lib


def _box_sdf(points, half):
    """Exact SDF of an axis-aligned box centred at the origin (Quilez)."""
    q = np.abs(points) - half
    return np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)


def _near_and_uniform(rng, surface, n):
    return np.concatenate([surface + rng.normal(scale=0.07, size=surface.shape),
                           surface + rng.normal(scale=0.02, size=surface.shape),
                           rng.uniform(-1, 1, (n, 3))])


def test_box_distances_match_analytic_sdf():
    half = np.array([0.5, 0.3, 0.7])
    box = trimesh.creation.box(extents=2 * half)
    rng = np.random.default_rng(0)
    surface, _ = sdf_lib.sample_surface(box, 5000, rng)
    points = _near_and_uniform(rng, surface, 5000)
    got = sdf_lib.SignedDistanceField.from_mesh(box)(points)
    np.testing.assert_array_less(np.abs(got - _box_sdf(points, half)), 1e-5)
    assert (got < 0).mean() > 0.2  # both signs are exercised


@pytest.mark.slow
def test_sphere_distances_match_analytic_sdf():
    # Subdivision 8: the polyhedron is within 3e-6 of the unit sphere.
    sphere = trimesh.creation.icosphere(subdivisions=8, radius=1.0)
    rng = np.random.default_rng(1)
    directions = rng.normal(size=(4000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = np.concatenate([rng.uniform(0.2, 1.8, 2000), 1 + rng.normal(scale=0.05, size=2000)])
    points = directions * radii[:, None]
    got = sdf_lib.SignedDistanceField.from_mesh(sphere)(points)
    np.testing.assert_array_less(np.abs(got - (radii - 1.0)), 1e-5)


def _damage(mesh, rng, remove=0.02, flip=0.10):
    faces = mesh.faces[rng.random(len(mesh.faces)) >= remove].copy()
    flipped = rng.random(len(faces)) < flip
    faces[flipped] = faces[flipped][:, ::-1]
    return trimesh.Trimesh(mesh.vertices, faces, process=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sphere", "torus", "chair"])
def test_signs_survive_holes_and_flipped_faces(name):
    from data_gen import synthetic

    mesh = {"sphere": lambda: trimesh.creation.icosphere(4, radius=0.8),
            "torus": lambda: trimesh.creation.torus(0.6, 0.2),
            "chair": lambda: mesh_lib.normalize_mesh(m := synthetic.make_shape("chair", 0, 3),
                                                     mesh_lib.compute_normalization(m))}[name]()
    rng = np.random.default_rng(2)
    spec = sdf_lib.SamplingSpec(num_samples=100_000, near_fraction=1.0)
    closed = sdf_lib.sample_sdf(sdf_lib.SignedDistanceField.from_mesh(mesh), mesh, spec, rng)
    damaged = sdf_lib.SignedDistanceField.from_mesh(_damage(mesh, rng))(closed[:, :3])
    agreement = np.mean(np.sign(damaged) == np.sign(closed[:, 3]))
    assert agreement >= 0.999, f"{name}: {agreement:.5f} of near-surface signs kept"


def test_flipped_faces_are_oriented_outward():
    sphere = trimesh.creation.icosphere(3)
    faces = sphere.faces.copy()
    faces[::3] = faces[::3, ::-1]
    oriented = mesh_lib.orient_faces(sphere.vertices, faces)
    tri = sphere.vertices[oriented]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert np.all(np.einsum("ij,ij->i", normals, tri.mean(axis=1)) > 0)


@pytest.mark.slow
def test_sample_statistics_follow_deepsdf():
    sphere = trimesh.creation.icosphere(6, radius=0.8)
    spec = sdf_lib.SamplingSpec(num_samples=200_000)
    samples = sdf_lib.sample_sdf(sdf_lib.SignedDistanceField.from_mesh(sphere), sphere, spec,
                                 np.random.default_rng(3))
    assert samples.shape == (200_000, 4) and samples.dtype == np.float32
    n = spec.num_surface_points
    assert 2 * n == spec.num_near == 188_000 and spec.num_uniform == 12_000  # 47/50 near, 3/50 uniform
    # The SDF of a surface point moved by isotropic noise is, to first order, the noise's
    # normal component: its variance is the configured variance.
    for block, variance in enumerate(spec.variances):
        sdf = samples[block * n:(block + 1) * n, 3]
        np.testing.assert_allclose(np.var(sdf), variance, rtol=0.05)
        np.testing.assert_allclose(np.var(samples[block * n:(block + 1) * n, :3] /
                                          np.linalg.norm(samples[block * n:(block + 1) * n, :3], axis=1,
                                                         keepdims=True), axis=0).sum(), 1.0, rtol=0.05)
    uniform = samples[2 * n:, :3]
    assert uniform.min() >= -1 and uniform.max() <= 1
    np.testing.assert_allclose(uniform.mean(axis=0), 0, atol=0.03)
    np.testing.assert_allclose(samples[2 * n:, 3], np.linalg.norm(uniform, axis=1) - 0.8, atol=2e-3)


def test_surface_samples_lie_on_surface_with_outward_normals():
    sphere = trimesh.creation.icosphere(5, radius=0.5)
    points, normals = sdf_lib.sample_surface(sphere, 10_000, np.random.default_rng(4))
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 0.5, atol=2e-3)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1, atol=1e-9)
    assert np.all(np.einsum("ij,ij->i", points, normals) > 0)
