"""Cameras, the sphere tracer, mesh ray casting, sketches and the render dataset stage."""

import dataclasses
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

from configs import chair16
from sdfjax.data import pipeline, tfds_builder
from sdfjax.render import camera as camera_lib
from sdfjax.models import decoder as decoder_lib
from sdfjax.render import edges, latent_render, mesh_caster, tracer


def sphere_sdf(p, x):
    return jnp.linalg.norm(x - p["c"], axis=-1) - p["r"]


def _safe_norm(v):  # the norm with a finite gradient at 0
    sq = jnp.sum(v * v, axis=-1)
    return jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)


def box_sdf(p, x):
    q = jnp.abs(x - p["c"]) - p["half"]
    return _safe_norm(jnp.maximum(q, 0)) + jnp.minimum(q.max(-1), 0)


def torus_sdf(p, x):
    q = jnp.stack([jnp.linalg.norm(x[:, :2], axis=-1) - p["big"], x[:, 2]], -1)  # axis z, as trimesh
    return jnp.linalg.norm(q, axis=-1) - p["small"]


SPHERE = {"c": jnp.array([0.1, 0.0, -0.05]), "r": jnp.float32(0.5)}
CAMERA = camera_lib.Camera(30.0, 20.0, 4.0, 128.0, 64, 64)


def _sphere_truth(origins, directions, centre, radius):
    oc = origins - np.asarray(centre)
    b = (oc * directions).sum(1)
    disc = b * b - ((oc * oc).sum(1) - radius**2)
    t = -b - np.sqrt(np.maximum(disc, 0))
    normals = (origins + t[:, None] * directions - np.asarray(centre)) / radius
    return disc, t, normals


def test_camera_conventions():
    cam = camera_lib.Camera(90.0, 0.0, 4.0, 100.0, 5, 5)
    np.testing.assert_allclose(cam.position, [4, 0, 0], atol=1e-12)  # azimuth 90 looks from +x
    origins, d = cam.rays()
    np.testing.assert_allclose(d[12], [-1, 0, 0], atol=1e-6)  # the centre pixel looks at the origin
    assert d[0, 1] > 0 and d[20, 1] < 0  # row 0 is the top of the image
    forward, right, up = camera_lib.Camera(0.0, 30.0).axes()
    np.testing.assert_allclose([forward @ right, forward @ up, right @ up], 0, atol=1e-12)
    assert up[1] > 0 and right[0] > 0  # from +z, +x is to the right
    views = camera_lib.view_set()
    assert len(views) == 90 and (views[1].azimuth, views[1].elevation) == (0.0, 15.0)
    assert views[5].azimuth == 20.0 and views[0].focal == 512 and views[0].distance == 4
    assert all(v.position[1] > 0 for v in views)  # every dataset view looks from above the seat


def _sketch2shape_camera(azim: float, elev: float, dist: float = 4.0):
    """Sketch2Shape's camera as its paper's code states it: world_to_camera = T(dist) Rx(elev) Ry(azim),
    the camera looking along its +z, pixel offsets (x, y) from the image centre on the plane point (-x, -y, 1).
    Returns (position, forward, image right, image up) in the world frame."""
    a, e = np.radians(azim), np.radians(elev)
    rot_x = np.array([[1, 0, 0, 0], [0, np.cos(e), -np.sin(e), 0], [0, np.sin(e), np.cos(e), 0], [0, 0, 0, 1]])
    rot_y = np.array([[np.cos(a), 0, np.sin(a), 0], [0, 1, 0, 0], [-np.sin(a), 0, np.cos(a), 0], [0, 0, 0, 1]])
    translate = np.eye(4)
    translate[2, 3] = dist
    camera_to_world = np.linalg.inv(translate @ rot_x @ rot_y)
    position = camera_to_world[:3, 3]

    def towards(x, y):  # the world direction of the ray through image-plane offset (x, y)
        plane = camera_to_world @ np.array([-x, -y, 1.0, 1.0])
        return plane[:3] - position

    forward = towards(0, 0)
    return position, forward, towards(1, 0) - forward, -(towards(0, 1) - forward)  # rows grow downwards


@pytest.mark.parametrize("azim,elev", [(0, 0), (0, -20), (45, -25), (-90, -15), (130, 30), (270, -50)])
def test_camera_convention_matches_sketch2shape_at_the_mapped_angles(azim, elev):
    position, forward, right, up = _sketch2shape_camera(azim, elev)
    azimuth, elevation = camera_lib.from_sketch2shape(azim, elev)
    ours = camera_lib.Camera(float(azimuth), float(elevation), distance=4.0)
    np.testing.assert_allclose(ours.position, position, atol=1e-9)
    our_forward, our_right, our_up = ours.axes()
    unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
    np.testing.assert_allclose(our_forward, unit(forward), atol=1e-9)
    np.testing.assert_allclose(our_right, unit(right), atol=1e-9)
    np.testing.assert_allclose(our_up, unit(up), atol=1e-9)
    # Sketch2Shape's "above" is a negative elevation: ours is positive, the camera's height the same
    assert (position[1] > 0) == (elev < 0) == (elevation > 0) or elev == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sphere", "box", "torus"])
def test_tracer_depth_and_normals_match_closed_forms(name):
    origins, directions = CAMERA.rays()
    if name == "sphere":
        params, fn = SPHERE, sphere_sdf
        disc, t, normals = _sphere_truth(origins, directions, SPHERE["c"], 0.5)
        truth_hit, inner = disc > 0, disc > 0.02
    else:
        params = {"c": jnp.zeros(3), "half": jnp.array([0.5, 0.3, 0.4])} if name == "box" else \
            {"big": jnp.float32(0.5), "small": jnp.float32(0.2)}
        fn = box_sdf if name == "box" else torus_sdf
        mesh = trimesh.creation.box(extents=[1.0, 0.6, 0.8]) if name == "box" else \
            trimesh.creation.torus(0.5, 0.2, major_sections=512, minor_sections=256)
        cast = mesh_caster.cast_mesh(mesh.vertices, mesh.faces, CAMERA)
        truth_hit, t, normals = cast["hit"], cast["depth"], cast["normals"]
        # away from silhouettes: all 8 neighbours agree
        image = truth_hit.reshape(64, 64)
        padded = np.pad(image, 1, mode="edge")
        same = np.all([padded[1 + dy:65 + dy, 1 + dx:65 + dx] == image for dy in (-1, 0, 1) for dx in (-1, 0, 1)], 0)
        inner = (same & image).reshape(-1)
    out = jax.jit(lambda p: tracer.render(fn, p, jnp.asarray(origins), jnp.asarray(directions)))(params)
    hit = np.asarray(out["hit"])
    away = np.abs(np.asarray(out["min_sdf"])) > 0.01  # not grazing a silhouette
    np.testing.assert_array_equal(hit[away], truth_hit[away])
    depth_tol = 1e-4 if name != "torus" else 2e-3  # the torus mesh is itself an approximation
    assert np.abs(np.asarray(out["depth"])[inner] - t[inner]).max() < depth_tol
    cos = np.clip(np.sum(np.asarray(out["normals"])[inner] * normals[inner], axis=1), -1, 1)
    assert np.degrees(np.arccos(cos)).max() < (0.5 if name != "torus" else 2.0)
    assert float(out["decoder_evals"]) / len(origins) < 25


@pytest.mark.slow
def test_mesh_and_sdf_of_the_same_sphere_render_alike():
    mesh = trimesh.creation.icosphere(subdivisions=6, radius=0.5)
    params = {"c": jnp.zeros(3), "r": jnp.float32(0.5)}
    cam = camera_lib.Camera(40.0, -30.0, 4.0, 256.0, 128, 128)
    origins, directions = cam.rays()
    traced = tracer.render(sphere_sdf, params, jnp.asarray(origins), jnp.asarray(directions))
    cast = mesh_caster.cast_mesh(mesh.vertices, mesh.faces, cam)
    assert np.mean(np.asarray(traced["hit"]) == cast["hit"]) > 0.99
    both = np.asarray(traced["hit"]) & cast["hit"]
    cos = np.clip(np.sum(np.asarray(traced["normals"])[both] * cast["normals"][both], axis=1), -1, 1)
    assert np.degrees(np.arccos(cos)).mean() < 2.0
    image = mesh_caster.normal_map_uint8(cast["normals"], cast["hit"], cam)
    assert image.shape == (128, 128, 3) and np.all(image[0, 0] == 255)


@pytest.mark.slow
def test_gradients_of_depth_and_normals_match_finite_differences():
    origins, directions = (jnp.asarray(a) for a in CAMERA.rays())
    disc, _, _ = _sphere_truth(np.asarray(origins), np.asarray(directions), SPHERE["c"], 0.5)
    inner = jnp.asarray(disc > 0.05)  # a fixed set of pixels: the loss is smooth there

    def loss(p):
        out = tracer.render(sphere_sdf, p, origins, directions)
        n = out["normals"]
        return jnp.sum(jnp.where(inner, out["depth"] + n[:, 0] + 0.5 * n[:, 1], 0.0))

    grads = jax.grad(loss)(SPHERE)
    eps = 1e-3
    for key, index in (("r", None), ("c", 0), ("c", 1), ("c", 2)):
        plus, minus = dict(SPHERE), dict(SPHERE)
        if index is None:
            plus["r"], minus["r"] = SPHERE["r"] + eps, SPHERE["r"] - eps
            analytic = grads["r"]
        else:
            plus["c"], minus["c"] = SPHERE["c"].at[index].add(eps), SPHERE["c"].at[index].add(-eps)
            analytic = grads["c"][index]
        numeric = (loss(plus) - loss(minus)) / (2 * eps)
        assert abs(float(analytic) - float(numeric)) < 1e-2 * max(abs(float(numeric)), 1.0), (key, index)


def test_silhouette_gradient_flows_through_min_sdf():
    origins, directions = (jnp.asarray(a) for a in CAMERA.rays())
    grad = jax.grad(lambda p: jnp.sum(tracer.render(sphere_sdf, p, origins, directions)["min_sdf"]))(SPHERE)
    assert float(grad["r"]) < 0  # a bigger sphere lowers every ray's minimum


@pytest.mark.slow
def test_normal_gradients_are_finite_where_the_field_is_flat():
    # A trained ReLU decoder is often exactly flat far from the shape: missed rays end there.
    flat = lambda p, x: jnp.minimum(jnp.linalg.norm(x - p["c"], axis=-1) - p["r"], 0.2)  # noqa: E731
    origins, directions = (jnp.asarray(a) for a in CAMERA.rays())
    grad = jax.grad(lambda p: jnp.sum(tracer.render(flat, p, origins, directions)["normals"] ** 2 * 0.5
                                      + tracer.render(flat, p, origins, directions)["normals"]))(SPHERE)
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grad)), grad


@pytest.mark.slow
def test_gradient_memory_does_not_grow_with_the_step_count():
    origins, directions = (jnp.asarray(a) for a in CAMERA.rays())

    def memory(steps):
        settings = tracer.TraceSettings(stage_steps=(steps,), stage_fractions=(1.0,))
        fn = jax.jit(jax.grad(lambda p: jnp.sum(tracer.render(sphere_sdf, p, origins, directions, settings)["depth"])))
        stats = fn.lower(SPHERE).compile().memory_analysis()
        return stats.temp_size_in_bytes + stats.output_size_in_bytes

    assert memory(128) <= memory(32) * 1.05 + 1024


def test_sketch_lines_are_black_on_white_and_follow_the_silhouette():
    mesh = trimesh.creation.box(extents=[1.0, 0.6, 0.8])
    cast = mesh_caster.cast_mesh(mesh.vertices, mesh.faces, CAMERA)
    normal_map = mesh_caster.normal_map_uint8(cast["normals"], cast["hit"], CAMERA)
    lines = edges.sketch_from_render(normal_map, cast["depth"].reshape(64, 64), cast["hit"].reshape(64, 64))
    assert lines.dtype == np.uint8 and set(np.unique(lines)) == {0, 255}
    hit = cast["hit"].reshape(64, 64)
    import scipy.ndimage

    assert np.all(lines[~scipy.ndimage.binary_dilation(hit)] == 255)  # nothing drawn off the object's outline
    assert 0.02 < np.mean(lines == 0) < 0.3


@pytest.mark.slow
def test_render_stage_writes_pngs_views_and_tfds_images(tiny_dataset):
    config = tiny_dataset
    pipeline.preprocess_dataset(config, progress=False)
    src = tfds_builder.data_source(config, "train")
    example = src[0]
    views = len(config.render.azimuths) * len(config.render.elevations)
    assert example["normal_maps"].shape == (views, 32, 32, 3) and example["normal_maps"].dtype == np.uint8
    assert example["sketches"].shape == (views, 32, 32)
    np.testing.assert_allclose(example["views"][1], [90, 10, 4, 64])
    assert np.mean(example["normal_maps"][0] < 255) > 0.05  # the chair is in the picture


@pytest.mark.slow
def test_decoder_normals_have_a_derivative_in_the_latent_only_with_smoothed_relu_curvature():

    x = jnp.linspace(-1.0, 1.0, 11)
    np.testing.assert_array_equal(decoder_lib.relu_smooth_grad(x, 100.0), jax.nn.relu(x))
    np.testing.assert_array_equal(jax.vmap(jax.grad(lambda v: decoder_lib.relu_smooth_grad(v, 100.0)))(x), x > 0)
    assert float(jax.grad(jax.grad(lambda v: decoder_lib.relu_smooth_grad(v, 100.0)))(0.0)) == 25.0  # beta / 4

    config = chair16.get_config("smoke")
    decoder = decoder_lib.from_config(config.model)
    params = decoder_lib.init_params(decoder, jax.random.key(0))
    z = 0.1 * jax.random.normal(jax.random.key(1), (config.model.latent_dim,))
    point = jnp.array([[0.1, 0.2, -0.3]])

    def normal(z, beta):
        sdf = latent_render.decoder_sdf(decoder, beta)
        return jax.grad(lambda p: sdf({"decoder": params, "z": z}, p[None])[0])(point[0])

    np.testing.assert_allclose(normal(z, 100.0), normal(z, 0.0), rtol=1e-5)  # same normals (to float32 rounding)
    assert float(jnp.abs(jax.jacfwd(normal)(z, 0.0)).max()) < 1e-4  # ReLU: piecewise constant in z
    assert float(jnp.abs(jax.jacfwd(normal)(z, 100.0)).max()) > 1e-3


def _assert_same_hit_band(sdf, params, origins, directions, depth_a, depth_b, both, threshold, samples=32,
                          share_apart=0.01, grazing_share=0.0):
    """Two traces' depths on pixels both hit are within `threshold` (all but `share_apart` of them), or else
    stopped in the same hit band (all but `grazing_share` of them, whose rays skim the surface: |f| < 0.01
    between the two stops, no free space crossed).

    A trace stops at the first point with f < threshold. Where a trained decoder's gradient
    along the ray is shallow (|grad f . v| << 1), that band is threshold / |grad f . v| long,
    and two step sequences may stop anywhere in it; then f stays within +-threshold over the
    whole segment between the two stops. Stops on different surfaces would cross free space
    (f > threshold) or the inside (f < -threshold) in between. (1e-6: float32 noise of
    evaluating f again in another batch.)
    """
    depth_a, depth_b = np.asarray(depth_a), np.asarray(depth_b)
    apart = np.where(both & (np.abs(depth_a - depth_b) > threshold))[0]
    assert len(apart) <= share_apart * both.sum(), f"{len(apart)} of {both.sum()} hit depths differ"
    if len(apart) == 0:
        return
    t = np.linspace(0.0, 1.0, samples)[None, :, None]
    a, b = depth_a[apart][:, None, None], depth_b[apart][:, None, None]
    points = np.asarray(origins)[apart][:, None] + np.asarray(directions)[apart][:, None] * (a + t * (b - a))
    values = np.asarray(sdf(params, jnp.asarray(points.reshape(-1, 3))))
    worst = np.abs(values).reshape(len(apart), samples).max(axis=1)
    grazing = worst > threshold + 1e-6  # a ray that skims a surface: |f| small, but above the threshold, between
    assert grazing.sum() <= grazing_share * both.sum() and np.all(worst <= 0.01), \
        f"depths {depth_a[apart]} vs {depth_b[apart]}: |f| up to {worst} between"


def test_the_dense_march_finds_the_sphere_at_its_closed_form_depth():
    origins, directions = CAMERA.rays()
    disc, t, _ = _sphere_truth(origins, directions, SPHERE["c"], 0.5)
    out = tracer.march_densely(sphere_sdf, SPHERE, jnp.asarray(origins), jnp.asarray(directions), threshold=1e-6)
    hit, away = np.asarray(out["hit"]), np.abs(disc) > 0.02
    np.testing.assert_array_equal(hit[away], disc[away] > 0)
    assert np.abs(np.asarray(out["depth"])[hit & away] - t[hit & away]).max() < 1e-5


def _overestimating_plate(p, x):
    """A plate 0.02 thick (|z| < 0.01), exact within 0.1 of it and 5x its distance beyond: a trained decoder's
    kind of field (its values are only trained within the clamp)."""
    d = jnp.abs(x[:, 2] - p["z"]) - 0.01
    return jnp.where(d < 0.1, d, 0.1 + 5.0 * (d - 0.1))


@pytest.mark.slow
def test_steps_limited_to_the_clamp_find_a_thin_part_that_unlimited_steps_jump_through():
    camera = camera_lib.Camera(180.0, 0.0, 4.0, 128.0, 32, 32)  # at (0, 0, -4) looking along +z: the plate face on
    origins, directions = (jnp.asarray(a) for a in camera.rays())
    plate = {"z": jnp.float32(0.0)}
    reference = tracer.march_densely(_overestimating_plate, plate, origins, directions)
    entering = np.asarray(tracer.sphere_entry(origins, directions)[2])
    np.testing.assert_array_equal(np.asarray(reference["hit"]), entering)  # the plate fills the unit sphere's disc
    limited = tracer.render(_overestimating_plate, plate, origins, directions, tracer.TraceSettings(max_step=0.1))
    unlimited = tracer.render(_overestimating_plate, plate, origins, directions, tracer.TraceSettings())
    np.testing.assert_array_equal(np.asarray(limited["hit"]), entering)
    both = np.asarray(limited["hit"])
    assert np.abs(np.asarray(limited["depth"]) - np.asarray(reference["depth"]))[both].max() < 2e-3
    assert np.asarray(unlimited["hit"]).mean() < 0.5 * entering.mean()  # the failure the limit prevents
    assert not np.asarray(limited["unfinished"]).any()


@pytest.mark.slow
def test_on_a_trained_decoder_the_tracer_agrees_with_a_dense_march_and_reports_what_it_could_not_finish(tmp_path):
    from sdfjax import trained as trained_lib
    from tests.conftest import train_smoke_decoder

    config, workdir = train_smoke_decoder(tmp_path)
    model = trained_lib.load_trained(config, workdir)
    sdf = latent_render.decoder_sdf(model.decoder)
    cameras = [camera_lib.Camera(a, e, 4.0, 128.0, 64, 64) for a in (0.0, 70.0, 200.0) for e in (-30.0, 20.0)]
    origins, directions = (a.reshape(-1, 3) for a in camera_lib.stack_rays(cameras))
    settings = tracer.TraceSettings.from_config(config.render)
    assert settings.max_step == config.train.clamp_distance
    bulk_only = dataclasses.replace(settings, max_steps=sum(settings.stage_steps))
    render = jax.jit(lambda p, s: tracer.render(sdf, p, origins, directions, s), static_argnums=1)
    for z in model.latents:
        params = {"decoder": model.params, "z": jnp.asarray(z)}
        ours = render(params, settings)
        ref = tracer.march_densely(sdf, params, origins, directions, threshold=settings.threshold)
        # This barely trained field hovers just above the threshold along many rays: those run out of
        # budget and are flagged; every ray that finished agrees with the march, and no hit is lost unflagged.
        hit, ref_hit, unfinished = (np.asarray(a) for a in (ours["hit"], ref["hit"], ours["unfinished"]))
        assert np.mean((hit == ref_hit)[~unfinished]) >= 0.999
        assert not np.any(ref_hit & ~hit & ~unfinished)
        both = np.asarray(ours["hit"] & ref["hit"])
        assert both.sum() > 200
        # The march stops where f first drops below the threshold, the tracer a (bounded) Newton step on: on
        # this barely trained field those are up to 0.03 apart, with |f| within a few thresholds between them;
        # stops on different surfaces would cross free space or the inside in between.
        _assert_same_hit_band(sdf, params, origins, directions, ours["depth"], ref["depth"], both,
                              4 * settings.threshold, share_apart=1.0, grazing_share=0.01)
        # A ray out of budget is flagged, never a hit; with the staged bulk alone some are.
        short = render(params, bulk_only)
        unfinished = np.asarray(short["unfinished"])
        assert not np.any(unfinished & np.asarray(short["hit"]))
        assert np.all(np.asarray(short["hit"]) | unfinished | ~np.asarray(ref["hit"]))  # lost hits are all flagged


@pytest.mark.slow
def test_the_shipped_decoder_is_traced_whole_from_behind():
    """The chairs256 decoder seen from behind (view 47), where unlimited steps lost its chair backs."""
    from sdfjax import trained as trained_lib
    from sdfjax.config_files import load as load_config_file

    config = load_config_file("configs/chairs256.py:cpu")
    model = trained_lib.load_trained(config, "pretrained/chairs256_cpu")
    sdf = latent_render.decoder_sdf(model.decoder)
    origins, directions = (a.reshape(-1, 3) for a in camera_lib.stack_rays(
        [camera_lib.views_from_config(config.render)[47].scaled(48)]))
    settings = tracer.TraceSettings.from_config(config.render)
    params = {"decoder": model.params, "z": jnp.asarray(model.latents[3])}
    march = tracer.march_densely(sdf, params, origins, directions, threshold=settings.threshold)
    traced = tracer.render(sdf, params, origins, directions, settings)
    ref, ours = np.asarray(march["hit"]), np.asarray(traced["hit"])
    # the march stops where f drops below the threshold, the tracer a Newton step on, near f = 0; a few rays
    # skim the surface (f just above the threshold for a while), where the march's samples dip below it first
    _assert_same_hit_band(sdf, params, origins, directions, traced["depth"], march["depth"], ours & ref,
                          2 * settings.threshold, share_apart=1.0, grazing_share=0.01)
    unlimited = np.asarray(tracer.render(sdf, params, origins, directions,
                                         dataclasses.replace(settings, max_step=float("inf")))["hit"])
    assert ref.sum() > 300
    assert np.mean(ours == ref) >= 0.999, (ours.sum(), ref.sum())
    assert unlimited.sum() < 0.9 * ref.sum()  # the loss this test guards against is real on this latent


def test_a_shaded_mesh_is_lit_from_above_and_keeps_its_colours_in_a_glb(tmp_path):
    import trimesh

    from sdfjax.render import pictures

    sphere = trimesh.creation.icosphere(subdivisions=3)
    shaded = pictures.shaded_mesh(sphere)
    assert shaded is not sphere and np.array_equal(shaded.faces, sphere.faces)
    colours = np.asarray(shaded.visual.vertex_colors)
    brightness = colours[:, :3].astype(float).mean(axis=1)
    key = np.asarray(pictures.KEY_LIGHT) / np.linalg.norm(pictures.KEY_LIGHT)
    facing = sphere.vertex_normals @ key
    assert brightness[facing > 0.9].mean() > 1.8 * brightness[facing < -0.9].mean()  # lit side against shadow
    assert brightness[sphere.vertex_normals[:, 1] > 0.9].mean() > brightness[sphere.vertex_normals[:, 1] < -0.9].mean()
    path = tmp_path / "shape.glb"
    shaded.export(path)
    back = trimesh.load(path, force="mesh")
    assert back.visual.kind == "vertex" and np.asarray(back.visual.vertex_colors)[:, :3].std() > 10
