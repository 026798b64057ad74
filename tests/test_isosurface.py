"""Marching cubes grids: DeepSDF's frame, and coarse-to-fine equal to the dense grid."""

import numpy as np
import pytest

from sdfjax.geometry import isosurface
from sdfjax.geometry import mesh as mesh_lib


def sphere(p, r=0.6):
    return np.linalg.norm(p, axis=-1) - r


def box(p, half=(0.5, 0.3, 0.4)):
    q = np.abs(p) - np.asarray(half)
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)


def torus(p, big=0.5, small=0.15):
    q = np.stack([np.linalg.norm(p[:, [0, 2]], axis=-1) - big, p[:, 1]], -1)
    return np.linalg.norm(q, axis=-1) - small


def chair_like(p):  # a union of parts, as the procedural chairs are
    seat = box(p - [0, 0, 0], (0.4, 0.04, 0.4))
    back = box(p - [0, 0.45, -0.36], (0.4, 0.4, 0.04))
    legs = [box(p - [x, -0.45, z], (0.04, 0.45, 0.04)) for x in (-0.35, 0.35) for z in (-0.35, 0.35)]
    return np.minimum.reduce([seat, back, *legs])


def test_grid_spans_the_unit_cube_with_voxel_two_over_n_minus_one():
    axis = isosurface.grid_coordinates(9)
    assert axis[0] == -1 and axis[-1] == 1 and np.allclose(np.diff(axis), 2 / 8)
    values = isosurface.sdf_grid_dense(lambda p: p[:, 0] + 2 * p[:, 1] + 3 * p[:, 2], 9)
    assert values[8, 0, 0] == pytest.approx(1 - 2 - 3) and values[0, 8, 8] == pytest.approx(-1 + 2 + 3)


def test_marching_cubes_of_a_sphere_lies_on_it_with_outward_faces():
    mesh = isosurface.marching_cubes(isosurface.sdf_grid_dense(sphere, 64))
    radii = np.linalg.norm(mesh.vertices, axis=1)
    assert np.abs(radii - 0.6).max() < 2e-3
    assert mesh.volume > 0 and mesh.volume == pytest.approx(4 / 3 * np.pi * 0.6**3, rel=0.01)
    assert isosurface.marching_cubes(isosurface.sdf_grid_dense(lambda p: sphere(p) + 5, 16)) is None


@pytest.mark.parametrize("sdf", [sphere, box, torus, chair_like])
@pytest.mark.parametrize("resolution", [64, 97])
def test_coarse_to_fine_gives_the_dense_mesh_with_fewer_queries(sdf, resolution):
    dense = isosurface.sdf_grid_dense(sdf, resolution)
    values, queries = isosurface.sdf_grid_coarse_to_fine(sdf, resolution, block_sizes=(8, 2, 1))
    a, b = isosurface.marching_cubes(dense), isosurface.marching_cubes(values)
    np.testing.assert_array_equal(a.faces, b.faces)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    assert np.array_equal(np.sign(values), np.sign(dense))
    assert queries < 0.5 * resolution**3


def test_coarse_to_fine_rejects_bad_block_sizes():
    with pytest.raises(ValueError, match="block_sizes"):
        isosurface.sdf_grid_coarse_to_fine(sphere, 33, block_sizes=(8, 3, 1))
    with pytest.raises(ValueError, match="block_sizes"):
        isosurface.sdf_grid_coarse_to_fine(sphere, 33, block_sizes=(8, 2))


def test_meshes_map_back_to_the_original_frame():
    mesh = isosurface.marching_cubes(isosurface.sdf_grid_dense(sphere, 32))
    normalization = mesh_lib.Normalization(np.array([1.0, -2.0, 0.5]), 0.25)
    original = isosurface.to_original_frame(mesh, normalization)
    np.testing.assert_allclose(normalization.to_normalized(original.vertices), mesh.vertices, atol=1e-12)


def far_sighted_shell(p):  # like a learned SDF far from training samples: flat at 1, then a steep dip to the surface
    return 1.0 - 2.0 * np.exp(-(((np.linalg.norm(p - np.array([0.031, -0.017, 0.023]), axis=-1) - 0.47) / 0.03) ** 2))


def test_a_steeper_field_than_assumed_loses_surface_and_the_measured_margin_keeps_it():
    resolution = 97
    dense = isosurface.sdf_grid_dense(far_sighted_shell, resolution)
    assumed, _ = isosurface.sdf_grid_coarse_to_fine(far_sighted_shell, resolution, block_sizes=(8, 2, 1),
                                                    lipschitz=1.5)
    lost = np.sum(np.sign(assumed) != np.sign(dense))
    assert lost > 1000  # blocks the shell crosses look far from it at their corners
    slope = isosurface.measured_lipschitz(far_sighted_shell)
    assert 40 < slope < 2 * np.sqrt(2 / np.e) / 0.03 + 1e-3  # the steepest slope is 57, 0.03 / sqrt(2) from the surface
    auto, _ = isosurface.sdf_grid_coarse_to_fine(far_sighted_shell, resolution, block_sizes=(8, 2, 1), lipschitz=0)
    assert np.array_equal(np.sign(auto), np.sign(dense))
    np.testing.assert_array_equal(isosurface.marching_cubes(dense).faces, isosurface.marching_cubes(auto).faces)


def test_chunked_cuts_several_inputs_alike_and_pads_the_last_piece():
    calls = []

    def fn(a, b):
        calls.append((a.shape, a.dtype, b.dtype))
        return a * 10 + b

    a, b = np.arange(7, dtype=np.float64), np.arange(7, dtype=np.int32)[::-1].copy()
    out = isosurface.chunked(fn, 3)(a, b)
    np.testing.assert_array_equal(out, a * 10 + b)
    assert calls == [((3,), np.float32, np.int32)] * 3  # one shape (one compile); floats as float32
    with pytest.raises(ValueError, match="same number"):
        isosurface.chunked(fn, 3)(a, b[:5])
