"""Sketch to shape (Sketch2Shape): a DeepSDF latent from one or several sketches of one object.

    summary = sketch_to_shape(config, workdir, sketch_paths=["front.png", "side.png"],
                              views=[(0, 10), (90, 10)])                # a user's drawings, one object
    summary = sketch_to_shape(config, workdir)                          # config.fit.split's sketches
    summary = sketch_to_shape(config, workdir, user_set="tests/data/user_sketches/sketches.json")

1. Start (`config.sketch.init`): `encoder` (default) maps each sketch straight to a latent
   (sdfjax.models.latent_encoder; several sketches of one object: the mean of theirs),
   `retrieval` takes the mean trained latent of the `retrieval_k` training shapes the
   Siamese encoder retrieves, `mean` the mean trained latent.
2. Refinement (decoder and encoders frozen): z minimises the loss of
   sdfjax.sketch2shape.losses (Siamese embedding + silhouette + Gaussian prior), all
   sketches of the object at once. One jitted step (sdfjax.fit.optimizer.latent_step) is
   vmapped over objects, each with its own cameras and Adam state. The loss is not smooth
   (pixels enter and leave the silhouette), so each object keeps the iterate with the
   lowest loss met, the start included: the choice uses the sketch alone, never the true
   shape.

A user's image is normalised first (sdfjax.sketch2shape.sketches.normalize_sketch): framed at
config.sketch.fill and centred, or, with config.sketch.user_framing="fit", where the encoder's
shape agrees with it on its size and place in the camera's image (sdfjax.sketch2shape.framing).
latents.npz keeps each drawing's framing (fill, centre right, centre down).

Writes `<workdir>/sketch2shape/<timestamp>/`: meshes/<name>.obj, latents.npz,
pictures/<name>.png and, for sketches of known shapes, metrics.csv. A user's drawing's
picture: sketch | start and result from the sketch's view | result from three other
views. A known shape's: sketch | retrieval | encoder | refined | truth, from the
sketch's view and from another. metrics.csv has per sketch the refined shape
("sketch2shape") beside its start ("encoder") and the baselines
(sdfjax.evaluators.sketch_to_shape), with a mean row per method.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import trimesh
from tqdm import tqdm

from sdfjax import errors, storage
from sdfjax import trained as trained_lib
from sdfjax.data import pipeline, tfds_builder
from sdfjax.evaluators import reconstruction
from sdfjax.evaluators import sketch_to_shape as sketch_evaluation
from sdfjax.evaluators import tables
from sdfjax.fit import reconstruct
from sdfjax.fit.folded import fold_decoder
from sdfjax.fit.optimizer import init_states, latent_step
from sdfjax.render import camera as camera_lib
from sdfjax.render import latent_render, pictures, tracer
from sdfjax.render.mesh_caster import cast_mesh, normal_map_uint8
from sdfjax.sketch2shape import framing, retrieval
from sdfjax.sketch2shape.encoders import embedder, latent_predictor, normal_map_encoder
from sdfjax.sketch2shape.hand_drawn import hand_drawn
from sdfjax.sketch2shape.losses import RefineSettings, gaussian_prior, sketch_loss
from sdfjax.sketch2shape.sketches import load_image, normalize_sketch, view_masks

INITS = ("encoder", "retrieval", "mean")
STYLES = ("dataset", "hand_drawn")
METHODS = ("sketch2shape", "encoder", "retrieval", "sdf_fit")


@dataclasses.dataclass
class SketchBatch:
    """Objects to shape, each drawn from V views (the same V for every object of a batch)."""

    names: list[str]
    sketches: np.ndarray  # (B, V, R, R) uint8
    cameras: list[list[camera_lib.Camera]]  # (B, V) at resolution R
    obj_ids: list[str | None]  # ground-truth shape (split mode) or None
    drawings: list[list[np.ndarray]] | None = None  # a user's images (H, W) in [0, 1], (B, V); None: dataset sketches


def make_step(sdf_fn, encoder, settings: RefineSettings, lr: float):
    """(optimizer, step); step(decoder_params, prior, z (B, L), opt, views) -> (z, opt, loss (B,), (embedding,
    silhouette, prior)), jitted, with `views` the objects' `object_views` (each array with a leading B axis)."""
    optimizer = optax.adam(lr)

    def loss_fn(z, decoder_params, prior, views):
        return sketch_loss(sdf_fn, encoder, settings, decoder_params, prior, z, views)

    objects_step = latent_step(loss_fn, optimizer, in_axes=(None, None, 0))

    @jax.jit
    def step(decoder_params, prior, z, opt, views):
        return objects_step(z, opt, decoder_params, prior, views)

    return optimizer, step


def config_step(config, sdf_fn, encoder, resolution: int):
    """`make_step` as config.sketch and config.render set it: the refinement's tracing budget
    (config.sketch.trace_max_steps steps per ray) and its weights."""
    trace = dataclasses.replace(tracer.TraceSettings.from_config(config.render),
                                max_steps=int(config.sketch.trace_max_steps))
    return make_step(sdf_fn, encoder, RefineSettings.from_config(config.sketch, trace, resolution), config.sketch.lr)


def user_batch(config, sketch_paths: list[str], views: list[tuple[float, float]] | None,
               resolution: int) -> SketchBatch:
    """A user's drawings of one object at `resolution`; `views` (azimuth, elevation) in degrees per drawing,
    default config.sketch's azimuth and elevation for a single drawing."""
    sk = config.sketch
    if views is None:
        views = [(float(sk.azimuth), float(sk.elevation))] * len(sketch_paths)
    if len(views) != len(sketch_paths):
        raise ValueError(f"{len(sketch_paths)} sketches but {len(views)} views: give one azimuth and elevation "
                         "per sketch")
    drawings = [load_image(p) for p in sketch_paths]
    sketches = np.stack([normalize_sketch(g, resolution, sk.fill, name=p) for g, p in zip(drawings, sketch_paths)])
    cameras = [camera_lib.Camera(float(a), float(e), config.render.distance, config.render.focal,
                                 config.render.resolution, config.render.resolution).scaled(resolution)
               for a, e in views]
    name = "+".join(os.path.splitext(os.path.basename(p))[0] for p in sketch_paths)
    return SketchBatch([name], sketches[None], [cameras], [None], [drawings])


def split_batch(config, resolution: int) -> tuple[SketchBatch, list[dict]]:
    """The dataset sketches (views config.sketch.views) of the shapes config.fit selects, one object each,
    and their records; with config.sketch.style="hand_drawn", each redrawn by
    sdfjax.sketch2shape.hand_drawn (seeded by config.seed and the sketch's name). With
    config.sketch.views_together, each shape is one object drawn from all those views
    (named `<obj_id>_v11+47+62`), as a user who draws front and side."""
    sk = config.sketch
    obj_ids, examples = reconstruct.load_examples(config, renders=True)
    if "sketches" not in examples[0]:
        raise errors.DataError(f"{config.data.root}: the dataset has no sketches; run python -m data_gen.preprocess "
                               f"--config.data.root={config.data.root} (its render stage)")
    num_views = len(examples[0]["views"])
    views = list(range(num_views)) if tuple(sk.views) == (-1,) else list(sk.views)
    if not views or max(views) >= num_views or min(views) < 0:
        raise ValueError(f"config.sketch.views={tuple(sk.views)}: the dataset has views 0..{num_views - 1} "
                         "((-1,) for all)")
    if examples[0]["sketches"].shape[-1] != resolution:
        raise ValueError(f"the encoders were trained on {resolution} px images; {config.data.root} has "
                         f"{examples[0]['sketches'].shape[-1]} px")
    if sk.style not in STYLES:
        raise ValueError(f"config.sketch.style={sk.style!r}: expected one of {STYLES}")
    together = bool(sk.get("views_together", False))
    names, sketches, cameras, ids, records = [], [], [], [], []
    for obj_id, example in zip(obj_ids, examples):
        drawn, seen_from = [], []
        for v in views:
            a, e, d, f = map(float, example["views"][v])
            sketch = example["sketches"][v]
            if sk.style == "hand_drawn":  # seeded by the one-view name in both modes: the same strokes
                seed = zlib.crc32(f"{obj_id}_v{v:02d}".encode())
                sketch = hand_drawn(sketch, np.random.default_rng([config.seed, seed]))
            drawn.append(sketch)
            seen_from.append(camera_lib.Camera(a, e, d, f, resolution, resolution))
        objects = ([(f"{obj_id}_v" + "+".join(f"{v:02d}" for v in views), drawn, seen_from)] if together else
                   [(f"{obj_id}_v{v:02d}", [s], [c]) for v, s, c in zip(views, drawn, seen_from)])
        for name, object_sketches, object_cameras in objects:
            names.append(name)
            sketches.append(np.stack(object_sketches))
            cameras.append(object_cameras)
            ids.append(obj_id)
            records.append(example)
    return SketchBatch(names, np.stack(sketches), cameras, ids), records


def user_set_batch(config, manifest_path: str, resolution: int) -> tuple[SketchBatch, list[dict]]:
    """User-style PNGs of known shapes (data_gen.user_sketches' sketches.json: file, obj_id, azimuth, elevation
    and, optionally, mesh per entry; the first config.fit.max_shapes when > 0), one object each, and the records
    of their shapes: from whichever split of
    config.data.root holds them, else computed from the entry's mesh file (sdfjax.data.pipeline.surface_record),
    so a sketch set that carries its meshes is scored without a dataset."""
    folder = os.path.dirname(manifest_path)
    try:
        entries = json.loads(storage.read_text(manifest_path))
        entries = entries[:int(config.fit.get("max_shapes", 0)) or len(entries)]  # as on a split: the first ones
        files = [os.path.join(folder, e["file"]) for e in entries]
        views = [(float(e["azimuth"]), float(e["elevation"])) for e in entries]
        obj_ids = [str(e["obj_id"]) for e in entries]
        meshes = [os.path.join(folder, e["mesh"]) if e.get("mesh") else None for e in entries]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise errors.DataError(f"{manifest_path}: expected a JSON list of {{file, obj_id, azimuth, elevation}} "
                               f"({type(e).__name__}: {e})") from None
    where = {}
    for split in ("test", "val", "train"):
        try:
            ids, _ = tfds_builder.split_index(config, split)
        except errors.DataError:
            continue
        where.update({o: (split, i) for i, o in enumerate(ids) if o not in where})
    missing = [o for o, m in zip(obj_ids, meshes) if o not in where and m is None]
    if missing:
        raise errors.DataError(f"{manifest_path}: shapes {missing} are not in {config.data.root} and have no mesh")
    sources = {}
    records = []
    for o, mesh in zip(obj_ids, meshes):
        if o in where:
            split, index = where[o]
            sources.setdefault(split, tfds_builder.data_source(config, split))
            records.append(sources[split][index])
        else:
            records.append(pipeline.surface_record(config, mesh, o))
    parts = [user_batch(config, [f], [v], resolution) for f, v in zip(files, views)]
    batch = SketchBatch([p.names[0] for p in parts], np.concatenate([p.sketches for p in parts]),
                        [p.cameras[0] for p in parts], obj_ids, [p.drawings[0] for p in parts])
    return batch, records


def mask_options(sketch_config) -> dict:
    """`sketches.view_masks`' keyword arguments as config.sketch sets them."""
    sk = sketch_config
    return {"tolerance": int(sk.outline_tolerance), "carve_margin": int(sk.carve_margin),
            "line_band": int(sk.line_band), "gap_carve_margin": int(sk.gap_carve_margin)}


def object_views(sketches: np.ndarray, cameras: list[list[camera_lib.Camera]], targets: np.ndarray,
                 sketch_config) -> dict[str, np.ndarray]:
    """The step's per-object views (losses.VIEW_KEYS, each (B, V, ...)) of B objects drawn from V views each.

    sketches (B, V, R, R) uint8, cameras B lists of V at resolution R, targets (B, V, D) the sketches'
    embeddings; the masks are `sketches.view_masks` as `sketch_config` (config.sketch) sets them.
    """
    masks = np.asarray([[view_masks(s, **mask_options(sketch_config)) for s in obj] for obj in sketches])
    b, v = masks.shape[:2]
    masks = masks.reshape(b, v, 3, -1)
    rays = [camera_lib.stack_rays(views) for views in cameras]
    return {"origins": np.stack([np.asarray(r[0]) for r in rays]),
            "directions": np.stack([np.asarray(r[1]) for r in rays]), "targets": np.asarray(targets),
            "inside": masks[:, :, 0], "known": masks[:, :, 1], "carvable": masks[:, :, 2]}


def optimize_batch(refine_step: tuple, decoder_params, prior, initial: np.ndarray, views: dict, iterations: int,
                   on_step=None, min_improvement: float = 0.0):
    """Runs `iterations` steps of `refine_step` (`make_step`'s (optimizer, step)) from `initial` (B, L); returns
    (best iterate (B, L), loss curve (T + 1, B)).

    The best iterate is the one with the lowest loss met, the start included, and it replaces
    the start only when it lowers the start's loss by at least the share `min_improvement`
    (config.sketch.min_improvement: a drawing's gaps and wobble are weak evidence, and a small
    gain in the loss is no gain in shape); `views` are the objects' `object_views`;
    `on_step()` is called after each of the iterations + 1 steps (a progress bar's update).
    """
    optimizer, step = refine_step
    z = jnp.asarray(initial)
    opt = init_states(optimizer, z)
    curve, best_z, best_loss = [], np.array(z), np.full(len(initial), np.inf)
    for _ in range(iterations + 1):
        before = np.asarray(z)
        new_z, new_opt, loss, _ = step(decoder_params, prior, z, opt, views)
        loss = np.asarray(loss)  # the loss of `before`
        better = loss < best_loss
        best_z[better], best_loss[better] = before[better], loss[better]
        curve.append(loss)
        z, opt = new_z, new_opt
        if on_step is not None:
            on_step()
    curve = np.asarray(curve).reshape(iterations + 1, len(initial))
    weak = best_loss > (1.0 - min_improvement) * curve[0]
    best_z[weak] = np.asarray(initial)[weak]
    return best_z, curve


def _padded(a: np.ndarray, size: int) -> np.ndarray:
    """`a` with its last row repeated up to `size` rows (a fixed batch shape compiles once)."""
    return np.concatenate([a, np.repeat(a[-1:], size - len(a), 0)]) if len(a) < size else a


def encoder_predictor(config, workdir: str, resolution: int, optional: bool = False, batch: int = 64):
    """The sketch-to-latent encoder of `workdir` as `latent_predictor` (lines grown by
    config.sketch.encoder_line_growth, `batch` sketches per compiled call), or None when the run has none and it
    is `optional`; ValueError when it reads another `resolution`."""
    try:
        model, params, meta = trained_lib.load_encoder(workdir)
    except ValueError:
        if not optional:
            raise
        return None
    if int(meta["resolution"]) != resolution:
        raise ValueError(f"the sketch-to-latent encoder was trained on {meta['resolution']} px sketches; these are "
                         f"{resolution} px")
    return latent_predictor(model, params, batch=batch, line_growth=int(config.sketch.get("encoder_line_growth", 0)))


def starting_latents(trained, batch: SketchBatch, retrieved, predict) -> dict[str, np.ndarray]:
    """{"encoder" (with a `predict`or, `encoder_predictor`), "retrieval" (with `retrieved` obj_ids, (B, k)),
    "mean"}: (B, L) starting latents of each object."""
    out = {"mean": np.broadcast_to(trained.latents.mean(axis=0), (len(batch.names), trained.latents.shape[1]))}
    row_of = {o: i for i, o in enumerate(trained.obj_ids)}
    if retrieved is not None:
        out["retrieval"] = trained.latents[[[row_of[o] for o in row] for row in retrieved]].mean(axis=1)
    if predict is not None:
        b, v = batch.sketches.shape[:2]
        predicted = predict(batch.sketches.reshape(b * v, *batch.sketches.shape[2:]),
                            camera_lib.view_angles([c for row in batch.cameras for c in row]))
        out["encoder"] = predicted.reshape(b, v, -1).mean(axis=1)
    return {k: np.asarray(val, np.float32) for k, val in out.items()}


USER_FRAMINGS = ("fixed", "fit")


def user_framing(sketch_config) -> str:
    """config.sketch.user_framing: `fixed` (a user's drawing framed at config.sketch.fill, centred) or `fit`
    (framed where the encoder's shape agrees with it: `framed_drawings`)."""
    choice = sketch_config.get("user_framing", "fixed")
    if choice not in USER_FRAMINGS:
        raise ValueError(f"config.sketch.user_framing={choice!r}: expected one of {USER_FRAMINGS}")
    return choice


def silhouette_renderer(sdf_fn, settings: tracer.TraceSettings):
    """The tracer of `framed_drawings`: marching only (no normals), one framing.SILHOUETTE_RESOLUTION^2 view per
    compiled call."""
    return latent_render.views_renderer(sdf_fn, settings, chunk=framing.SILHOUETTE_RESOLUTION ** 2,
                                        marching_only=True)


def framed_drawings(drawings: list[np.ndarray], cameras: list[camera_lib.Camera], predict, render, decoder_params,
                    name: str = "sketch") -> tuple[np.ndarray, np.ndarray]:
    """A user's drawings of one object (V images (H, W) in [0, 1]) seen from `cameras` (V, at the encoder's
    resolution R) -> (sketches (V, R, R) uint8 framed by `framing.self_consistent_framing`, their framings (V, 3):
    fill, centre right, centre down). `predict` is the sketch-to-latent encoder (`encoder_predictor`), `render` a
    `latent_render.views_renderer` (`silhouette_renderer`: only hits are read), which traces the silhouettes at
    framing.SILHOUETTE_RESOLUTION."""
    sketches, framings = [], []
    size = framing.SILHOUETTE_RESOLUTION
    for grey, camera in zip(drawings, cameras):
        resolution = camera.width
        angles = camera_lib.view_angles([camera])
        origins, directions = camera_lib.stack_rays([camera.scaled(size)])

        def silhouettes(latents):
            return np.stack([render({"decoder": decoder_params, "z": jnp.asarray(z)}, origins, directions)["hit"][0]
                             .reshape(size, size) for z in latents])

        fill, centre = framing.self_consistent_framing(
            grey, lambda s: predict(s, np.repeat(angles, len(s), axis=0)), silhouettes, resolution, name=name)
        sketches.append(normalize_sketch(grey, resolution, fill, name=name, centre=centre))
        framings.append((fill, *centre))
    return np.stack(sketches), np.asarray(framings, np.float32)


def sketch_to_shape(config, workdir: str, sketch_paths: list[str] | None = None,
                    views: list[tuple[float, float]] | None = None, progress: bool = True,
                    out_dir: str | None = None, user_set: str | None = None) -> dict:
    """Shapes a user's sketches of one object, the user-style sketches of a `user_set` manifest (scored against
    their shapes), or every sketch of `config.fit.split`; see the module docstring.

    Returns {"out_dir", "names", "rows" (split mode), "means" (per method), "losses" (T + 1, B),
    "initial", "latents"}.
    """
    sk = config.sketch
    if sk.init not in INITS:
        raise ValueError(f"config.sketch.init={sk.init!r}: expected one of {INITS}")
    trained = trained_lib.load_trained(config, workdir)
    model, enc_params, meta = trained_lib.load_siamese(workdir)
    resolution = int(meta["resolution"])
    if sketch_paths:
        batch, records = user_batch(config, list(sketch_paths), views, resolution), [None]
    elif user_set:
        batch, records = user_set_batch(config, user_set, resolution)
    else:
        batch, records = split_batch(config, resolution)
    b, v = batch.sketches.shape[:2]
    settings = tracer.TraceSettings.from_config(config.render)
    sdf_fn = latent_render.decoder_sdf(trained.decoder)
    # One compiled renderer (the full trace budget) for the pictures.
    render = latent_render.views_renderer(sdf_fn, settings)
    predict = encoder_predictor(config, workdir, resolution, optional=sk.init != "encoder")
    framings = np.asarray([[(sk.fill, 0.0, 0.0)] * v] * b, np.float32)
    if batch.drawings is not None and user_framing(sk) == "fit":
        if predict is None:
            raise ValueError("config.sketch.user_framing='fit' frames a drawing with the sketch-to-latent encoder; "
                             f"{workdir} has none (python -m sdfjax.launch.train_encoder)")
        hits = silhouette_renderer(sdf_fn, settings)
        for i, (drawings, cameras) in enumerate(zip(batch.drawings, batch.cameras)):
            batch.sketches[i], framings[i] = framed_drawings(drawings, cameras, predict, hits, trained.params,
                                                             batch.names[i])

    targets = embedder(model, enc_params, "sketch")(batch.sketches.reshape(b * v, resolution, resolution))
    targets = targets.reshape(b, v, -1)
    # Retrieval among the training shapes (from the object's first sketch): an init and a baseline.
    index = retrieval.train_index(config, workdir, model, enc_params)
    if index is None and sk.init == "retrieval":
        raise ValueError(f"config.sketch.init='retrieval' retrieves training shapes: {workdir} has no retrieval "
                         f"index and {config.data.root} no dataset")
    retrieved = None if index is None else retrieval.nearest_shapes(index, targets[:, 0], max(1, sk.retrieval_k))
    starts = starting_latents(trained, batch, retrieved, predict)
    initial = starts[sk.init]

    prior = {k: jnp.asarray(a) for k, a in gaussian_prior(trained.latents, sk.prior_shrinkage).items()}
    optimizer, step = config_step(config, sdf_fn, normal_map_encoder(model, enc_params), resolution)
    size = max(1, min(sk.batch, b))  # one object is not padded to a batch of sk.batch
    z_all, curves = [], []
    bar = tqdm(total=-(-b // size) * (sk.iterations + 1), desc="sketch2shape", unit="step",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for start in range(0, b, size):
            part = slice(start, start + size)
            count = len(batch.names[part])
            views = {k: jnp.asarray(_padded(a, size)) for k, a in object_views(
                batch.sketches[part], batch.cameras[part], targets[part], sk).items()}
            best_z, curve = optimize_batch((optimizer, step), trained.params, prior, _padded(initial[part], size),
                                           views, sk.iterations, bar.update, float(sk.get("min_improvement", 0.0)))
            z_all.append(best_z[:count])
            curves.append(curve[:, :count])
    finally:
        bar.close()
    z_final = np.concatenate(z_all)
    losses = np.concatenate(curves, axis=1)

    out_dir = storage.run_dir(workdir, "sketch2shape", out_dir)
    storage.save_npz(storage.join(out_dir, "latents.npz"), names=np.asarray(batch.names), latents=z_final,
                initial=initial, loss_curve=losses, retrieved=np.asarray(retrieved or [[""]] * b), framings=framings,
                obj_ids=np.asarray([o or "" for o in batch.obj_ids]),
                **{f"start_{k}": a for k, a in starts.items()})
    if sketch_paths:
        write_pictures(config, out_dir, batch, trained, render, initial, z_final)
    else:
        write_comparisons(config, out_dir, batch, records, trained, render,
                          {**{k: starts[k] for k in ("retrieval", "encoder") if k in starts}, "refined": z_final})

    folded = fold_decoder(trained.decoder, trained.params)
    summary = {"out_dir": out_dir, "names": batch.names, "losses": losses, "rows": [], "means": {},
               "initial": initial, "latents": z_final}
    if sketch_paths:
        mesh_config = config.copy_and_resolve_references()
        mesh_config.fit.metrics = False
        reconstruction.mesh_and_score(mesh_config, folded, z_final[0], {"offset": np.zeros(3), "scale": 1.0},
                                      batch.names[0], out_dir)
        return summary
    rows = reconstruction.score_latents(config, folded, z_final, records, batch.names, out_dir, progress,
                                        extra=[{"method": "sketch2shape", "fit_loss": float(
                                            losses[0, i] if np.array_equal(z_final[i], initial[i]) else losses[:, i].min()),
                                                "start_loss": float(losses[0, i])} for i in range(b)])
    if "encoder" in starts:
        no_mesh = config.copy_and_resolve_references()
        no_mesh.fit.save_mesh = False
        rows += reconstruction.score_latents(no_mesh, folded, starts["encoder"], records, batch.names, out_dir,
                                             progress, extra=[{"method": "encoder"}] * b)
    if sk.references:
        rows += sketch_evaluation.reference_rows(config, workdir, batch, records, trained, retrieved, out_dir,
                                                 progress)
    summary["means"] = tables.write_metrics_csv(os.path.join(out_dir, "metrics.csv"), rows, group_by="method")
    summary["rows"] = rows
    return summary


def other_views(camera: camera_lib.Camera, resolution: int) -> list[camera_lib.Camera]:
    """Three views around the shape from the sketch's camera: +90, +180 and +270 degrees of azimuth at 20 up."""
    return [dataclasses.replace(camera, azimuth=(camera.azimuth + d) % 360, elevation=20.0).scaled(resolution)
            for d in (90, 180, 270)]


def write_pictures(config, out_dir, batch, trained, render, initial, final) -> None:
    """pictures/<name>.png: one row per sketch of the object: sketch | start | result (sketch's view) | result
    from three other views; traced by `render`, a `latent_render.views_renderer`."""
    size = config.render.preview_resolution
    for i, name in enumerate(batch.names):
        rows = []
        for sketch, camera in zip(batch.sketches[i], batch.cameras[i]):
            cameras = [camera.scaled(size)] + other_views(camera, size)
            images = [latent_render.render_normal_maps(render, {"decoder": trained.params, "z": jnp.asarray(z)},
                                                       cameras) for z in (initial[i], final[i])]
            rows.append([pictures.upsample(sketch, size), images[0][0], images[1][0]] + list(images[1][1:]))
        storage.write_png(os.path.join(out_dir, "pictures", f"{name}.png"), pictures.picture_grid(rows))


def write_comparisons(config, out_dir, batch, records, trained, render, latents: dict[str, np.ndarray]) -> None:
    """pictures/<name>.png for sketches of known shapes: two rows, the sketch's view and +90 degrees of azimuth
    at 20 up, each: sketch (first row) | one render per entry of `latents` (retrieval, encoder, refined) | the
    true shape (its normalised mesh: the record's "normalized_mesh", else the dataset's file, ray-cast); traced
    by `render`, a `latent_render.views_renderer`."""
    size = config.render.preview_resolution
    for i, name in enumerate(batch.names):
        camera = batch.cameras[i][0]
        cameras = [camera.scaled(size), other_views(camera, size)[0]]
        columns = [latent_render.render_normal_maps(render, {"decoder": trained.params, "z": jnp.asarray(z[i])},
                                                    cameras) for z in latents.values()]
        mesh = records[i]["normalized_mesh"] if "normalized_mesh" in records[i] else trimesh.load(
            trimesh.util.wrap_as_stream(storage.read_bytes(reconstruct.normalized_mesh_path(config, batch.obj_ids[i]))),
            file_type="obj", force="mesh", process=False)
        truth = [mesh_normal_map(mesh, c) for c in cameras]
        blank = np.full((size, size), 255, np.uint8)
        rows = [[pictures.upsample(batch.sketches[i][0], size)] + [c[0] for c in columns] + [truth[0]],
                [blank] + [c[1] for c in columns] + [truth[1]]]
        storage.write_png(os.path.join(out_dir, "pictures", f"{name}.png"), pictures.picture_grid(rows))


def mesh_normal_map(mesh, camera: camera_lib.Camera) -> np.ndarray:
    """(H, W, 3) uint8 normal map of a mesh (normalised frame) from `camera`."""
    cast = cast_mesh(mesh.vertices, mesh.faces, camera)
    return normal_map_uint8(cast["normals"], cast["hit"], camera)
