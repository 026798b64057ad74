"""Mesh loading, validation and DeepSDF normalisation."""

import numpy as np
import pytest
import trimesh

from sdfjax.geometry import mesh as mesh_lib


def test_normalization_follows_deepsdf(tmp_path):
    mesh = trimesh.creation.box(extents=[2.0, 1.0, 4.0])
    mesh.apply_translation([10.0, -3.0, 5.0])
    norm = mesh_lib.compute_normalization(mesh)
    np.testing.assert_allclose(norm.offset, [-10.0, 3.0, -5.0])
    normalized = mesh_lib.normalize_mesh(mesh, norm)
    np.testing.assert_allclose(np.linalg.norm(normalized.vertices, axis=1).max(), 1 / 1.03)
    np.testing.assert_allclose(norm.to_original(normalized.vertices), mesh.vertices, atol=1e-12)
    assert mesh_lib.Normalization.from_json(norm.to_json()).scale == norm.scale


def test_normalization_ignores_unused_vertices():
    mesh = trimesh.creation.box()
    vertices = np.concatenate([mesh.vertices, [[100.0, 100.0, 100.0]]])
    norm = mesh_lib.compute_normalization(trimesh.Trimesh(vertices, mesh.faces, process=False))
    np.testing.assert_allclose(norm.offset, 0, atol=1e-12)


def test_multi_part_scene_loads_as_one_mesh(tmp_path):
    scene = trimesh.Scene([trimesh.creation.box(), trimesh.creation.icosphere(1)])
    path = tmp_path / "scene.glb"
    scene.export(path)
    assert len(mesh_lib.load_mesh(path).faces) == 12 + 80


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize("content,message", [
    (None, "mesh file not found"),
    ("\x00\x01garbage\x02", "cannot read mesh|no triangles|empty mesh"),
    ("# nothing\n", "no triangles|empty mesh"),
    ("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN or infinite"),
    ("v inf 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN or infinite"),
    ("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "zero-area"),
])
def test_bad_meshes_get_one_clear_message(tmp_path, content, message):
    path = tmp_path / "bad.obj"
    if content is not None:
        _write(path, content)
    with pytest.raises(mesh_lib.MeshError, match=message) as info:
        mesh_lib.load_mesh(path)
    assert str(path) in str(info.value)
