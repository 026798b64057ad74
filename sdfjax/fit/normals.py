"""Fitting latent codes to ground-truth normal maps through the sphere tracer.

    summary = fit_normals_split(config, workdir)

For each shape, z is optimised (decoder frozen) so that its renders from several views
match the dataset's normal maps:

    L = mean_{pixels hit in both} |n_render - n_gt|_1
        + w_sil * mean_pixels [gt object: relu(min_sdf), gt background: relu(-min_sdf)]
        + reg * mean(z^2)

where min_sdf is the smallest SDF value along the pixel's ray (sdfjax.render.tracer):
positive where the rendered shape misses an object pixel, negative where it covers a
background pixel (sdfjax.render.silhouette). One jitted step (sdfjax.fit.optimizer) is
vmapped over shapes (own Adam state each) and renders all views of a shape at once.
Writes `workdir/optimize_normals/<timestamp>/`: metrics.csv, latents.npz, meshes/ (as
sdfjax.fit.reconstruct) and pictures/<obj_id>.png: per view, ground truth | first render
| final render.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from sdfjax import errors, storage, trained as trained_lib
from sdfjax.data import layout
from sdfjax.evaluators import reconstruction, tables
from sdfjax.fit import reconstruct
from sdfjax.fit.folded import fold_decoder
from sdfjax.fit.optimizer import init_states, initial_latents, latent_step
from sdfjax.render import camera as camera_lib
from sdfjax.render import latent_render, pictures, tracer
from sdfjax.render.silhouette import silhouette_loss


def gt_normals(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 normal maps (..., H, W, 3) -> unit normals (..., H*W, 3) and object mask (..., H*W)."""
    mask = np.any(images != 255, axis=-1)
    n = images.astype(np.float32) / 255.0 * 2.0 - 1.0
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
    lead = images.shape[:-3]
    return n.reshape(*lead, -1, 3), mask.reshape(*lead, -1)


def normal_loss(sdf_fn, params, rays: dict, target: dict, settings: tracer.TraceSettings, fit_config):
    """The loss of the module docstring for one shape, views flattened into rays: `rays` {"origins",
    "directions"} (R, 3), `target` {"normals" (R, 3), "mask" (R,)}; weights from config.fit."""
    normals, mask = target["normals"], target["mask"]
    silhouette_weight, code_reg_weight = fit_config.silhouette_weight, fit_config.code_reg_weight
    out = tracer.render(sdf_fn, params, rays["origins"], rays["directions"], settings)
    both = out["hit"] & mask
    normal_l1 = jnp.sum(jnp.where(both[:, None], jnp.abs(out["normals"] - normals), 0.0)) / jnp.maximum(
        jnp.sum(both), 1)
    silhouette = silhouette_loss(out["min_sdf"], mask)
    reg = jnp.mean(params["z"] ** 2)
    return normal_l1 + silhouette_weight * silhouette + code_reg_weight * reg, (normal_l1, silhouette)


def make_step(sdf_fn, settings, fit_config):
    """(optimizer, step); step(decoder_params, z (S, L), opt, origins (R, 3), directions, normals (S, R, 3),
    mask (S, R)) -> (z, opt, loss (S,)), jitted; the rays are shared by all shapes."""
    optimizer = optax.adam(fit_config.normal_lr)

    def loss_fn(z, decoder_params, rays, target):
        return normal_loss(sdf_fn, {"decoder": decoder_params, "z": z}, rays, target, settings, fit_config)

    shapes_step = latent_step(loss_fn, optimizer, in_axes=(None, None, 0))

    @jax.jit
    def step(decoder_params, z, opt, origins, directions, normals, mask):
        targets = {"normals": normals, "mask": mask}
        z, opt, loss, _ = shapes_step(z, opt, decoder_params, {"origins": origins, "directions": directions},
                                      targets)
        return z, opt, loss

    return optimizer, step


def fit_normals_split(config, workdir: str, progress: bool = True, out_dir: str | None = None) -> dict:
    """Fits the shapes `config.fit` selects to their normal maps; returns {"out_dir", "rows", "mean", "losses"}."""
    fc = config.fit
    trained = trained_lib.load_trained(config, workdir)
    obj_ids, examples = reconstruct.load_examples(config, renders=True)
    if "normal_maps" not in examples[0]:
        raise errors.DataError(f"{config.data.root}: the dataset has no normal maps; run python -m "
                               f"data_gen.preprocess --config.data.root={config.data.root} (its render stage)")
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
    rows = reconstruct.start_rows(config, trained, obj_ids, layout.shape_categories(config.data.root))
    z = jnp.asarray(initial_latents(fc.init, len(obj_ids), 1, trained.decoder.latent_dim, trained.latents, rng,
                                    fc.init_std, rows)[:, 0])
    optimizer, step = make_step(sdf_fn, settings, fc)
    opt = init_states(optimizer, z)
    render_all = jax.jit(jax.vmap(lambda zz: latent_render.render_views(
        sdf_fn, {"decoder": trained.params, "z": zz}, cameras, settings)))
    first = render_all(z)
    losses = []
    for _ in tqdm(range(fc.normal_iterations), desc="optimize normals", unit="step", disable=not progress,
                  file=sys.stderr, dynamic_ncols=True):
        z, opt, loss = step(trained.params, z, opt, origins, directions, jnp.asarray(normals), jnp.asarray(mask))
        losses.append(np.asarray(loss))
    last = render_all(z)

    out_dir = storage.run_dir(workdir, "optimize_normals", out_dir)
    z = np.asarray(z)
    losses = np.asarray(losses).reshape(-1, len(obj_ids))
    storage.save_npz(storage.join(out_dir, "latents.npz"), obj_ids=np.asarray(obj_ids), latents=z,
             loss_curve=losses, views=np.asarray(view_ids))
    for i, obj_id in enumerate(obj_ids):
        picture = []
        for v in range(len(view_ids)):
            image = lambda out: np.asarray(tracer.normal_image(  # noqa: E731
                out["normals"][i, v], out["hit"][i, v], resolution, resolution))
            picture.append([examples[i]["normal_maps"][view_ids[v]], image(first), image(last)])
        storage.write_png(os.path.join(out_dir, "pictures", f"{obj_id}.png"), pictures.picture_grid(picture))
    final = [float(losses[-1, i]) if len(losses) else float("nan") for i in range(len(obj_ids))]
    rows = reconstruction.score_latents(config, fold_decoder(trained.decoder, trained.params), z, examples, obj_ids,
                                        out_dir, progress, extra=[{"fit_loss": loss} for loss in final])
    mean = tables.write_metrics_csv(os.path.join(out_dir, "metrics.csv"), rows)
    return {"out_dir": out_dir, "rows": rows, "mean": mean, "losses": losses}
