"""DeepSDF reconstruction of a split: fit latents to SDF samples, mesh and score (DeepSDF's evaluate.py).

    summary = fit_split(config, workdir)

reads the latest checkpoint of `workdir` (sdfjax.trained), the shapes of
`config.fit.split` (or the `config.fit.obj_ids` among them), fits their latent codes
(sdfjax.fit.sdf_fit; with `config.fit.partial`, from one depth view of the shape:
sdfjax.fit.partial),
and writes `workdir/fit/<timestamp>/`:

    metrics.csv        obj_id, chamfer (x1000, original frame), emd, fscore@0.01, fscore@0.02,
                       normal_consistency, fit_loss; a last `mean_metric` row (Sketch2Shape)
    latents.npz        obj_ids, latents (S, L), fit_loss (S,), restart_losses (S, K)
    meshes/<obj_id>.obj            normalised frame (and meshes_original/ on request)
    fit_loss.png       each shape's fitting loss against the step

Every check on the input (checkpoint, decoder, split, obj_ids, init) runs before the
first fitting step.
"""

from __future__ import annotations

import math
import os
import sys
import zlib

import jax
import numpy as np
import trimesh
from tqdm import tqdm

from sdfjax import errors, storage, trained as trained_lib
from sdfjax.data import layout, tfds_builder
from sdfjax.evaluators import reconstruction, tables
from sdfjax.fit import partial, sdf_fit
from sdfjax.fit.folded import fold_decoder
from sdfjax.fit.optimizer import initial_latents


def select_shapes(config, split: str, obj_ids: str = "") -> tuple[list[int], list[str]]:
    """Record indices and obj_ids of the shapes to fit: all of `split`, or the listed ones."""
    if split not in layout.SPLITS:
        raise ValueError(f"config.fit.split={split!r}: expected one of {layout.SPLITS}")
    ids, _ = tfds_builder.split_index(config, split)
    if not obj_ids:
        count = int(config.fit.get("max_shapes", 0)) or len(ids)  # 0: all
        return list(range(min(count, len(ids)))), ids[:count]
    wanted = [o.strip() for o in obj_ids.split(",") if o.strip()]
    missing = [o for o in wanted if o not in ids]
    if missing:
        raise ValueError(f"config.fit.obj_ids: {', '.join(missing)} not in the preprocessed {split} split of "
                         f"{config.data.root} ({len(ids)} shapes, e.g. {', '.join(ids[:3])})")
    return [ids.index(o) for o in wanted], wanted


def load_examples(config, renders: bool = False) -> tuple[list[str], list[dict]]:
    """(obj_ids, dataset records) of the shapes `config.fit` selects (split and obj_ids); with `renders`, records
    that must hold renders of config.render's views (tfds_builder.check_views)."""
    indices, obj_ids = select_shapes(config, config.fit.split, config.fit.obj_ids)
    source = tfds_builder.data_source(config, config.fit.split, renders=renders)
    return obj_ids, [source[i] for i in indices]


def normalized_mesh_path(config, obj_id: str) -> str:
    """The shape's normalised mesh (what a depth camera sees in completion); DataError when it is missing."""
    path = storage.join(layout.shape_dir(config.data.root, obj_id), layout.NORMALIZED_MESH)
    if not storage.exists(path):
        raise errors.DataError(f"{path}: not found; shape completion (config.fit.partial) ray-casts the normalised "
                               "mesh that python -m data_gen.preprocess writes")
    return path


def depth_view(config, mesh_path: str) -> np.ndarray:
    """SDF observations (N, 5) of one depth view (config.fit.partial_*) of the mesh at `mesh_path`."""
    mesh = trimesh.load(trimesh.util.wrap_as_stream(storage.read_bytes(mesh_path)), file_type="obj", force="mesh",
                        process=False)
    rng = np.random.default_rng([config.seed, zlib.crc32(mesh_path.encode())])
    return partial.depth_observations(mesh.vertices, mesh.faces, partial.partial_camera(config), rng)


def fit_split(config, workdir: str, progress: bool = True, out_dir: str | None = None) -> dict:
    """Fits, meshes and scores the shapes `config.fit` selects; returns a summary.

    Returns {"out_dir", "rows" (one dict per shape), "mean" (the mean_metric row)}.
    """
    fc = config.fit
    trained = trained_lib.load_trained(config, workdir)
    indices, obj_ids = select_shapes(config, fc.split, fc.obj_ids)
    source = tfds_builder.data_source(config, fc.split)
    if fc.init == "prior":
        if fc.split != "train":
            raise ValueError(f"config.fit.init=prior uses each shape's trained latent; split {fc.split!r} has none "
                             "(use mean, random, normal or a row index)")
        row_of = {o: i for i, o in enumerate(trained.obj_ids)}
        prior_rows = [row_of[o] for o in obj_ids]
    else:
        prior_rows = None
    rng = np.random.default_rng(config.seed)
    initial = initial_latents(fc.init, len(obj_ids), fc.restarts, trained.decoder.latent_dim, trained.latents, rng,
                              fc.init_std, prior_rows)
    settings = sdf_fit.FitSettings.from_config(config)
    folded = fold_decoder(trained.decoder, trained.params)
    mesh_paths = [normalized_mesh_path(config, o) for o in obj_ids] if fc.partial else None

    out_dir = storage.run_dir(workdir, "fit", out_dir)
    batch = max(1, fc.shapes_per_batch)
    num_batches = math.ceil(len(obj_ids) / batch)
    bar = tqdm(total=num_batches * settings.num_iterations, desc="fit", unit="step", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    examples, latents, losses, restart_losses, curves = [], [], [], [], []
    try:
        for b in range(num_batches):
            part = slice(b * batch, (b + 1) * batch)
            batch_examples = [source[i] for i in indices[part]]
            samples = [e["sdf_samples"] for e in batch_examples]
            if fc.partial:
                samples = [depth_view(config, path) for path in mesh_paths[part]]
            done = b * settings.num_iterations
            result = sdf_fit.fit_latents(folded, sdf_fit.ShapeSamples.from_list(samples), initial[part], settings,
                                         jax.random.fold_in(jax.random.key(config.seed), b),
                                         progress=lambda i: bar.update(done + i - bar.n))
            latents.append(result.latents)
            losses.append(result.losses)
            restart_losses.append(result.restart_losses)
            curves.append(result.loss_curve)
            examples.extend(batch_examples)
    finally:
        bar.close()
    latents = np.concatenate(latents)
    losses = np.concatenate(losses)
    storage.save_npz(storage.join(out_dir, "latents.npz"), obj_ids=np.asarray(obj_ids), latents=latents, fit_loss=losses,
             restart_losses=np.concatenate(restart_losses), init=fc.init, split=fc.split)
    if settings.num_iterations:
        tables.plot_loss_curves(os.path.join(out_dir, "fit_loss.png"), np.concatenate(curves, axis=1), obj_ids)
    rows = reconstruction.score_latents(config, folded, latents, examples, obj_ids, out_dir, progress,
                                        extra=[{"fit_loss": float(loss)} for loss in losses])
    mean = tables.write_metrics_csv(os.path.join(out_dir, "metrics.csv"), rows)
    return {"out_dir": out_dir, "rows": rows, "mean": mean}
