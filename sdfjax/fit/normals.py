"""Fitting latent codes to ground-truth normal maps through the sphere tracer.

    summary = fit_normals_split(config, workdir)

For each shape, z is optimised (decoder frozen) so that its renders from several views
match the dataset's normal maps:

    L = mean_{pixels hit in both} |n_render - n_gt|_1
        + w_sil * mean_pixels [gt object: relu(min_sdf), gt background: relu(-min_sdf)]
        + reg * mean(z^2)

where min_sdf is the smallest SDF value along the pixel's ray (sdfjax.render.tracer):
positive where the rendered shape misses an object pixel, negative where it covers a
background pixel. One jitted step is vmapped over shapes (own Adam state each) and
renders all views of a shape at once. Writes `workdir/optimize_normals/<timestamp>/`:
metrics.csv, latents.npz, meshes/ (as sdfjax.fit.evaluate) and
pictures/<obj_id>.png: per view, ground truth | first render | final render.
"""

from __future__ import annotations

import datetime
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdfjax import checkpoint
from sdfjax.data import layout, tfds_builder
from sdfjax.fit import evaluate, latent
from sdfjax.render import camera as camera_lib
from sdfjax.render import latent_render, tracer


def gt_normals(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 normal maps (..., H, W, 3) -> unit normals (..., H*W, 3) and object mask (..., H*W)."""
    mask = np.any(images != 255, axis=-1)
    n = images.astype(np.float32) / 255.0 * 2.0 - 1.0
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
    lead = images.shape[:-3]
    return n.reshape(*lead, -1, 3), mask.reshape(*lead, -1)


def silhouette_loss(min_sdf: jax.Array, mask: jax.Array) -> jax.Array:
    """mean over rays of relu(min_sdf) inside the target mask and relu(-min_sdf) outside it."""
    return jnp.mean(jnp.where(mask, jax.nn.relu(min_sdf), jax.nn.relu(-min_sdf)))


def normal_loss(sdf_fn, params, origins, directions, normals, mask, settings, silhouette_weight: float,
                code_reg_weight: float):
    """The loss of the module docstring for one shape: views flattened into rays (R, ...)."""
    out = tracer.render(sdf_fn, params, origins, directions, settings)
    both = out["hit"] & mask
    normal_l1 = jnp.sum(jnp.where(both[:, None], jnp.abs(out["normals"] - normals), 0.0)) / jnp.maximum(
        jnp.sum(both), 1)
    silhouette = silhouette_loss(out["min_sdf"], mask)
    reg = jnp.mean(params["z"] ** 2)
    return normal_l1 + silhouette_weight * silhouette + code_reg_weight * reg, (normal_l1, silhouette)


def make_step(sdf_fn, settings, fit_config):
    optimizer = optax.adam(fit_config.normal_lr)

    def one_shape(decoder_params, z, opt, origins, directions, normals, mask):
        def loss_fn(z):
            return normal_loss(sdf_fn, {"decoder": decoder_params, "z": z}, origins, directions, normals, mask,
                               settings, fit_config.silhouette_weight, fit_config.code_reg_weight)

        (loss, parts), grad = jax.value_and_grad(loss_fn, has_aux=True)(z)
        updates, opt = optimizer.update(grad, opt, z)
        return optax.apply_updates(z, updates), opt, loss

    def step(decoder_params, z, opt, origins, directions, normals, mask):
        return jax.vmap(one_shape, in_axes=(None, 0, 0, None, None, 0, 0))(
            decoder_params, z, opt, origins, directions, normals, mask)

    return optimizer, jax.jit(step)


def fit_normals_split(config, workdir: str, progress: bool = True, out_dir: str | None = None) -> dict:
    """Fits the shapes `config.fit` selects to their normal maps; returns {"out_dir", "rows", "mean", "losses"}."""
    from tqdm import tqdm

    fc = config.fit
    trained = checkpoint.load_trained(config, workdir)
    indices, obj_ids = evaluate.select_shapes(config, fc.split, fc.obj_ids)
    source = tfds_builder.data_source(config, fc.split)
    examples = [source[i] for i in indices]
    if "normal_maps" not in examples[0]:
        raise layout.DataError(f"{config.data.root}: the dataset has no normal maps; run python -m data_gen.preprocess "
                               f"--config.data.root={config.data.root} (its render stage)")
    view_ids = list(fc.normal_views)
    num_views = len(examples[0]["views"])
    if not view_ids or max(view_ids) >= num_views:
        raise ValueError(f"config.fit.normal_views={tuple(view_ids)}: the dataset has views 0..{num_views - 1}")
    resolution = examples[0]["normal_maps"].shape[1]
    cameras = [camera_lib.Camera(*map(float, examples[0]["views"][v]), width=resolution, height=resolution)
               for v in view_ids]
    origins, directions = camera_lib.stack_rays(cameras)
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
    normals, mask = gt_normals(np.stack([e["normal_maps"][view_ids] for e in examples]))
    normals, mask = normals.reshape(len(examples), -1, 3), mask.reshape(len(examples), -1)

    settings = tracer.TraceSettings.from_config(config.render)
    sdf_fn = latent_render.decoder_sdf(trained.decoder)
    rng = np.random.default_rng(config.seed)
    z = jnp.asarray(latent.initial_latents(fc.init, len(obj_ids), 1, trained.decoder.latent_dim, trained.latents,
                                           rng, fc.init_std)[:, 0])
    optimizer, step = make_step(sdf_fn, settings, fc)
    opt = jax.vmap(optimizer.init)(z)
    render_all = jax.jit(jax.vmap(lambda zz: latent_render.render_views(
        sdf_fn, {"decoder": trained.params, "z": zz}, cameras, settings)))
    first = render_all(z)
    losses = []
    for _ in tqdm(range(fc.normal_iterations), desc="optimize normals", unit="step", disable=not progress,
                  file=sys.stderr, dynamic_ncols=True):
        z, opt, loss = step(trained.params, z, opt, origins, directions, jnp.asarray(normals), jnp.asarray(mask))
        losses.append(np.asarray(loss))
    last = render_all(z)

    out_dir = out_dir or os.path.join(workdir, "optimize_normals", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    z = np.asarray(z)
    losses = np.asarray(losses).reshape(-1, len(obj_ids))
    np.savez(os.path.join(out_dir, "latents.npz"), obj_ids=np.asarray(obj_ids), latents=z,
             loss_curve=losses, views=np.asarray(view_ids))
    folded = latent.fold_decoder(trained.decoder, trained.params)
    rows = []
    for i, obj_id in enumerate(obj_ids):
        picture = []
        for v in range(len(view_ids)):
            image = lambda out: np.asarray(tracer.normal_image(  # noqa: E731
                out["normals"][i, v], out["hit"][i, v], resolution, resolution))
            picture.append([examples[i]["normal_maps"][view_ids[v]], image(first), image(last)])
        with layout.atomic_write(os.path.join(out_dir, "pictures", f"{obj_id}.png")) as f:
            f.write(layout.png_bytes(latent_render.picture_grid(picture)))
        loss = float(losses[-1, i]) if len(losses) else float("nan")
        rows.append({"obj_id": obj_id, "fit_loss": loss,
                     **evaluate.mesh_and_score(config, folded, z[i], examples[i], obj_id, out_dir)})
    mean = evaluate.write_metrics_csv(os.path.join(out_dir, "metrics.csv"), rows)
    return {"out_dir": out_dir, "rows": rows, "mean": mean, "losses": losses}
