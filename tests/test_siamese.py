"""Siamese encoder, triplet losses, augmentation, retrieval, sketch normalisation and sketch-to-shape."""

import itertools
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage
import pytest
from PIL import Image

from configs import chair16
from sdfjax import errors, trained as trained_lib
from sdfjax.models import siamese as siamese_lib
from sdfjax.render import camera as camera_lib
from sdfjax.render import tracer
from sdfjax.evaluators import retrieval as retrieval_evaluation
from sdfjax.sketch2shape import encoders, retrieval, sketches
from sdfjax.train import augment, logs, siamese
from sdfjax.losses import TRIPLET_KINDS, triplet_loss

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- triplet losses against brute force (Hermans et al. 2017) ------------------------------------

def _distance(a, b):
    return float(np.sqrt(np.sum((a - b) ** 2)))


def _batch_all_reference(e, labels, margin):
    terms = []
    for a, p, n in itertools.product(range(len(e)), repeat=3):
        if a != p and labels[a] == labels[p] and labels[n] != labels[a]:
            terms.append(max(_distance(e[a], e[p]) - _distance(e[a], e[n]) + margin, 0.0))
    terms = np.asarray(terms)
    return terms.sum() / max(np.sum(terms > 0), 1)


def _batch_hard_reference(e, labels, margin):
    terms = []
    for a in range(len(e)):
        pos = [_distance(e[a], e[p]) for p in range(len(e)) if p != a and labels[p] == labels[a]]
        neg = [_distance(e[a], e[n]) for n in range(len(e)) if labels[n] != labels[a]]
        if pos and neg:
            terms.append(max(max(pos) - min(neg) + margin, 0.0))
    return float(np.mean(terms))


@pytest.mark.parametrize("kind", ["batch_all", "batch_hard"])
def test_triplet_losses_match_brute_force(kind):
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 3])  # shape 3 has no positive: not an anchor
    e = rng.normal(size=(len(labels), 5)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    reference = {"batch_all": _batch_all_reference, "batch_hard": _batch_hard_reference}[kind]
    for margin in (0.1, 0.5, 3.0):
        loss, stats = triplet_loss(jnp.asarray(e), jnp.asarray(labels), margin, kind)
        np.testing.assert_allclose(float(loss), reference(e, labels, margin), rtol=1e-5)
        assert 0.0 <= float(stats["active_triplets"]) <= 1.0


@pytest.mark.slow
def test_triplet_loss_is_zero_for_separated_clusters_and_finite_for_duplicates():
    labels = jnp.array([0, 0, 1, 1])
    far = jnp.array([[0.0, 0.0], [0.0, 0.01], [5.0, 0.0], [5.0, 0.01]])
    for kind in TRIPLET_KINDS:
        assert float(triplet_loss(far, labels, 0.2, kind)[0]) == 0.0
        same = jnp.zeros((4, 2))  # collapsed embeddings: loss = margin, gradient finite
        loss, grad = jax.value_and_grad(lambda x: triplet_loss(x, labels, 0.2, kind)[0])(same)
        assert np.isclose(float(loss), 0.2) and np.all(np.isfinite(grad))
    with pytest.raises(ValueError, match="siamese.triplet"):
        triplet_loss(far, labels, 0.2, "semi_hard")


# --- augmentation ------------------------------------------------------------------------------------

def test_rotation_and_line_thickening():
    image = np.ones((9, 9), np.float32)
    image[4, 1:8] = 0.0  # a horizontal line through the centre
    np.testing.assert_allclose(augment.rotate_image(jnp.asarray(image), 0.0), image, atol=1e-6)
    np.testing.assert_allclose(augment.rotate_image(jnp.asarray(image), np.pi / 2), np.rot90(image), atol=1e-5)
    thick = np.asarray(augment.thicken_lines(jnp.asarray(image), jnp.asarray(1), 2))
    assert np.all(thick[3:6, 0:9] == 0.0) and np.all(thick[:3] == 1.0)  # 1 px -> 3 px, ends grown by 1
    np.testing.assert_array_equal(augment.thicken_lines(jnp.asarray(image), jnp.asarray(0), 2), image)
    assert np.sum(np.asarray(augment.thicken_lines(jnp.asarray(image), jnp.asarray(2), 2)) == 0) == 5 * 11 - 4 * 2 - 2


def test_overshoot_runs_lines_on_past_their_ends_and_corners_and_nowhere_else():
    image = np.ones((20, 20), np.float32)
    image[10, 5:13] = 0.0  # a horizontal line, columns 5..12
    always = np.asarray(augment.overshoot_lines(jax.random.key(0), jnp.asarray(image), 3, share=1.0))
    ink = np.flatnonzero(always[10] == 0)
    assert np.all(np.diff(ink) == 1) and 2 <= ink[0] <= 4 and 13 <= ink[-1] <= 15  # 1..3 px on at each end
    assert np.all(always[np.arange(20) != 10] == 1.0)  # along the line only
    np.testing.assert_array_equal(augment.overshoot_lines(jax.random.key(0), jnp.asarray(image), 3, share=0.0), image)
    some = np.asarray(augment.overshoot_lines(jax.random.key(1), jnp.asarray(image), 3, share=0.5))
    assert np.all(some[10, 5:13] == 0.0) and np.all(some[np.arange(20) != 10] == 1.0)
    corner = np.ones((20, 20), np.float32)
    corner[5, 5:15] = corner[5:15, 5] = 0.0  # an L: both sides meet at (5, 5)
    over = np.asarray(augment.overshoot_lines(jax.random.key(0), jnp.asarray(corner), 2, share=1.0))
    assert over[5, 4] == 0.0 and over[4, 5] == 0.0  # each side runs on past the corner
    assert over[4, 4] == 1.0 and over[3, 3] == 1.0  # along itself, not across the corner's diagonal
    assert np.all(over[6:, 6:] == 1.0)  # nothing inside the corner


def test_hand_strokes_add_ink_only_beside_the_lines_and_none_at_zero_shares():
    rng = np.random.default_rng(0)
    image = np.ones((64, 64), np.float32)
    for _ in range(12):  # random straight strokes
        (r0, c0), (r1, c1) = rng.integers(8, 56, (2, 2))
        t = np.linspace(0, 1, 80)
        image[np.round(r0 + (r1 - r0) * t).astype(int), np.round(c0 + (c1 - c0) * t).astype(int)] = 0.0
    same = augment.hand_strokes(jax.random.key(0), jnp.asarray(image), 0, 0.0, 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(same, image)
    drawn = np.asarray(augment.hand_strokes(jax.random.key(3), jnp.asarray(image), 2, 0.3, 0.1, 0.8, 0.1))
    again = np.asarray(augment.hand_strokes(jax.random.key(3), jnp.asarray(image), 2, 0.3, 0.1, 0.8, 0.1))
    np.testing.assert_array_equal(drawn, again)  # a function of its key
    new_ink = (drawn < 0.5) & (image >= 0.5)
    assert new_ink.sum() > 0.05 * (image < 0.5).sum()  # it draws something
    distance = scipy.ndimage.distance_transform_edt(image >= 0.5)
    assert distance[new_ink].max() <= 3.0  # ... only beside the lines
    assert np.all(drawn <= image + 1e-6)  # and removes none of them


def _sphere_normal_map(centre, camera):
    sdf = lambda p, x: jnp.linalg.norm(x - p, axis=-1) - 0.4  # noqa: E731
    o, d = camera.rays()
    out = tracer.render(sdf, jnp.asarray(centre, jnp.float32), jnp.asarray(o), jnp.asarray(d), tracer.TraceSettings())
    return np.asarray(tracer.normal_image(out["normals"], out["hit"], camera.height, camera.width))


@pytest.mark.slow
def test_flipping_a_normal_map_renders_the_mirrored_shape():
    camera = camera_lib.Camera(azimuth=30.0, elevation=20.0, focal=48.0, width=32, height=32)
    _, right, up = camera.axes()
    offset = 0.3 * right + 0.1 * up
    image = _sphere_normal_map(offset, camera)
    mirrored = _sphere_normal_map(-0.3 * right + 0.1 * up, camera)
    sketch_img = np.ones((32, 32), np.float32)
    flipped_sketch, flipped = augment.flip_pair(jnp.asarray(sketch_img), jnp.asarray(image), jnp.asarray(right))
    flipped = np.asarray(flipped)
    hit = np.all(mirrored < 1.0, -1) & np.all(flipped < 1.0, -1)
    assert np.mean(np.all(mirrored < 1.0, -1) == np.all(flipped < 1.0, -1)) > 0.99
    assert np.max(np.abs(flipped[hit] - mirrored[hit])) < 0.02
    twice = augment.flip_pair(flipped_sketch, jnp.asarray(flipped), jnp.asarray(right))[1]
    np.testing.assert_allclose(twice, image, atol=1e-5)


# --- the encoder ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_encoder_embeddings_are_unit_length_per_image_and_towers_can_be_separate():
    config = chair16.get_config("smoke").siamese
    model = siamese_lib.from_config(config)
    params = siamese_lib.init_params(model, jax.random.key(0), 32)
    images = jax.random.uniform(jax.random.key(1), (3, 32, 32, 3))
    e = model.apply(params, images, "normal")
    assert e.shape == (3, config.embedding_dim)
    np.testing.assert_allclose(jnp.linalg.norm(e, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(model.apply(params, images[1:2], "normal")[0], e[1], atol=1e-5)  # no batch statistics
    np.testing.assert_allclose(model.apply(params, images, "sketch"), e)  # one shared tower
    config.shared_tower = False
    two = siamese_lib.from_config(config)
    two_params = siamese_lib.init_params(two, jax.random.key(0), 32)
    count = lambda p: sum(x.size for x in jax.tree.leaves(p))  # noqa: E731
    assert count(two_params) == 2 * count(params)
    assert not np.allclose(two.apply(two_params, images, "sketch"), two.apply(two_params, images, "normal"))
    with pytest.raises(ValueError, match="modality"):
        model.apply(params, images, "depth")


# --- retrieval -------------------------------------------------------------------------------------

def test_recall_at_objects_on_a_hand_built_index():
    # 3 shapes x 2 views on a line; shape s's views at 10 s and 10 s + 1.
    index = np.array([[0.0], [1.0], [10.0], [11.0], [20.0], [21.0]])
    shape_ids = np.repeat(np.arange(3), 2)
    queries = np.array([[0.4], [10.6], [15.2], [25.0]])
    query_shapes = np.array([0, 1, 2, 1])
    order = retrieval.rank(queries, index)
    ranked = shape_ids[order]
    # Recall@1: share of the shape's 2 views among the 2 nearest entries. Query 15.2 ranks
    # 11 (4.2), 20 (4.8), 10 (5.2), 21 (5.8): one of shape 2's views in the top 2, both in the top 4.
    # Query 25 (true shape 1) ranks 21, 20, 11, 10: shape 1 only at ranks 3 and 4.
    np.testing.assert_allclose(retrieval_evaluation.recall_at_objects(ranked, query_shapes, 2, 1), [1.0, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(retrieval_evaluation.recall_at_objects(ranked, query_shapes, 2, 2), [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(retrieval_evaluation.recall_at_objects(ranked[:, :3], query_shapes, 2, 2), [1.0, 1.0, 0.5, 0.5])
    np.testing.assert_array_equal(retrieval.top_shapes(ranked, 2), [[0, 1], [1, 2], [1, 2], [2, 1]])  # 20 is nearer 10.6 than 1
    np.testing.assert_array_equal(retrieval.top_shapes(ranked[:, :2], 2), [[0, 0], [1, 1], [1, 2], [2, 2]])


def test_a_saved_index_is_sharded_under_the_cap_and_retrieves_as_the_full_precision_one(tmp_path):
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(40 * 6, 16)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)  # unit length, as the Siamese encoder's
    index = retrieval.Index(embeddings, np.repeat(np.arange(40), 6), np.tile(np.arange(6), 40),
                            [f"chair_{i:02d}" for i in range(40)], 6)
    files = retrieval.save_index(index, str(tmp_path), max_shard_bytes=2048)
    shards = [f for f in files if f.endswith(".npy")]
    assert len(shards) == -(-len(embeddings) // ((2048 - 256) // 32)) and files[-1] == "retrieval/index.json"
    assert max(os.path.getsize(tmp_path / f) for f in shards) <= 2048
    loaded = retrieval.load_index(str(tmp_path))
    assert loaded.obj_ids == index.obj_ids and loaded.views_per_shape == 6
    np.testing.assert_allclose(loaded.embeddings, embeddings, atol=1e-3)  # float16
    queries = embeddings[::7] + 0.05 * rng.normal(size=embeddings[::7].shape).astype(np.float32)
    assert retrieval.nearest_shapes(loaded, queries, 3) == retrieval.nearest_shapes(index, queries, 3)
    assert retrieval.load_index(str(tmp_path / "none")) is None
    (tmp_path / shards[0]).write_bytes(b"not numpy")
    with pytest.raises(errors.DataError, match="retrieval/index.json: not a readable retrieval index"):
        retrieval.load_index(str(tmp_path))


# --- user sketches ---------------------------------------------------------------------------------

def _drawing(h, w, value_bg, value_line, width=3):
    image = np.full((h, w), value_bg, np.float32)
    top, left, size = h // 4, w // 3, min(h, w) // 3
    image[top:top + size, left:left + width] = value_line
    image[top:top + size, left + size - width:left + size] = value_line
    image[top:top + width, left:left + size] = value_line
    image[top + size - width:top + size, left:left + size] = value_line
    return image


@pytest.mark.parametrize("h,w,bg,line,width", [(300, 500, 1.0, 0.0, 3), (40, 20, 0.0, 1.0, 1),
                                                (2000, 1200, 0.9, 0.2, 4), (64, 64, 1.0, 0.0, 1)])
def test_normalize_sketch_frames_any_drawing_like_the_dataset(h, w, bg, line, width):
    out = sketches.normalize_sketch(_drawing(h, w, bg, line, width), 64, fill=0.75)
    assert out.shape == (64, 64) and out.dtype == np.uint8 and set(np.unique(out)) <= {0, 255}
    rows, cols = np.nonzero(out == 0)
    extent = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    # longer side = fill x resolution, less up to one source pixel (lines are thinned to their centres)
    assert abs(extent - 48) <= 3 + 48 / (min(h, w) // 3)
    assert abs((rows.max() + rows.min()) / 2 - 31.5) <= 2 and abs((cols.max() + cols.min()) / 2 - 31.5) <= 2
    assert np.mean(out == 0) < 0.15  # thin lines, not filled
    assert sketches.filled_outline(out).mean() > 0.4  # the square's inside


def test_image_files_of_any_mode_load_and_bad_files_are_refused(tmp_path):
    drawing = _drawing(120, 90, 1.0, 0.0)
    rgba = np.zeros((120, 90, 4), np.uint8)  # transparent background, opaque black lines
    rgba[..., 3] = np.where(drawing < 0.5, 255, 0)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    Image.fromarray((drawing * 255).astype(np.uint8)).convert("RGB").save(tmp_path / "rgb.jpg")
    for name in ("alpha.png", "rgb.jpg"):
        grey = sketches.load_image(str(tmp_path / name))
        assert grey.shape == (120, 90)
        out = sketches.normalize_sketch(grey, 32)
        assert 0 < np.mean(out == 0) < 0.3
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(errors.DataError, match="notes.png: not a readable image"):
        sketches.load_image(str(tmp_path / "notes.png"))
    with pytest.raises(errors.DataError, match="missing.png: no such sketch file"):
        sketches.load_image(str(tmp_path / "missing.png"))
    Image.fromarray(np.full((50, 50), 200, np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(errors.DataError, match="blank.png: the image is blank"):
        sketches.normalize_sketch(sketches.load_image(str(tmp_path / "blank.png")), 32, name=str(tmp_path / "blank.png"))
    noise = np.random.default_rng(0).integers(0, 2, (50, 50)).astype(np.float32)
    with pytest.raises(errors.DataError, match="expected a line drawing"):
        sketches.normalize_sketch(noise, 32)


# --- training, retrieval and sketch-to-shape on a smoke model ----------------------------------

@pytest.mark.slow
def test_siamese_training_logs_checkpoints_and_resumes_to_the_same_result(trained_pair, tmp_path):
    config, workdir, full = trained_pair
    records = logs.read_metrics(trained_lib.siamese_dir(workdir))
    assert [r["step"] for r in records] == [4, 8, 12]
    assert records[-1]["loss"] < records[0]["loss"]
    assert os.path.isfile(os.path.join(trained_lib.siamese_dir(workdir), "loss.png"))
    other = str(tmp_path / "resumed")
    siamese.train_siamese(config, other, progress=False, stop_after_steps=6)
    resumed = siamese.train_siamese(config, other, progress=False)
    assert resumed["step"] == full["step"] == config.siamese.num_steps
    _, a, _ = trained_lib.load_siamese(workdir)
    _, b, _ = trained_lib.load_siamese(other)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(x, y, atol=1e-5)
    changed = config.copy_and_resolve_references()
    changed.siamese.width = 8
    with pytest.raises(ValueError, match="width saved 4 vs config 8"):
        siamese.train_siamese(changed, other, progress=False)
    with pytest.raises(ValueError, match="no Siamese checkpoint"):
        trained_lib.load_siamese(str(tmp_path / "empty"))


@pytest.mark.slow
def test_siamese_step_on_8_devices_matches_one_device(trained_pair):
    config, _, _ = trained_pair
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {ROOT!r})
        import jax
        jax.config.update("jax_num_cpu_devices", 8)
        import numpy as np
        from configs import chair16
        from sdfjax import parallel
        from sdfjax.data import tfds_builder
        from sdfjax.data.batching import ViewBatcher
        from sdfjax.models import siamese as siamese_lib
        from sdfjax.train import siamese
        config = chair16.get_config("smoke")
        config.data.root = {config.data.root!r}
        sc = config.siamese
        _, labels = tfds_builder.split_index(config, "train")
        batcher = ViewBatcher(tfds_builder.data_source(config, "train"), np.asarray(labels), sc, 0)
        model, optimizer = siamese_lib.from_config(sc), siamese.make_optimizer(sc)
        step = siamese.make_train_step(model, optimizer, sc, 0)
        results = []
        for devices in (jax.devices()[:1], jax.devices()):
            mesh = jax.make_mesh((len(devices),), ("data",), devices=devices,
                                 axis_types=(jax.sharding.AxisType.Auto,))
            # placed as the step returns it, so the second step does not compile again
            state = jax.device_put(siamese.init_state(model, optimizer, jax.random.key(0), 32),
                                   parallel.replicated(mesh))
            jitted = siamese.jit_train_step(step, mesh)
            losses = []
            for s in range(3):
                state, m = jitted(state, parallel.global_batch(batcher.local_batch(s), mesh))
                losses.append(float(m["loss"]))
            results.append((losses, jax.device_get(state["params"])))
        np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-4)
        for a, b in zip(jax.tree.leaves(results[0][1]), jax.tree.leaves(results[1][1])):
            np.testing.assert_allclose(a, b, atol=1e-4)
        print("OK")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


@pytest.mark.slow
def test_retrieval_evaluation_writes_recalls_and_a_picture(trained_pair, tmp_path):
    config, workdir, _ = trained_pair
    config = config.copy_and_resolve_references()
    config.siamese.index_split = "train,val"
    result = retrieval_evaluation.evaluate_retrieval(config, workdir, progress=False, out_dir=str(tmp_path / "eval"))
    assert result["index_shapes"] == 3 and result["queries"] == 2
    # Against a brute-force ranking of the same embeddings: each query's share of its shape's
    # views among the V (Recall@1) and 2V nearest normal maps of the 3-shape index.
    model, params, _ = trained_lib.load_siamese(workdir)
    ids, sketch_images, normal_maps, _ = retrieval.read_images(config, ["train", "val"])
    views = normal_maps.shape[1]
    index = encoders.embedder(model, params, "normal")(normal_maps.reshape(-1, *normal_maps.shape[2:]))
    shape_of_entry = [s for s in range(len(ids)) for _ in range(views)]
    expected = {1: [], 2: []}
    for q in range(sketch_images.shape[1]):
        query = encoders.embedder(model, params, "sketch")(sketch_images[2, q][None])[0]
        order = sorted(range(len(index)), key=lambda e: (float(np.sum((index[e] - query) ** 2)), e))
        for n in expected:
            expected[n].append(sum(shape_of_entry[e] == 2 for e in order[:n * views]) / views)
    assert result["recall_at_1_object"] == pytest.approx(np.mean(expected[1]), abs=1e-6)
    assert result["recall_at_5_object"] == 1.0  # 5 shapes' worth of views cover the 3-shape index
    assert result["chance_recall_at_1"] == pytest.approx(1 / 3)
    assert os.path.isfile(tmp_path / "eval" / "retrieval.json")
    picture = np.asarray(Image.open(tmp_path / "eval" / "retrieval.png"))
    assert picture.shape[1] == 6 * 32 + 5 * 2  # query + top 5
    config.siamese.index_split = "train"
    with pytest.raises(ValueError, match="lacks the query shapes"):
        retrieval_evaluation.evaluate_retrieval(config, workdir, progress=False, out_dir=str(tmp_path / "bad"))
