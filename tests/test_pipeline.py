"""The data pipeline end to end: procedural shapes, import, preprocess, TFDS, bad input."""

import csv
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import trimesh

from data_gen import import_meshes, synthetic
from sdfjax import errors, limits, storage
from sdfjax.data import layout, pipeline, tfds_builder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def _files(root, obj_id):
    return {f: os.path.getmtime(os.path.join(layout.shape_dir(root, obj_id), f))
            for f in os.listdir(layout.shape_dir(root, obj_id))}


def test_synthetic_shapes_are_deterministic_and_varied(tmp_path):
    for category in synthetic.CATEGORIES:
        a, b = synthetic.make_shape(category, 0, 5), synthetic.make_shape(category, 0, 5)
        np.testing.assert_array_equal(a.vertices, b.vertices)
        assert len(synthetic.make_shape(category, 0, 6).vertices) != len(a.vertices) or \
            not np.allclose(synthetic.make_shape(category, 0, 6).vertices, a.vertices)
    shapes = synthetic.write_dataset(str(tmp_path / "c"), num_train=3, num_val=1, num_test=1)
    assert [s.split for s in shapes] == ["train"] * 3 + ["val", "test"]
    assert [s.label for s in shapes] == list(range(5))
    assert layout.read_metainfo(str(tmp_path / "c")) == shapes


@pytest.mark.slow
def test_preprocess_writes_skips_and_overwrites(tiny_dataset):
    config, root = tiny_dataset, tiny_dataset.data.root
    results = pipeline.preprocess_dataset(config, progress=False)
    assert [r.status for r in results] == ["done"] * 4
    obj_id = results[0].obj_id
    shape = layout.shape_dir(root, obj_id)
    sdf = np.load(os.path.join(shape, layout.SDF_SAMPLES))
    surface = np.load(os.path.join(shape, layout.SURFACE_SAMPLES))
    assert sdf.shape == (config.data.num_sdf_samples, 4) and sdf.dtype == np.float32
    assert surface.shape == (config.data.num_surface_samples, 6)
    normalized = trimesh.load(os.path.join(shape, layout.NORMALIZED_MESH), force="mesh")
    assert np.linalg.norm(normalized.vertices, axis=1).max() == pytest.approx(1 / 1.03, rel=1e-5)
    assert not [f for f in os.listdir(shape) if f.endswith(".tmp")]
    before = _files(root, obj_id)
    assert all(r.status == "skipped" for r in pipeline.preprocess_dataset(config, progress=False))
    assert _files(root, obj_id) == before
    again = pipeline.preprocess_dataset(config, stages=("sdf",), overwrite=True, progress=False)
    assert all(r.stages == ("sdf",) for r in again)
    np.testing.assert_array_equal(np.load(os.path.join(shape, layout.SDF_SAMPLES)), sdf)  # deterministic
    after = _files(root, obj_id)
    assert after[layout.SURFACE_SAMPLES] == before[layout.SURFACE_SAMPLES]
    # a shape known only by its mesh file is scored with the numbers preprocessing would have written
    record = pipeline.surface_record(config, os.path.join(shape, layout.MESH), obj_id)
    np.testing.assert_array_equal(record["surface_samples"], surface)
    norm = json.loads(open(os.path.join(shape, layout.NORMALIZATION)).read())
    np.testing.assert_array_equal(record["offset"], np.float32(norm["offset"]))
    assert record["scale"] == np.float32(norm["scale"])
    assert record["normalized_mesh"].area == pytest.approx(normalized.area, rel=1e-6)
    np.testing.assert_allclose(record["normalized_mesh"].bounds, normalized.bounds, atol=1e-6)


@pytest.mark.slow
def test_renders_of_another_view_set_are_refused_by_name_and_re_rendered_alone(tiny_dataset):
    config, root = tiny_dataset, tiny_dataset.data.root
    pipeline.preprocess_dataset(config, progress=False)
    obj_id = layout.read_metainfo(root)[0].obj_id
    before = _files(root, obj_id)
    moved = config.copy_and_resolve_references()
    moved.render.elevations = (-10,)  # from below: another view set
    for split in ("train", "test"):
        with pytest.raises(errors.DataError) as refused:
            tfds_builder.data_source(moved, split, renders=True)
        message = str(refused.value)
        assert root in message and "elevations [10.0] against 2 views, elevations [-10.0]" in message
        assert "python -m data_gen.preprocess" in message and "--only=render,tfds" in message
    tfds_builder.data_source(moved, "train")  # DeepSDF training reads no renders: not refused
    # the CLI's --only re-renders every shape with the new views, and nothing else
    out = _run("data_gen.preprocess", "--config=configs/chair16.py:smoke", f"--config.data.root={root}",
               "--config.render.elevations=(-10,)", "--only=render,tfds")
    assert out.returncode == 0, out.stderr
    after = _files(root, obj_id)
    assert {k for k in after if after[k] != before[k]} == {layout.VIEWS, "normals", "sketches"}  # the renders alone
    views = json.loads(open(os.path.join(layout.shape_dir(root, obj_id), layout.VIEWS)).read())["views"]
    assert [v["elevation"] for v in views] == [-10.0, -10.0]
    assert tfds_builder.data_source(moved, "train", renders=True)[0]["views"][0, 1] == -10.0
    with pytest.raises(errors.DataError, match="rendered from other views"):
        tfds_builder.data_source(config, "train", renders=True)


@pytest.mark.slow
def test_parallel_workers_match_serial(tiny_dataset, tmp_path):
    serial = tiny_dataset
    pipeline.preprocess_dataset(serial, stages=("normalize", "sdf"), progress=False)
    parallel = serial.copy_and_resolve_references()
    parallel.data.root = str(tmp_path / "parallel")
    synthetic.write_dataset(parallel.data.root, "chair", num_train=2, num_val=1, num_test=1)
    parallel.data.num_workers = 2
    pipeline.preprocess_dataset(parallel, stages=("normalize", "sdf"), progress=False)
    for s in layout.read_metainfo(serial.data.root):
        np.testing.assert_array_equal(
            np.load(os.path.join(layout.shape_dir(serial.data.root, s.obj_id), layout.SDF_SAMPLES)),
            np.load(os.path.join(layout.shape_dir(parallel.data.root, s.obj_id), layout.SDF_SAMPLES)))


@pytest.mark.slow
def test_bad_shape_is_listed_and_loses_nothing(tiny_dataset):
    config, root = tiny_dataset, tiny_dataset.data.root
    pipeline.preprocess_dataset(config, stages=("normalize", "sdf"), progress=False)
    victim, empty = [s.obj_id for s in layout.read_metainfo(root)][:2]
    good_sdf = np.load(os.path.join(layout.shape_dir(root, victim), layout.SDF_SAMPLES))
    with open(os.path.join(layout.shape_dir(root, victim), layout.MESH), "w") as f:
        f.write("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    with open(os.path.join(layout.shape_dir(root, empty), layout.MESH), "w") as f:
        f.write("# no faces\n")
    results = pipeline.preprocess_dataset(config, overwrite=True, progress=False)
    status = {r.obj_id: r.status for r in results}
    assert status[victim] == status[empty] == "failed"
    assert sorted(status.values()).count("done") == 2
    with open(os.path.join(root, "failures.csv")) as f:
        rows = {r["obj_id"]: r["reason"] for r in csv.DictReader(f)}
    assert "NaN or infinite" in rows[victim] and "mesh.obj" in rows[victim]
    assert "empty mesh" in rows[empty] or "no triangles" in rows[empty]
    # The earlier, good samples of the now-broken shape are still there, unchanged.
    np.testing.assert_array_equal(
        np.load(os.path.join(layout.shape_dir(root, victim), layout.SDF_SAMPLES)), good_sdf)


def crash_on_chair_1(root, obj_id, **kwargs):
    """preprocess_shape, except that the worker doing chair_000_0001 dies as a killed process would."""
    if obj_id == "chair_000_0001":
        os._exit(9)
    return pipeline.preprocess_shape(root, obj_id, **kwargs)


@pytest.mark.slow
def test_a_worker_that_dies_fails_only_its_shape(tiny_dataset):
    config, root = tiny_dataset, tiny_dataset.data.root
    config.data.num_workers = 2
    results = pipeline.preprocess_dataset(config, stages=("normalize", "sdf", "surface", "tfds"), progress=False,
                                            shape_fn=crash_on_chair_1)
    assert {r.obj_id: r.status for r in results} == {
        "chair_000_0000": "done", "chair_000_0001": "failed", "chair_000_0002": "done", "chair_000_0003": "done"}
    with open(os.path.join(root, "failures.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["obj_id"] for r in rows] == ["chair_000_0001"] and "worker process died" in rows[0]["reason"]
    assert tfds_builder.split_index(config, "train")[0] == ["chair_000_0000"]


def test_shape_limits_stop_a_slow_or_greedy_block_by_name_and_are_lifted_after_it():
    with pytest.raises(limits.LimitExceeded, match="chair_7: over the 0.3 s time limit per shape"):
        with limits.shape_limits("chair_7", seconds=0.3):
            while True:
                pass
    with pytest.raises(limits.LimitExceeded, match="big.obj: over the 256 MB memory limit per shape"):
        with limits.shape_limits("big.obj", memory_mb=256):
            np.ones(2**30, np.uint8)  # 1 GB
    with limits.shape_limits("small", seconds=5, memory_mb=256):
        np.ones(2**20)  # within both
    assert np.ones(2**30, np.uint8).nbytes == 2**30  # the memory limit is gone after the block
    time.sleep(0.4)  # ... and so is the timer


def _greedy_chair_1(mesh_path):
    if "chair_000_0001" in mesh_path:
        np.ones(2**31, np.uint8)  # 2 GB for one mesh
    return REAL_NORMALIZED_SHAPE(mesh_path)


REAL_NORMALIZED_SHAPE = pipeline.normalized_shape


@pytest.mark.slow
def test_a_shape_over_its_limits_fails_alone_with_the_limit_named(tiny_dataset, monkeypatch):
    config, root = tiny_dataset, tiny_dataset.data.root
    config.data.shape_memory_mb = 512
    monkeypatch.setattr(pipeline, "normalized_shape", _greedy_chair_1)
    results = pipeline.preprocess_dataset(config, stages=("normalize", "sdf"), progress=False)
    assert {r.obj_id: r.status for r in results} == {
        "chair_000_0000": "done", "chair_000_0001": "failed", "chair_000_0002": "done", "chair_000_0003": "done"}
    with open(os.path.join(root, "failures.csv")) as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["obj_id"] == "chair_000_0001" and "over the 512 MB memory limit per shape" in rows[0]["reason"]
    config.data.shape_seconds = 0.2
    monkeypatch.setattr(pipeline, "normalized_shape", lambda path: time.sleep(30))  # every shape too slow
    started = time.monotonic()
    results = pipeline.preprocess_dataset(config, stages=("surface",), progress=False)
    assert time.monotonic() - started < 10
    assert all(r.status == "failed" and "over the 0.2 s time limit per shape" in r.reason for r in results)


def test_import_leaves_a_mesh_over_its_memory_limit_out(tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    trimesh.creation.box().export(src / "box.obj")
    trimesh.creation.icosphere(2).export(src / "huge.obj")
    load = import_meshes.mesh_lib.load_mesh

    def greedy(path):
        if "huge" in path:
            np.ones(2**31, np.uint8)
        return load(path)

    monkeypatch.setattr(import_meshes.mesh_lib, "load_mesh", greedy)
    shapes, failures = import_meshes.import_meshes(str(src), str(tmp_path / "out"), shape_memory_mb=512)
    assert [s.obj_id for s in shapes] == ["box"]
    assert [f[0] for f in failures] == ["huge"] and "over the 512 MB memory limit per shape" in failures[0][2]


@pytest.mark.slow
def test_a_full_disk_fails_only_the_shape_being_written_and_the_run_goes_on(tiny_dataset, monkeypatch):
    import errno

    config, root = tiny_dataset, tiny_dataset.data.root
    config.data.num_workers = 1  # in this process, where the disk is made to fill up
    save = storage.atomic_save_npy

    def full_for_chair_1(path, array):
        if "chair_000_0001" in path:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        save(path, array)

    monkeypatch.setattr(storage, "atomic_save_npy", full_for_chair_1)
    results = pipeline.preprocess_dataset(config, stages=("normalize", "sdf", "surface"), progress=False)
    assert {r.obj_id: r.status for r in results} == {
        "chair_000_0000": "done", "chair_000_0001": "failed", "chair_000_0002": "done", "chair_000_0003": "done"}
    with open(os.path.join(root, "failures.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["obj_id"] for r in rows] == ["chair_000_0001"] and "No space left on device" in rows[0]["reason"]
    monkeypatch.setattr(storage, "atomic_save_npy", save)  # room again: the rerun finishes the shape
    again = pipeline.preprocess_dataset(config, stages=("normalize", "sdf", "surface"), progress=False)
    assert {r.obj_id: r.status for r in again}["chair_000_0001"] == "done"


@pytest.mark.slow
def test_a_corrupt_preprocessed_file_is_listed_and_the_other_shapes_are_packed(tiny_dataset):
    config, root = tiny_dataset, tiny_dataset.data.root
    pipeline.preprocess_dataset(config, stages=("normalize", "sdf", "surface"), progress=False)
    path = os.path.join(layout.shape_dir(root, "chair_000_0002"), layout.SDF_SAMPLES)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)  # a copy cut short
    results = pipeline.preprocess_dataset(config, stages=("tfds",), progress=False)
    assert [r.status for r in results] == ["skipped", "skipped", "failed", "skipped"]
    with open(os.path.join(root, "failures.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(r["obj_id"], r["stages"]) for r in rows] == [("chair_000_0002", "tfds")]
    assert "sdf_samples.npy" in rows[0]["reason"] or "unreadable" in rows[0]["reason"]
    assert tfds_builder.split_index(config, "train")[0] == ["chair_000_0000", "chair_000_0001"]
    with pytest.raises(errors.DataError, match="split 'val' has no preprocessed shapes"):
        tfds_builder.data_source(config, "val")


@pytest.mark.slow
def test_cli_exits_nonzero_only_when_every_shape_fails(tiny_dataset):
    root = tiny_dataset.data.root
    args = ["--config=configs/chair16.py:smoke", f"--config.data.root={root}", "--skip=surface,tfds"]
    ids = [s.obj_id for s in layout.read_metainfo(root)]
    with open(os.path.join(layout.shape_dir(root, ids[0]), layout.MESH), "w") as f:
        f.write("garbage")
    some = _run("data_gen.preprocess", *args)
    assert some.returncode == 0, some.stderr
    assert "1 failed" in some.stdout and ids[0] in some.stderr
    for obj_id in ids:
        with open(os.path.join(layout.shape_dir(root, obj_id), layout.MESH), "w") as f:
            f.write("garbage")
    every = _run("data_gen.preprocess", *args, "--overwrite")
    assert every.returncode != 0 and "4 failed" in every.stdout


@pytest.mark.parametrize("rows,message", [
    ("obj_id,label,split\na,0,train\na,1,val\n", r"metainfo.csv:3: duplicate obj_id 'a'"),
    ("obj_id,label,split\na,0,train\nb,1,validation\n", r"metainfo.csv:3: unknown split 'validation'"),
    ("obj_id,label\na,0\n", r"metainfo.csv: missing column"),
    ("obj_id,label,split\na,3,train\n", r"train labels must be 0..0"),
])
def test_bad_metainfo_names_file_and_line(tmp_path, rows, message):
    (tmp_path / "metainfo.csv").write_text(rows)
    with pytest.raises(errors.DataError, match=message):
        layout.read_metainfo(str(tmp_path))


@pytest.mark.slow
def test_unknown_config_field_is_one_clear_message(tiny_dataset):
    result = _run("data_gen.preprocess", "--config=configs/chair16.py:smoke",
                  f"--config.data.root={tiny_dataset.data.root}", "--config.data.num_sampels=10")
    assert result.returncode != 0
    assert "--config.data.num_sampels: the config has no field 'num_sampels'" in result.stderr
    assert "Traceback" not in result.stderr


def test_import_any_folder_and_shapenet(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    trimesh.creation.box().export(src / "box.obj")
    trimesh.creation.icosphere(2).export(src / "sub" / "ball.ply")
    trimesh.creation.cylinder(0.3, 1.0).export(src / "sub" / "can.stl")
    trimesh.creation.box().export(src / "sub" / "box.off")  # same stem as box.obj
    trimesh.Scene([trimesh.creation.box(), trimesh.creation.icosphere(1)]).export(src / "two_parts.glb")
    (src / "broken.obj").write_text("v nan nan nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    out = str(tmp_path / "out")
    drawn = import_meshes.Selection(num_val=1, num_test=1, seed=3)
    shapes, failures = import_meshes.import_meshes(str(src), out, drawn)
    assert [f[0] for f in failures] == ["broken"] and os.path.isfile(os.path.join(out, "failures.csv"))
    ids = {s.obj_id for s in shapes}
    assert ids == {"box", "box_1", "ball", "can", "two_parts"}
    assert sorted(s.split for s in shapes) == ["test", "train", "train", "train", "val"]
    glb = trimesh.load(os.path.join(layout.shape_dir(out, "two_parts"), layout.MESH), force="mesh")
    assert len(glb.faces) == 12 + 80
    again, _ = import_meshes.import_meshes(str(src), str(tmp_path / "again"), drawn)
    assert again == shapes  # deterministic
    with pytest.raises(errors.DataError, match="already exists"):
        import_meshes.import_meshes(str(src), out)

    shapenet = tmp_path / "03001627"
    for i in range(4):
        model = shapenet / f"model{i}" / "models"
        model.mkdir(parents=True)
        synthetic.make_shape("chair", 0, i).export(model / "model_normalized.obj")
    shapes, _ = import_meshes.import_meshes(str(shapenet), str(tmp_path / "sn"), import_meshes.Selection(3, 1))
    assert len(shapes) == 3 and {s.obj_id for s in shapes} <= {f"model{i}" for i in range(4)}


def _shapenet_root(root, models):
    """A ShapeNetCore v2 layout: root/<synset>/<model>/models/model_normalized.obj of procedural shapes."""
    for k, (synset, model) in enumerate(models):
        folder = root / synset / model / "models"
        folder.mkdir(parents=True)
        category = "table" if synset == "04379243" else "chair"
        synthetic.make_shape(category, 0, k).export(folder / "model_normalized.obj")


def test_import_deepsdf_split_files_of_two_synsets_keeps_their_splits_and_categories(tmp_path):
    chairs = [("03001627", f"c{i}") for i in range(4)]
    tables = [("04379243", f"t{i}") for i in range(3)]
    _shapenet_root(tmp_path / "ShapeNetCore.v2", chairs + tables + [("03001627", "unlisted")])
    train = {"ShapeNetV2": {"03001627": ["c0", "c1", "c2"], "04379243": ["t0", "t1"]}}
    test = {"ShapeNetV2": {"03001627": ["c3", "missing"], "04379243": ["t2"]}}
    (tmp_path / "sv2_mixed_train.json").write_text(json.dumps(train))
    (tmp_path / "held_out.json").write_text(json.dumps(test))
    out = str(tmp_path / "out")
    result = _run("data_gen.import_meshes", f"--src={tmp_path / 'ShapeNetCore.v2'}", f"--out={out}",
                  f"--splits={tmp_path / 'sv2_mixed_train.json'},test={tmp_path / 'held_out.json'}")
    assert result.returncode == 0, result.stderr
    shapes = layout.read_metainfo(out)
    assert [(s.obj_id, s.split, s.category) for s in shapes] == [
        ("c0", "train", "03001627"), ("c1", "train", "03001627"), ("c2", "train", "03001627"),
        ("t0", "train", "04379243"), ("t1", "train", "04379243"),
        ("c3", "test", "03001627"), ("t2", "test", "04379243")]
    assert [s.label for s in shapes] == list(range(7))
    with open(os.path.join(out, "failures.csv")) as f:
        assert [(r["obj_id"], r["reason"]) for r in csv.DictReader(f)] == [("missing", "not found")]
    assert "skipped missing: not found" in result.stderr
    # A model in two files, a file whose split its name does not say, and a malformed one: one line each.
    (tmp_path / "more_train.json").write_text(json.dumps({"ShapeNetV2": {"03001627": ["c3"]}}))
    (tmp_path / "chairs.json").write_text(json.dumps(train))
    (tmp_path / "bad_test.json").write_text(json.dumps({"ShapeNetV2": ["c0"]}))
    for splits, message in [(f"{tmp_path / 'more_train.json'},test={tmp_path / 'held_out.json'}",
                             "model c3 is listed in"),
                            (f"{tmp_path / 'chairs.json'}", "cannot tell the split of"),
                            (f"{tmp_path / 'bad_test.json'}", "must map each synset to a list of model ids")]:
        bad = _run("data_gen.import_meshes", f"--src={tmp_path / 'ShapeNetCore.v2'}", f"--out={tmp_path / 'x'}",
                   f"--splits={splits}")
        assert bad.returncode != 0 and message in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


TFDS_ROUND_TRIP = textwrap.dedent("""
    import importlib.util, sys
    assert importlib.util.find_spec("tensorflow") is None
    try:
        import tensorflow  # noqa: F401
        raise SystemExit("tensorflow imported")
    except ImportError:
        pass
    from configs import chair16
    from sdfjax.data import tfds_builder
    config = chair16.get_config("smoke")
    config.data.root = sys.argv[1]
    tfds_builder.pack_dataset(config)
    source = tfds_builder.data_source(config, "train")
    examples = sorted((source[i] for i in range(len(source))), key=lambda e: e["label"])
    print(len(source), [e["obj_id"] for e in examples], examples[0]["sdf_samples"].shape)
    assert "tensorflow" not in sys.modules
""")


@pytest.mark.slow
def test_tfds_round_trip_without_tensorflow(tiny_dataset):
    root = tiny_dataset.data.root
    pipeline.preprocess_dataset(tiny_dataset, stages=pipeline.SHAPE_STAGES, progress=False)
    result = subprocess.run([sys.executable, "-c", TFDS_ROUND_TRIP, root], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-2000:]
    ids = [s.obj_id for s in layout.read_metainfo(root) if s.split == "train"]
    assert result.stdout.strip().endswith(f"2 {[i.encode() for i in ids]} (5000, 4)")
    source = tfds_builder.data_source(tiny_dataset, "val")
    expected = np.load(os.path.join(layout.shape_dir(root, source[0]["obj_id"].decode()), layout.SDF_SAMPLES))
    np.testing.assert_array_equal(source[0]["sdf_samples"], expected)
    with pytest.raises(errors.DataError, match="split 'nope'"):
        tfds_builder.data_source(tiny_dataset, "nope")


@pytest.mark.slow
def test_a_dataset_larger_than_tfds_shuffle_buffer_packs_without_tensorflow(tiny_dataset, monkeypatch):
    """TFDS spills a buffer over its limit (1 GB) through tf.io.gfile: packing must keep it in memory."""
    from tensorflow_datasets.core import shuffle as tfds_shuffle

    monkeypatch.setattr(tfds_shuffle, "MAX_MEM_BUFFER_SIZE", 1024)  # this tiny set is far over it
    pipeline.preprocess_dataset(tiny_dataset, progress=False)
    assert len(tfds_builder.data_source(tiny_dataset, "train")) == 2
    assert tfds_shuffle.MAX_MEM_BUFFER_SIZE == 1024  # restored after packing


def _tree_bytes(root):
    """relative path -> bytes of every file under a dataset root (its own path written as <root>), but the run's
    statistics."""
    out = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if name != "preprocess_stats.json":
                with open(path, "rb") as f:
                    out[os.path.relpath(path, root)] = f.read().replace(root.encode(), b"<root>")
    return out


@pytest.mark.slow
def test_beam_direct_runner_writes_the_local_pools_bytes_and_lists_failures_alike(tiny_dataset, tmp_path):
    local_root = tiny_dataset.data.root
    beam_root = str(tmp_path / "beam")
    synthetic.write_dataset(beam_root, "chair", num_train=2, num_val=1, num_test=1)
    for root in (local_root, beam_root):  # one shape of each set cannot be read
        with open(os.path.join(layout.shape_dir(root, "chair_000_0002"), layout.MESH), "w") as f:
            f.write("garbage")
    common = ["--config=configs/chair16.py:smoke", "--config.data.num_workers=2"]
    local = _run("data_gen.preprocess", *common, f"--config.data.root={local_root}")
    beam = _run("data_gen.preprocess", *common, f"--config.data.root={beam_root}", "--beam_runner=DirectRunner")
    assert local.returncode == 0 and beam.returncode == 0, beam.stderr[-3000:]
    assert "on Beam's DirectRunner: 3 done, 0 already done, 1 failed" in beam.stdout
    local_files, beam_files = _tree_bytes(local_root), _tree_bytes(beam_root)
    assert sorted(local_files) == sorted(beam_files)
    assert any(p.endswith(".array_record-00000-of-00001") for p in beam_files)
    different = [p for p in local_files if local_files[p] != beam_files[p]]
    assert not different, different
    assert b"chair_000_0002" in beam_files["failures.csv"]
    assert not os.path.exists(os.path.join(beam_root, ".beam"))
    with open(os.path.join(beam_root, "preprocess_stats.json")) as f:
        assert json.load(f)["engine"] == "Apache Beam FnApiRunner"
    with open(os.path.join(local_root, "preprocess_stats.json")) as f:
        assert json.load(f)["engine"] == "local processes"
    # A second run finds every stage done, on Beam too.
    again = _run("data_gen.preprocess", *common, f"--config.data.root={beam_root}", "--beam_runner=DirectRunner",
                 "--skip=tfds")
    assert "0 done, 3 already done, 1 failed" in again.stdout, again.stdout
