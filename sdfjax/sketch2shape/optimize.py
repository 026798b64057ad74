"""Sketch to shape (Sketch2Shape): a DeepSDF latent optimised until its render matches a sketch.

    summary = sketch_to_shape(config, workdir, sketch_path="chair.png")   # a user's drawing
    summary = sketch_to_shape(config, workdir)                            # config.fit.split's sketches

For a sketch S seen from camera C, the latent z (decoder and encoder frozen) minimises
the embedding + silhouette + prior loss of sdfjax.sketch2shape.losses. z starts at the
mean trained latent, or at the mean of the trained latents of the `retrieval_k`
training shapes the encoder retrieves for S (sdfjax.sketch2shape.retrieval). Many
sketches are optimised at once: one jitted step (sdfjax.fit.optimizer.latent_step) is
vmapped over sketches, each with its own camera and Adam state. The loss is not smooth
(pixels enter and leave the silhouette), so each sketch keeps the iterate with the
lowest loss met, not the last one.

A user's image is normalised first (sdfjax.sketch2shape.sketches.normalize_sketch).

Writes `<workdir>/sketch2shape/<timestamp>/`: meshes/<name>.obj, latents.npz,
pictures/<name>.png (sketch | render from the sketch's view at the start | at the end
| three other views), and in split mode metrics.csv: per sketch, the metrics of
sketch-to-shape beside its baselines (sdfjax.sketch2shape.evaluate), with a mean row
per method.
"""

from __future__ import annotations

import dataclasses
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from sdfjax import errors, io, trained as trained_lib
from sdfjax.fit import reconstruct, reports, scoring
from sdfjax.fit.folded import fold_decoder
from sdfjax.fit.optimizer import init_states, latent_step
from sdfjax.render import camera as camera_lib
from sdfjax.render import latent_render, pictures, tracer
from sdfjax.sketch2shape import evaluate, retrieval
from sdfjax.sketch2shape.encoders import embedder, normal_map_encoder
from sdfjax.sketch2shape.losses import sketch_loss
from sdfjax.sketch2shape.sketches import filled_outline, load_image, normalize_sketch

INITS = ("retrieval", "mean")
METHODS = ("sketch2shape", "retrieval", "sdf_fit")


@dataclasses.dataclass
class SketchBatch:
    """Sketches to optimise, with the view each was drawn from."""

    names: list[str]
    sketches: np.ndarray  # (B, R, R) uint8
    cameras: list[camera_lib.Camera]  # (B,) at resolution R
    obj_ids: list[str | None]  # ground-truth shape (split mode) or None


def make_step(sdf_fn, encoder, settings, resolution: int, sketch_config):
    """(optimizer, step); step(decoder_params, z (B, L), opt, origins (B, R*R, 3), directions, targets (B, D),
    outlines (B, R*R)) -> (z, opt, loss (B,), (embedding distance, silhouette)), jitted."""
    optimizer = optax.adam(sketch_config.lr)

    def loss_fn(z, decoder_params, origins, directions, target, outline):
        return sketch_loss(sdf_fn, decoder_params, z, encoder, target, origins, directions, outline, settings,
                           resolution, sketch_config)

    sketches_step = latent_step(loss_fn, optimizer, in_axes=(None, 0, 0, 0, 0))

    @jax.jit
    def step(decoder_params, z, opt, origins, directions, targets, outlines):
        return sketches_step(z, opt, decoder_params, origins, directions, targets, outlines)

    return optimizer, step


def user_batch(config, sketch_path: str, resolution: int) -> SketchBatch:
    """A user's drawing at `resolution`, seen from config.sketch's azimuth and elevation."""
    sk = config.sketch
    sketch = normalize_sketch(load_image(sketch_path), resolution, sk.fill, name=sketch_path)
    camera = camera_lib.Camera(float(sk.azimuth), float(sk.elevation), config.render.distance, config.render.focal,
                               config.render.resolution, config.render.resolution).scaled(resolution)
    name = os.path.splitext(os.path.basename(sketch_path))[0]
    return SketchBatch([name], sketch[None], [camera], [None])


def split_batch(config, resolution: int) -> tuple[SketchBatch, list[dict]]:
    """The dataset sketches (views config.sketch.views) of the shapes config.fit selects, and their records."""
    sk = config.sketch
    obj_ids, examples = reconstruct.load_examples(config)
    if "sketches" not in examples[0]:
        raise errors.DataError(f"{config.data.root}: the dataset has no sketches; run python -m data_gen.preprocess "
                               f"--config.data.root={config.data.root} (its render stage)")
    num_views = len(examples[0]["views"])
    views = list(range(num_views)) if tuple(sk.views) == (-1,) else list(sk.views)
    if not views or max(views) >= num_views or min(views) < 0:
        raise ValueError(f"config.sketch.views={tuple(sk.views)}: the dataset has views 0..{num_views - 1} "
                         "((-1,) for all)")
    if examples[0]["sketches"].shape[-1] != resolution:
        raise ValueError(f"the Siamese encoder was trained on {resolution} px images; {config.data.root} has "
                         f"{examples[0]['sketches'].shape[-1]} px")
    names, sketches, cameras, ids, records = [], [], [], [], []
    for obj_id, example in zip(obj_ids, examples):
        for v in views:
            a, e, d, f = map(float, example["views"][v])
            names.append(f"{obj_id}_v{v:02d}")
            sketches.append(example["sketches"][v])
            cameras.append(camera_lib.Camera(a, e, d, f, resolution, resolution))
            ids.append(obj_id)
            records.append(example)
    return SketchBatch(names, np.stack(sketches), cameras, ids), records


def optimize_batch(step, optimizer, decoder_params, initial: np.ndarray, rays: tuple, iterations: int, bar=None):
    """Runs `iterations` steps from `initial` (B, L); returns (best iterate (B, L), loss curve (T, B)).

    The best iterate is the one with the lowest loss met; `rays` are the step's per-sketch
    arrays (origins, directions, targets, outlines).
    """
    z = jnp.asarray(initial)
    opt = init_states(optimizer, z)
    curve, best_z, best_loss = [], np.array(z), np.full(len(initial), np.inf)
    for _ in range(iterations):
        before = np.asarray(z)
        z, opt, loss, _ = step(decoder_params, z, opt, *rays)
        loss = np.asarray(loss)  # the loss of `before`
        better = loss < best_loss
        best_z[better], best_loss[better] = before[better], loss[better]
        curve.append(loss)
        if bar is not None:
            bar.update()
    return best_z, np.asarray(curve).reshape(iterations, len(initial))


def _padded(a: np.ndarray, size: int) -> np.ndarray:
    """`a` with its last row repeated up to `size` rows (a fixed batch shape compiles once)."""
    return np.concatenate([a, np.repeat(a[-1:], size - len(a), 0)]) if len(a) < size else a


def sketch_to_shape(config, workdir: str, sketch_path: str | None = None, progress: bool = True,
                    out_dir: str | None = None) -> dict:
    """Optimises latents for a user's sketch or for the sketches of `config.fit.split`; see the module docstring.

    Returns {"out_dir", "names", "rows" (split mode), "means" (per method), "losses" (T, B)}.
    """
    sk = config.sketch
    if sk.init not in INITS:
        raise ValueError(f"config.sketch.init={sk.init!r}: expected one of {INITS}")
    trained = trained_lib.load_trained(config, workdir)
    model, enc_params, meta = trained_lib.load_siamese(workdir)
    resolution = int(meta["resolution"])
    if sketch_path is not None:
        batch, records = user_batch(config, sketch_path, resolution), [None]
    else:
        batch, records = split_batch(config, resolution)

    targets = embedder(model, enc_params, "sketch")(batch.sketches)
    outlines = np.stack([filled_outline(s).reshape(-1) for s in batch.sketches])
    # Retrieval among the training shapes: the init and the retrieval baseline.
    retrieved = retrieval.nearest_train_shapes(config, model, enc_params, targets, max(1, sk.retrieval_k))
    row_of = {o: i for i, o in enumerate(trained.obj_ids)}
    if sk.init == "retrieval":
        initial = trained.latents[[[row_of[o] for o in row] for row in retrieved]].mean(axis=1)
    else:
        initial = np.broadcast_to(trained.latents.mean(axis=0), (len(batch.names), trained.latents.shape[1]))
    initial = np.asarray(initial, np.float32)

    settings = tracer.TraceSettings.from_config(config.render)
    sdf_fn = latent_render.decoder_sdf(trained.decoder)
    optimizer, step = make_step(sdf_fn, normal_map_encoder(model, enc_params), settings, resolution, sk)
    size = max(1, sk.batch)
    z_all, curves = [], []
    bar = tqdm(total=-(-len(batch.names) // size) * sk.iterations, desc="sketch2shape", unit="step",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for start in range(0, len(batch.names), size):
            part = slice(start, start + size)
            count = len(batch.names[part])
            origins, directions = camera_lib.stack_rays(batch.cameras[part])
            rays = tuple(jnp.asarray(_padded(np.asarray(a), size))
                         for a in (origins, directions, targets[part], outlines[part]))
            best_z, curve = optimize_batch(step, optimizer, trained.params, _padded(initial[part], size), rays,
                                           sk.iterations, bar)
            z_all.append(best_z[:count])
            curves.append(curve[:, :count])
    finally:
        bar.close()
    z_final = np.concatenate(z_all)
    losses = np.concatenate(curves, axis=1)

    out_dir = io.run_dir(workdir, "sketch2shape", out_dir)
    io.save_npz(io.join(out_dir, "latents.npz"), names=np.asarray(batch.names), latents=z_final,
             initial=initial, loss_curve=losses, retrieved=np.asarray(retrieved),
             obj_ids=np.asarray([o or "" for o in batch.obj_ids]))
    write_pictures(config, out_dir, batch, trained, sdf_fn, settings, initial, z_final)

    folded = fold_decoder(trained.decoder, trained.params)
    summary = {"out_dir": out_dir, "names": batch.names, "losses": losses, "rows": [], "means": {}}
    if sketch_path is not None:
        mesh_config = config.copy_and_resolve_references()
        mesh_config.fit.metrics = False
        scoring.mesh_and_score(mesh_config, folded, z_final[0], {"offset": np.zeros(3), "scale": 1.0},
                               batch.names[0], out_dir)
        return summary
    final = [float(losses[-1, i]) if len(losses) else float("nan") for i in range(len(batch.names))]
    rows = scoring.score_latents(config, folded, z_final, records, batch.names, out_dir, progress,
                                 extra=[{"method": "sketch2shape", "fit_loss": loss} for loss in final])
    if sk.references:
        rows += evaluate.reference_rows(config, workdir, batch.names, batch.obj_ids, records, folded, trained,
                                        retrieved, out_dir, progress)
    summary["means"] = reports.write_metrics_csv(os.path.join(out_dir, "metrics.csv"), rows, group_by="method")
    summary["rows"] = rows
    return summary


def other_views(camera: camera_lib.Camera, resolution: int) -> list[camera_lib.Camera]:
    """Three views around the shape from the sketch's camera: +90, +180 and +270 degrees of azimuth at 20 up."""
    return [dataclasses.replace(camera, azimuth=(camera.azimuth + d) % 360, elevation=20.0).scaled(resolution)
            for d in (90, 180, 270)]


def write_pictures(config, out_dir, batch, trained, sdf_fn, settings, initial, final) -> None:
    """pictures/<name>.png: sketch | start | end (sketch's view) | end from three other views."""
    size = config.render.preview_resolution
    render = jax.jit(lambda z, o, d: jax.vmap(lambda oo, dd: tracer.render(
        sdf_fn, {"decoder": trained.params, "z": z}, oo, dd, settings))(o, d))
    for i, name in enumerate(batch.names):
        cameras = [batch.cameras[i].scaled(size)] + other_views(batch.cameras[i], size)
        origins, directions = camera_lib.stack_rays(cameras)
        images = []
        for z in (initial[i], final[i]):
            out = render(jnp.asarray(z), origins, directions)
            images.append([np.asarray(tracer.normal_image(n, h, size, size)) for n, h in zip(out["normals"],
                                                                                            out["hit"])])
        row = [pictures.upsample(batch.sketches[i], size), images[0][0], images[1][0]] + images[1][1:]
        io.write_png(os.path.join(out_dir, "pictures", f"{name}.png"), pictures.picture_grid([row]))
