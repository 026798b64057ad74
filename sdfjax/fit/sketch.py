"""Sketch to shape (Sketch2Shape): a DeepSDF latent optimised until its render matches a sketch.

    summary = sketch_to_shape(config, workdir, sketch_path="chair.png")   # a user's drawing
    summary = sketch_to_shape(config, workdir)                            # config.fit.split's sketches

For a sketch S seen from camera C, the latent z (decoder and encoder frozen) minimises

    L(z) = w_e * || E_sketch(S) - E_normal(N(z, C)) ||_2
           + w_s * mean_pixels [in outline(S): relu(min_sdf), outside: relu(-min_sdf)]
           + w_r * mean(z^2)

where N(z, C) is the normal map the sphere tracer renders (differentiable through the
IDR hit point and the autodiff normals), E the Siamese encoder's towers, min_sdf the
smallest SDF along each pixel's ray and outline(S) the sketch's filled outline. z starts
at the mean trained latent, or at the mean of the trained latents of the `retrieval_k`
training shapes the encoder retrieves for S. Many sketches are optimised at once: one
jitted step is vmapped over sketches, each with its own camera and Adam state. The
loss is not smooth (pixels enter and leave the silhouette), so each sketch keeps the
iterate with the lowest loss met, not the last one.

A user's PNG of any size is normalised first (`normalize_sketch`): grey or colour,
with or without alpha, dark lines on light or light on dark, cropped to the drawing,
centred and scaled so its longer side spans `config.sketch.fill` of the image, and its
lines thinned to one pixel like the dataset's sketches.

Writes `<workdir>/sketch2shape/<timestamp>/`: meshes/<name>.obj, latents.npz,
pictures/<name>.png (sketch | render from the sketch's view at the start | at the end
| three other views), and in split mode metrics.csv: per sketch, the metrics of
sketch-to-shape, of retrieval alone (the decoder's mesh of the nearest training shape's
latent) and of SDF fitting of the true shape (DeepSDF reconstruction, the upper bound),
with a mean row per method.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.ndimage

from sdfjax import checkpoint
from sdfjax.data import layout, tfds_builder
from sdfjax.fit import evaluate, latent, normals, retrieval
from sdfjax.models import siamese as siamese_lib
from sdfjax.render import camera as camera_lib
from sdfjax.render import latent_render, tracer

INITS = ("retrieval", "mean")
METHODS = ("sketch2shape", "retrieval", "sdf_fit")


# --- user sketches ----------------------------------------------------------------------------

def load_image(path: str) -> np.ndarray:
    """Any image file as float greyscale (H, W) in [0, 1], transparency composited on white.

    Raises layout.DataError naming the file when it is missing or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise layout.DataError(f"{path}: no such sketch file")
    try:
        with Image.open(path) as im:
            im.load()
            rgba = im.convert("RGBA")
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise layout.DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    grey = Image.alpha_composite(background, rgba).convert("L")
    return np.asarray(grey, np.float32) / 255.0


def normalize_sketch(grey: np.ndarray, resolution: int, fill: float = 0.8, name: str = "sketch") -> np.ndarray:
    """A drawing (H, W) in [0, 1] -> a dataset-like sketch (resolution, resolution) uint8, black lines on white.

    The background level is the image's median; lines are what differs from it by more
    than half the largest difference. Raises layout.DataError when nothing does (blank).
    """
    from PIL import Image
    from skimage import measure, morphology

    grey = np.asarray(grey, np.float32)
    if grey.ndim != 2 or min(grey.shape) < 2:
        raise layout.DataError(f"{name}: expected a 2-D image, got shape {grey.shape}")
    ink = np.abs(grey - np.median(grey))  # either polarity: lines differ from the background
    contrast = float(ink.max())
    if contrast < 0.1:
        raise layout.DataError(f"{name}: the image is blank (contrast {contrast:.3f}); draw dark lines on light "
                               "or light lines on dark")
    lines = ink > 0.5 * contrast
    if lines.mean() > 1 / 3:  # a photo or a filled picture, not lines
        raise layout.DataError(f"{name}: {lines.mean():.0%} of the image is lines; expected a line drawing")
    rows, cols = np.nonzero(lines)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = int(np.ceil(max(bottom - top, right - left) / fill))
    square = np.zeros((side, side), np.float32)
    oy, ox = (side - (bottom - top)) // 2, (side - (right - left)) // 2
    square[oy:oy + bottom - top, ox:ox + right - left] = ink[top:bottom, left:right] / contrast
    factor = max(1, side // resolution)  # max-pool after resizing keeps thin lines when shrinking a lot
    resized = np.asarray(Image.fromarray(square).resize((resolution * factor,) * 2, Image.Resampling.BILINEAR))
    pooled = measure.block_reduce(resized, (factor, factor), np.max)
    thin = morphology.skeletonize(pooled > 0.3)
    return np.where(thin, 0, 255).astype(np.uint8)


def filled_outline(sketch: np.ndarray) -> np.ndarray:
    """(H, W) bool: the region a black-on-white sketch encloses (its lines closed by one pixel, then filled)."""
    lines = np.asarray(sketch) < 128
    closed = scipy.ndimage.binary_closing(lines, structure=np.ones((3, 3)), iterations=1) | lines
    return scipy.ndimage.binary_fill_holes(closed)


# --- the optimisation ----------------------------------------------------------------------------

@dataclasses.dataclass
class SketchBatch:
    """Sketches to optimise, with the view each was drawn from."""

    names: list[str]
    sketches: np.ndarray  # (B, R, R) uint8
    cameras: list[camera_lib.Camera]  # (B,) at resolution R
    obj_ids: list[str | None]  # ground-truth shape (split mode) or None


def sketch_loss(sdf_fn, decoder_params, z, encoder, target_embedding, origins, directions, outline, settings,
                resolution: int, sketch_config):
    """(loss, (embedding distance, silhouette)) of the module docstring for one sketch."""
    out = tracer.render(sdf_fn, {"decoder": decoder_params, "z": z}, origins, directions, settings)
    image = tracer.normal_image(out["normals"], out["hit"], resolution, resolution)
    rendered = encoder(image[None])[0]
    embedding = jnp.sqrt(jnp.sum((rendered - target_embedding) ** 2) + 1e-12)
    silhouette = normals.silhouette_loss(out["min_sdf"], outline)
    loss = (sketch_config.embedding_weight * embedding + sketch_config.silhouette_weight * silhouette
            + sketch_config.code_reg_weight * jnp.mean(z**2))
    return loss, (embedding, silhouette)


def make_step(sdf_fn, encoder, settings, resolution: int, sketch_config):
    """step(decoder_params, z (B, L), opt, origins (B, R*R, 3), directions, targets (B, D), outlines (B, R*R))."""
    optimizer = optax.adam(sketch_config.lr)

    def one_sketch(decoder_params, z, opt, origins, directions, target, outline):
        (loss, parts), grad = jax.value_and_grad(
            lambda zz: sketch_loss(sdf_fn, decoder_params, zz, encoder, target, origins, directions, outline,
                                   settings, resolution, sketch_config), has_aux=True)(z)
        updates, opt = optimizer.update(grad, opt, z)
        return optax.apply_updates(z, updates), opt, loss, parts

    def step(decoder_params, z, opt, origins, directions, targets, outlines):
        return jax.vmap(one_sketch, in_axes=(None, 0, 0, 0, 0, 0, 0))(
            decoder_params, z, opt, origins, directions, targets, outlines)

    return optimizer, jax.jit(step)


def _user_batch(config, sketch_path: str, resolution: int) -> SketchBatch:
    sk = config.sketch
    sketch = normalize_sketch(load_image(sketch_path), resolution, sk.fill, name=sketch_path)
    camera = camera_lib.Camera(float(sk.azimuth), float(sk.elevation), config.render.distance, config.render.focal,
                               config.render.resolution, config.render.resolution).scaled(resolution)
    name = os.path.splitext(os.path.basename(sketch_path))[0]
    return SketchBatch([name], sketch[None], [camera], [None])


def _split_batch(config, resolution: int) -> tuple[SketchBatch, list[dict]]:
    fc, sk = config.fit, config.sketch
    indices, obj_ids = evaluate.select_shapes(config, fc.split, fc.obj_ids)
    source = tfds_builder.data_source(config, fc.split)
    examples = [source[i] for i in indices]
    if "sketches" not in examples[0]:
        raise layout.DataError(f"{config.data.root}: the dataset has no sketches; run python -m data_gen.preprocess "
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


def _other_views(camera: camera_lib.Camera, resolution: int) -> list[camera_lib.Camera]:
    """Three views around the shape from the sketch's camera: +90, +180 and +270 degrees of azimuth at 20 up."""
    return [dataclasses.replace(camera, azimuth=(camera.azimuth + d) % 360, elevation=20.0).scaled(resolution)
            for d in (90, 180, 270)]


def _upsample(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(latent_render.to_uint8(image)).resize((size, size), Image.Resampling.NEAREST))


def sketch_to_shape(config, workdir: str, sketch_path: str | None = None, progress: bool = True,
                    out_dir: str | None = None) -> dict:
    """Optimises latents for a user's sketch or for the sketches of `config.fit.split`; see the module docstring.

    Returns {"out_dir", "names", "rows" (split mode), "means" (per method), "losses" (T, B)}.
    """
    from tqdm import tqdm

    from sdfjax.train import siamese as siamese_train

    sk = config.sketch
    if sk.init not in INITS:
        raise ValueError(f"config.sketch.init={sk.init!r}: expected one of {INITS}")
    trained = checkpoint.load_trained(config, workdir)
    model, enc_params, meta = siamese_train.load_siamese(workdir)
    resolution = int(meta["resolution"])
    if sketch_path is not None:
        batch, records = _user_batch(config, sketch_path, resolution), [None]
    else:
        batch, records = _split_batch(config, resolution)

    embed_sketch = retrieval.embedder(model, enc_params, "sketch")
    targets = embed_sketch(batch.sketches)
    outlines = np.stack([filled_outline(s).reshape(-1) for s in batch.sketches])
    # Retrieval among the training shapes (all their views): the init and the retrieval reference.
    train_ids, _, train_normals, _ = retrieval.read_images(config, ["train"])
    index = retrieval.make_index(retrieval.embedder(model, enc_params, "normal"), train_ids, train_normals)
    top = retrieval.top_shapes(index.shape_ids[retrieval.rank(targets, index.embeddings)], max(1, sk.retrieval_k))
    row_of = {o: i for i, o in enumerate(trained.obj_ids)}
    top_latents = trained.latents[[[row_of[train_ids[s]] for s in q] for q in top]]  # (B, k, L)
    initial = top_latents.mean(axis=1) if sk.init == "retrieval" else \
        np.broadcast_to(trained.latents.mean(axis=0), (len(batch.names), trained.latents.shape[1]))
    initial = np.asarray(initial, np.float32)

    settings = tracer.TraceSettings.from_config(config.render)
    sdf_fn = latent_render.decoder_sdf(trained.decoder)
    encoder = lambda images: model.apply(enc_params, siamese_lib.normal_input(images), "normal")  # noqa: E731
    optimizer, step = make_step(sdf_fn, encoder, settings, resolution, sk)
    size = max(1, sk.batch)
    z_all, curves = [], []
    bar = tqdm(total=-(-len(batch.names) // size) * sk.iterations, desc="sketch2shape", unit="step",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for start in range(0, len(batch.names), size):
            part = slice(start, start + size)
            count = len(batch.names[part])
            pad = lambda a: np.concatenate([a, np.repeat(a[-1:], size - count, 0)]) if count < size else a  # noqa: E731
            origins, directions = camera_lib.stack_rays(batch.cameras[part])
            origins, directions = pad(np.asarray(origins)), pad(np.asarray(directions))
            z = jnp.asarray(pad(initial[part]))
            opt = jax.vmap(optimizer.init)(z)
            args = tuple(jnp.asarray(a) for a in (origins, directions, pad(targets[part]), pad(outlines[part])))
            curve, best_z, best_loss = [], np.array(z), np.full(size, np.inf)
            for _ in range(sk.iterations):
                before = np.asarray(z)
                z, opt, loss, _ = step(trained.params, z, opt, *args)
                loss = np.asarray(loss)  # the loss of `before`
                better = loss < best_loss
                best_z[better], best_loss[better] = before[better], loss[better]
                curve.append(loss[:count])
                bar.update()
            z_all.append(best_z[:count])
            curves.append(np.asarray(curve).reshape(sk.iterations, count))
    finally:
        bar.close()
    z_final = np.concatenate(z_all)
    losses = np.concatenate(curves, axis=1)

    out_dir = out_dir or os.path.join(workdir, "sketch2shape", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    np.savez(os.path.join(out_dir, "latents.npz"), names=np.asarray(batch.names), latents=z_final,
             initial=initial, loss_curve=losses,
             retrieved=np.asarray([[train_ids[s] for s in q] for q in top]),
             obj_ids=np.asarray([o or "" for o in batch.obj_ids]))
    _write_pictures(config, out_dir, batch, trained, sdf_fn, settings, initial, z_final)

    folded = latent.fold_decoder(trained.decoder, trained.params)
    summary = {"out_dir": out_dir, "names": batch.names, "losses": losses, "rows": [], "means": {}}
    if sketch_path is not None:
        mesh_config = config.copy_and_resolve_references()
        mesh_config.fit.metrics = False
        evaluate.mesh_and_score(mesh_config, folded, z_final[0], {"offset": np.zeros(3), "scale": 1.0},
                                batch.names[0], out_dir)
        return summary
    rows = []
    for i, (name, obj_id, example) in enumerate(zip(batch.names, batch.obj_ids, records)):
        scored = evaluate.mesh_and_score(config, folded, z_final[i], example, name, out_dir)
        final_loss = float(losses[-1, i]) if len(losses) else float("nan")
        rows.append({"obj_id": name, "method": "sketch2shape", "fit_loss": final_loss, **scored})
    if sk.references:
        rows += _reference_rows(config, workdir, batch, records, folded, trained, top, train_ids, out_dir, progress)
    summary["means"] = evaluate.write_metrics_csv(os.path.join(out_dir, "metrics.csv"), rows, group_by="method")
    summary["rows"] = rows
    return summary


def _reference_rows(config, workdir, batch, records, folded, trained, top, train_ids, out_dir, progress) -> list[dict]:
    """Retrieval alone (nearest training shape's latent) and SDF fitting of the true shapes, per sketch."""
    row_of = {o: i for i, o in enumerate(trained.obj_ids)}
    no_mesh = config.copy_and_resolve_references()
    no_mesh.fit.save_mesh = False
    rows, scored_by_shape = [], {}
    for i, (name, obj_id, example) in enumerate(zip(batch.names, batch.obj_ids, records)):
        nearest = train_ids[top[i, 0]]
        key = (obj_id, nearest)
        if key not in scored_by_shape:
            scored_by_shape[key] = evaluate.mesh_and_score(no_mesh, folded, trained.latents[row_of[nearest]], example,
                                                           nearest, out_dir)
        rows.append({"obj_id": name, "method": "retrieval", "retrieved": nearest, **scored_by_shape[key]})
    fit_config = config.copy_and_resolve_references()
    fit_config.fit.obj_ids = ",".join(sorted(set(batch.obj_ids)))
    fit_config.fit.save_mesh = False
    fitted = evaluate.fit_split(fit_config, workdir, progress=progress, out_dir=os.path.join(out_dir, "sdf_fit"))
    by_obj = {r["obj_id"]: r for r in fitted["rows"]}
    for name, obj_id in zip(batch.names, batch.obj_ids):
        rows.append({**by_obj[obj_id], "obj_id": name, "method": "sdf_fit"})
    return rows


def _write_pictures(config, out_dir, batch, trained, sdf_fn, settings, initial, final) -> None:
    """pictures/<name>.png: sketch | start | end (sketch's view) | end from three other views."""
    size = config.render.preview_resolution
    render = jax.jit(lambda z, o, d: jax.vmap(lambda oo, dd: tracer.render(
        sdf_fn, {"decoder": trained.params, "z": z}, oo, dd, settings))(o, d))
    for i, name in enumerate(batch.names):
        cameras = [batch.cameras[i].scaled(size)] + _other_views(batch.cameras[i], size)
        origins, directions = camera_lib.stack_rays(cameras)
        images = []
        for z in (initial[i], final[i]):
            out = render(jnp.asarray(z), origins, directions)
            images.append([np.asarray(tracer.normal_image(n, h, size, size)) for n, h in zip(out["normals"],
                                                                                            out["hit"])])
        row = [_upsample(batch.sketches[i], size), images[0][0], images[1][0]] + images[1][1:]
        with layout.atomic_write(os.path.join(out_dir, "pictures", f"{name}.png")) as f:
            f.write(layout.png_bytes(latent_render.picture_grid([row])))
