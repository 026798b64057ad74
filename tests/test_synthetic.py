"""The procedural family: deterministic per (seed, index), every structure choice present, no near-duplicates."""

import numpy as np
import pytest
import scipy.spatial
import trimesh

from data_gen import synthetic
from sdfjax.geometry import mesh as mesh_lib
from sdfjax.geometry import sdf as sdf_lib

EVERY_CHOICE = {
    "chair": {"style": set(synthetic.CHAIR_STYLES), "back": set(synthetic.CHAIR_BACKS) | {"shell"},
              "arms": set(synthetic.CHAIR_ARMS), "seat": set(synthetic.CHAIR_SEATS) | {"shell"},
              "legs": {"four", "four_stretchers", "three", "five", "pedestal_disc", "pedestal_star", "sled",
                       "cantilever", "wire_sled", "feet"},
              "defect": {"clean", "open_part", "duplicated_part"}},
    "table": {"top": set(synthetic.TABLE_TOPS), "base": set(synthetic.TABLE_BASES), "shelf": {True, False},
              "legs": {"four", "four_stretchers", "three", "five", "pedestal_disc", "pedestal_star"},
              "defect": {"clean", "open_part", "duplicated_part"}},
}


def _normalized(category, index):
    mesh = synthetic.make_shape(category, 0, index)
    return mesh_lib.normalize_mesh(mesh, mesh_lib.compute_normalization(mesh))


@pytest.mark.parametrize("category", sorted(synthetic.CATEGORIES))
def test_shapes_are_a_pure_function_of_seed_and_index(category):
    late, _ = synthetic.shape_and_structure(category, 0, 7)
    for i in range(7):  # other shapes first: no shared random state
        synthetic.make_shape(category, 0, i)
    again, structure = synthetic.shape_and_structure(category, 0, 7)
    np.testing.assert_array_equal(late.vertices, again.vertices)
    np.testing.assert_array_equal(late.faces, again.faces)
    assert structure == synthetic.shape_and_structure(category, 0, 7)[1]
    other = synthetic.make_shape(category, 1, 7)
    assert other.vertices.shape != late.vertices.shape or not np.allclose(other.vertices, late.vertices)


@pytest.mark.slow
@pytest.mark.parametrize("category", sorted(synthetic.CATEGORIES))
def test_64_shapes_cover_every_structure_choice(category):
    seen = {key: set() for key in EVERY_CHOICE[category]}
    for i in range(64):
        _, structure = synthetic.shape_and_structure(category, 0, i)
        for key in seen:
            if key in structure:
                seen[key].add(structure[key])
    assert seen == EVERY_CHOICE[category]


@pytest.mark.slow
def test_defects_are_real_and_signs_survive_them():
    """Open parts have boundary edges, duplicated parts overlap; preprocessing's signs still match the clean shape."""
    kinds = {}
    for i in range(64):
        _, structure = synthetic.shape_and_structure("chair", 0, i)
        kinds.setdefault(structure["defect"], i)
    open_mesh = synthetic.make_shape("chair", 0, kinds["open_part"])
    assert not open_mesh.is_watertight
    duplicated = synthetic.make_shape("chair", 0, kinds["duplicated_part"])
    assert len(duplicated.faces) > len(duplicated.split(only_watertight=False)[0].faces)
    mesh = _normalized("chair", kinds["open_part"])
    points = np.random.default_rng(0).uniform(-1, 1, (20_000, 3))
    inside = sdf_lib.SignedDistanceField.from_mesh(mesh)(points) < 0
    assert 0.01 < inside.mean() < 0.5  # a chair fills part of its box: an open part did not flood it


def _chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """DeepSDF's Chamfer (x1000) of two point sets in the normalised frame."""
    da, _ = scipy.spatial.cKDTree(b).query(a)
    db, _ = scipy.spatial.cKDTree(a).query(b)
    return 1000 * (np.mean(da**2) + np.mean(db**2))


@pytest.mark.slow
def test_no_two_of_256_chairs_are_near_duplicates():
    meshes = [_normalized("chair", i) for i in range(256)]
    coarse = [np.asarray(trimesh.sample.sample_surface(m, 256, seed=i)[0]) for i, m in enumerate(meshes)]
    trees = [scipy.spatial.cKDTree(p) for p in coarse]
    distance = np.full((256, 256), np.inf)
    for i in range(256):
        for j in range(i + 1, 256):
            distance[i, j] = np.mean(trees[j].query(coarse[i])[0] ** 2) + np.mean(trees[i].query(coarse[j])[0] ** 2)
    closest = np.dstack(np.unravel_index(np.argsort(distance, axis=None)[:10], distance.shape))[0]

    def fine(i, seed):
        return np.asarray(trimesh.sample.sample_surface(meshes[i], 8192, seed=seed)[0])

    for i, j in closest:  # the 10 nearest pairs by the coarse distance, measured finely
        floor = _chamfer(fine(i, 1), fine(i, 2))  # two samplings of one shape: what "identical" measures
        assert _chamfer(fine(i, 1), fine(j, 1)) > 3 * floor, (i, j)


def test_a_multi_category_set_alternates_categories_in_every_split(tmp_path):
    from sdfjax.data import layout

    shapes = synthetic.write_dataset(str(tmp_path / "mixed"), "chair,table", num_train=4, num_val=2, num_test=2)
    assert [s.obj_id.split("_")[0] for s in shapes] == ["chair", "table"] * 4
    assert [s.category for s in shapes] == ["chair", "table"] * 4
    assert [s.label for s in shapes if s.split == "train"] == [0, 1, 2, 3]
    assert layout.read_metainfo(str(tmp_path / "mixed")) == shapes
    table = trimesh.load(tmp_path / "mixed" / "shapes" / shapes[3].obj_id / "mesh.obj", force="mesh")
    np.testing.assert_allclose(table.vertices, synthetic.make_shape("table", 0, 1).vertices, atol=1e-5)
    # Each category's shapes, splits included, are those of its own set of half the size.
    tables = synthetic.write_dataset(str(tmp_path / "tables"), "table", num_train=2, num_val=1, num_test=1)
    assert [(s.obj_id, s.split) for s in tables] == [(s.obj_id, s.split) for s in shapes if s.category == "table"]
    assert all(s.category == "" for s in tables)
