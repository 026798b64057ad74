"""Every hot step built as a platform would run it, jitted with its shardings, for `jax.export`.

    step, args = STEPS["deepsdf_train"](config, "cuda", parallel.make_mesh())   # the jitted step, its arguments
    exported = export(step, args, platforms=("cuda", "tpu"))                   # ValueError naming what failed
    assert not host_callbacks(exported)

A CPU chooses chunks and float32 where an accelerator takes one pass and bf16
(sdfjax.chunking, sdfjax.parallel.fast_compute_dtype); `platform` makes the accelerator's
choices here, so a machine without one traces and exports the programs a GPU or a TPU would
compile: a CPU-only operation, a host callback or a shape that does not shard shows in a test,
not on a user's pod. The arguments are `jax.ShapeDtypeStruct`s with their shardings (nothing
is allocated); weights a step closes over (the frozen decoder of the sketch encoder and of the
refinement) are random at the config's size.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from sdfjax import parallel
from sdfjax import trained as trained_lib
from sdfjax.fit import sdf_fit
from sdfjax.fit.folded import fold_decoder
from sdfjax.models import decoder as decoder_lib
from sdfjax.models import latent_encoder
from sdfjax.models import siamese as siamese_lib
from sdfjax.render import camera as camera_lib
from sdfjax.render import latent_render, tracer
from sdfjax.sketch2shape import optimize
from sdfjax.sketch2shape.encoders import normal_map_encoder
from sdfjax.train import latent_encoder as encoder_training
from sdfjax.train import siamese as siamese_training
from sdfjax.train import step as deepsdf_step

# Training shapes (latent table rows) where the config does not say: Sketch2Shape's 4,096 ShapeNet chairs.
DEFAULT_TRAIN_SHAPES = 4096
# Custom-call targets of host callbacks (jax.pure_callback, io_callback, debug.callback) in a lowered module.
HOST_CALLBACK_MARKERS = ("callback",)


def _train_shapes(config) -> int:
    return int(config.data.get("num_train", 0) or DEFAULT_TRAIN_SHAPES)


def _abstract(tree, sharding=None):
    """ShapeDtypeStructs of a pytree of arrays (or of ShapeDtypeStructs), each with `sharding` when given."""
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding), tree)


def _with_shardings(tree, shardings):
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings)


def deepsdf_train(config, platform: str, mesh) -> tuple:
    """DeepSDF's training step (decoder, latent table, Adam) at config.train's batch: scenes x points sharded."""
    tc = config.train
    num_rows = -(-_train_shapes(config) // mesh.size) * mesh.size
    decoder = decoder_lib.from_config(config.model, platform)
    optimizer = deepsdf_step.make_optimizer(tc, steps_per_epoch=1)
    abstract = jax.eval_shape(lambda k: deepsdf_step.init_state(decoder, optimizer, num_rows, k, tc.code_bound),
                              jax.random.key(0))
    shardings = deepsdf_step.state_shardings(abstract, mesh, tc.shard_latents)
    step = deepsdf_step.jit_train_step(
        deepsdf_step.make_train_step(decoder, optimizer, tc, 1, config.seed, platform=platform), shardings, mesh)
    b, s = int(tc.scenes_per_batch), int(tc.samples_per_scene)
    sharded = parallel.data_sharded(mesh)
    batch = {"labels": jax.ShapeDtypeStruct((b,), jnp.int32, sharding=sharded),
             "xyz": jax.ShapeDtypeStruct((b, s, 3), jnp.float32, sharding=sharded),
             "sdf": jax.ShapeDtypeStruct((b, s), jnp.float32, sharding=sharded)}
    return step, (_with_shardings(abstract, shardings), batch)


def batched_fit(config, platform: str, mesh) -> tuple:
    """One step of DeepSDF reconstruction for mesh.size shapes x config.fit.restarts, shapes sharded."""
    decoder = decoder_lib.from_config(config.model, platform)
    settings = dataclasses.replace(sdf_fit.FitSettings.from_config(config), platform=platform, num_iterations=0)
    folded = jax.eval_shape(lambda k: fold_decoder(decoder, decoder_lib.init_params(decoder, k)), jax.random.key(0))
    shapes, restarts, samples = mesh.size, max(1, int(config.fit.restarts)), int(config.data.num_sdf_samples)
    initial = jax.ShapeDtypeStruct((shapes, restarts, decoder.latent_dim), jnp.float32)
    init, step, _ = sdf_fit.compiled_steps(settings, mesh)
    state = jax.eval_shape(init, initial)
    sharded, replicated = parallel.data_sharded(mesh), parallel.replicated(mesh)
    state = {**_abstract({k: v for k, v in state.items() if k != "step"}, sharded),
             "step": jax.ShapeDtypeStruct((), jnp.int32, sharding=replicated)}
    data = {"xyz_bounds": jax.ShapeDtypeStruct((shapes, samples, 5), jnp.float32, sharding=sharded),
            "num_positive": jax.ShapeDtypeStruct((shapes,), jnp.int32, sharding=sharded),
            "num_samples": jax.ShapeDtypeStruct((shapes,), jnp.int32, sharding=sharded)}
    key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=replicated)
    return step, (_abstract(folded, replicated), state, data, key)


def siamese_train(config, platform: str, mesh) -> tuple:
    """The Siamese encoder's training step (augmentation, both towers, triplet loss) at config.siamese's batch."""
    del platform  # the towers choose nothing by backend
    sc, resolution = config.siamese, int(config.render.resolution)
    model = siamese_lib.from_config(sc)
    optimizer = siamese_training.make_optimizer(sc)
    abstract = jax.eval_shape(lambda k: siamese_training.init_state(model, optimizer, k, resolution), jax.random.key(0))
    step = siamese_training.jit_train_step(siamese_training.make_train_step(model, optimizer, sc, config.seed), mesh)
    n = int(sc.shapes_per_batch) * int(sc.views_per_shape)
    sharded = parallel.data_sharded(mesh)
    batch = {"sketches": jax.ShapeDtypeStruct((n, resolution, resolution), jnp.uint8, sharding=sharded),
             "normal_maps": jax.ShapeDtypeStruct((n, resolution, resolution, 3), jnp.uint8, sharding=sharded),
             "labels": jax.ShapeDtypeStruct((n,), jnp.int32, sharding=sharded),
             "rights": jax.ShapeDtypeStruct((n, 3), jnp.float32, sharding=sharded),
             "view_angles": jax.ShapeDtypeStruct((n, 2), jnp.float32, sharding=sharded)}
    return step, (_abstract(abstract, parallel.replicated(mesh)), batch)


def _random_deepsdf(config, platform: str) -> trained_lib.TrainedModel:
    """A DeepSDF decoder and latent table of the config's size, random: what a frozen step closes over."""
    decoder = decoder_lib.from_config(config.model, platform)
    rows = _train_shapes(config)
    latents = np.random.default_rng(0).normal(size=(rows, decoder.latent_dim)).astype(np.float32) * 0.05
    return trained_lib.TrainedModel(decoder=decoder, params=decoder_lib.init_params(decoder, jax.random.key(0)),
                                    latents=latents, obj_ids=[f"s{i}" for i in range(rows)], step=0)


def encoder_train(config, platform: str, mesh) -> tuple:
    """The sketch-to-latent encoder's training step (latent and SDF terms through the frozen decoder)."""
    ec, resolution = config.encoder, int(config.render.resolution)
    model = latent_encoder.from_config(ec, config.model.latent_dim)
    optimizer = encoder_training.make_optimizer(ec)
    view_input = bool(ec.get("view_input", False))
    abstract = jax.eval_shape(lambda k: encoder_training.init_state(model, optimizer, k, resolution, view_input),
                              jax.random.key(0))
    step = encoder_training.jit_train_step(encoder_training.make_train_step(
        model, optimizer, _random_deepsdf(config, platform), ec, config.train.clamp_distance, config.seed), mesh)
    n = int(ec.shapes_per_batch) * int(ec.views_per_shape)
    sharded = parallel.data_sharded(mesh)
    batch = {"sketches": jax.ShapeDtypeStruct((n, resolution, resolution), jnp.uint8, sharding=sharded),
             "labels": jax.ShapeDtypeStruct((n,), jnp.int32, sharding=sharded),
             "view_angles": jax.ShapeDtypeStruct((n, 2), jnp.float32, sharding=sharded)}
    return step, (_abstract(abstract, parallel.replicated(mesh)), batch)


def _sketch_views(config, objects: int, resolution: int) -> dict:
    """`optimize.object_views` of `objects` one-view objects: a drawn square seen from the sketch's default view."""
    sketch = np.full((resolution, resolution), 255, np.uint8)
    q = resolution // 4
    sketch[q:-q, q] = sketch[q:-q, -q] = sketch[q, q:-q] = sketch[-q, q:-q] = 0
    r = config.render
    camera = camera_lib.Camera(float(config.sketch.azimuth), float(config.sketch.elevation), r.distance, r.focal,
                               r.resolution, r.resolution).scaled(resolution)
    embedding_dim = int(config.siamese.embedding_dim)
    return optimize.object_views(np.repeat(sketch[None, None], objects, 0), [[camera]] * objects,
                                 np.zeros((objects, 1, embedding_dim), np.float32), config.sketch)


def sketch_refinement(config, platform: str, mesh) -> tuple:
    """One step of sketch-to-shape refinement for config.sketch.batch objects: the sphere tracer with its implicit
    gradient through the decoder, the normal map's Siamese embedding, the silhouette and prior terms."""
    del mesh  # objects are few: one device runs a step
    deepsdf = _random_deepsdf(config, platform)
    resolution = int(config.sketch.get("resolution", 0) or config.render.resolution)
    siamese = siamese_lib.from_config(config.siamese)
    siamese_params = siamese_lib.init_params(siamese, jax.random.key(1), resolution)
    sdf_fn = latent_render.decoder_sdf(deepsdf.decoder)
    optimizer, step = optimize.config_step(config, sdf_fn, normal_map_encoder(siamese, siamese_params), resolution)
    objects = max(1, int(config.sketch.batch))
    z = jnp.zeros((objects, deepsdf.decoder.latent_dim), jnp.float32)
    opt = jax.vmap(optimizer.init)(z)
    prior = {"mean": np.zeros(deepsdf.decoder.latent_dim, np.float32),
             "whiten": np.eye(deepsdf.decoder.latent_dim, dtype=np.float32)}
    views = {k: jnp.asarray(v) for k, v in _sketch_views(config, objects, resolution).items()}
    return step, (_abstract(deepsdf.params), _abstract(prior), _abstract(z), _abstract(opt), _abstract(views))


def tracer_render(config, platform: str, mesh) -> tuple:
    """The sphere tracer's forward render (hits, depth, normals) of one preview view, as the page draws it."""
    del mesh
    deepsdf = _random_deepsdf(config, platform)
    settings = tracer.TraceSettings.from_config(config.render)
    sdf_fn = latent_render.decoder_sdf(deepsdf.decoder)
    size = int(config.render.preview_resolution)
    rays = size * size
    render = jax.jit(lambda p, o, d: tracer.render(sdf_fn, p, o, d, settings))
    params = {"decoder": _abstract(deepsdf.params), "z": jax.ShapeDtypeStruct((deepsdf.decoder.latent_dim,),
                                                                              jnp.float32)}
    return render, (params, jax.ShapeDtypeStruct((rays, 3), jnp.float32), jax.ShapeDtypeStruct((rays, 3), jnp.float32))


STEPS = {"deepsdf_train": deepsdf_train, "batched_fit": batched_fit, "siamese_train": siamese_train,
         "encoder_train": encoder_train, "sketch_refinement": sketch_refinement, "tracer_render": tracer_render}


def export(jitted, args, platforms=("cuda", "tpu")) -> jax.export.Exported:
    """`jax.export` of `jitted` at `args` for `platforms`; ValueError with the reason when it cannot be exported
    (jax.export refuses custom calls without a stability guarantee: host callbacks among them)."""
    try:
        return jax.export.export(jitted, platforms=tuple(platforms))(*args)
    except Exception as e:  # noqa: BLE001 - any lowering failure is the finding, reported in one line
        raise ValueError(f"cannot export for {platforms}: {type(e).__name__}: {str(e).splitlines()[0][:300]}") from e


def host_callbacks(exported: jax.export.Exported) -> list[str]:
    """The lines of the exported module that call back into the host (empty: the program runs on the device)."""
    return [line.strip() for line in exported.mlir_module().splitlines()
            if "custom_call" in line and any(m in line for m in HOST_CALLBACK_MARKERS)]
