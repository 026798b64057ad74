"""DeepSDF reconstruction of a split: fit latents to SDF samples, mesh and score (DeepSDF's evaluate.py).

    summary = fit_split(config, workdir)

reads the latest checkpoint of `workdir` (sdfjax.trained), the shapes of
`config.fit.split` (or the `config.fit.obj_ids` among them), fits their latent codes
(sdfjax.fit.sdf_fit; with `config.fit.partial`, from one depth view of the shape:
sdfjax.fit.partial),
and writes `workdir/fit/<timestamp>/`:

    metrics.csv        obj_id, chamfer (x1000, original frame), emd, fscore@0.01, fscore@0.02,
                       normal_consistency, fit_loss; a last `mean_metric` row (Sketch2Shape); in a
                       set of several categories (metainfo.csv), a category column and a
                       mean row per category before the last, overall one (category "all")
    latents.npz        obj_ids, latents (S, L), fit_loss (S,), restart_losses (S, K)
    meshes/<obj_id>.obj            normalised frame (and meshes_original/ on request)
    fit_loss.png       each shape's fitting loss against the step

Every check on the input (checkpoint, decoder, split, obj_ids, init) runs before the
first fitting step.

    summary = fit_scan(config, workdir, scan, frame=None)

fits one latent to a person's own scan (sdfjax.fit.scans: surface points with normals, or
one depth image), outside any dataset, and writes `workdir/fit_scan/<timestamp>/`:

    mesh.obj             the shape in the scan's own frame and units
    mesh_normalized.obj  the same in the model's normalised frame
    latent.npz           latent (L,), fit_loss, the frame (offset, scale) between the two
    metrics.json         observations, fit_loss, the scan's points' distances to the mesh
                         (mean, median, 90th percentile; the scan's units)
"""

from __future__ import annotations

import math
import os
import sys
import zlib
from collections.abc import Sequence

import jax
import numpy as np
import point_cloud_utils as pcu
import trimesh
from tqdm import tqdm

from sdfjax import errors, storage, trained as trained_lib
from sdfjax.data import layout, tfds_builder
from sdfjax.evaluators import reconstruction, tables
from sdfjax.fit import meshing, partial, scans, sdf_fit
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


def category_rows(trained_categories: Sequence[str], categories: Sequence[str]) -> list[list[int]]:
    """For each of `categories`, the rows of the trained latents whose shapes are of it (`trained_categories`, one
    per row; all "" in a set of one category, where every row is of every shape's category). ValueError naming a
    category with no trained shape."""
    trained_categories = np.asarray(trained_categories, dtype=object)
    if not any(trained_categories):  # a model of one category: its mean is the category's
        return [list(range(len(trained_categories)))] * len(categories)
    rows = [np.flatnonzero(trained_categories == c).tolist() for c in categories]
    missing = sorted({c or "(none)" for c, r in zip(categories, rows) if not r})
    if missing:
        raise ValueError(f"fit.init=category_mean: no trained shape of category {', '.join(missing)} "
                         f"(the model's: {', '.join(sorted(set(trained_categories)))})")
    return rows


def start_rows(config, trained, obj_ids: Sequence[str], category: dict[str, str]) -> list[list[int]] | None:
    """Per shape, the trained latent rows whose mean it starts from (optimizer.initial_latents): its own row
    (fit.init=prior, train split only), its category's rows (category_mean; `category`: obj_id -> category,
    layout.shape_categories); None for the other inits."""
    fc = config.fit
    if fc.init == "prior":
        if fc.split != "train":
            raise ValueError(f"config.fit.init=prior uses each shape's trained latent; split {fc.split!r} has none "
                             "(use mean, category_mean, random, normal or a row index)")
        row_of = {o: i for i, o in enumerate(trained.obj_ids)}
        return [[row_of[o]] for o in obj_ids]
    if fc.init == "category_mean":
        return category_rows([category.get(o, "") for o in trained.obj_ids], [category.get(o, "") for o in obj_ids])
    return None


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
    category = layout.shape_categories(config.data.root)
    rng = np.random.default_rng(config.seed)
    initial = initial_latents(fc.init, len(obj_ids), fc.restarts, trained.decoder.latent_dim, trained.latents, rng,
                              fc.init_std, start_rows(config, trained, obj_ids, category))
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
    categorised = any(category.get(o) for o in obj_ids)
    extra = [{**({"category": category.get(o, "")} if categorised else {}), "fit_loss": float(loss)}
             for o, loss in zip(obj_ids, losses)]
    rows = reconstruction.score_latents(config, folded, latents, examples, obj_ids, out_dir, progress, extra=extra)
    path = os.path.join(out_dir, "metrics.csv")
    if not categorised:
        return {"out_dir": out_dir, "rows": rows, "mean": tables.write_metrics_csv(path, rows)}
    means = tables.write_metrics_csv(path, rows, group_by="category", overall=True)
    return {"out_dir": out_dir, "rows": rows, "mean": means.pop("all"), "category_means": means}


def fit_observations(config, folded: dict, start: np.ndarray, observations: np.ndarray,
                     progress: bool = False) -> tuple[np.ndarray, float]:
    """(latent (L,), fit loss) of one scan's observations (scans.observe), fitted from latent `start` (L,) with
    config.fit's settings."""
    settings = sdf_fit.FitSettings.from_config(config)
    bar = tqdm(total=settings.num_iterations, desc="fit scan", unit="step", disable=not progress, file=sys.stderr)
    try:
        result = sdf_fit.fit_latents(folded, sdf_fit.ShapeSamples.from_list([observations]),
                                     np.asarray(start, np.float32)[None, None], settings,
                                     jax.random.key(config.seed), progress=lambda i: bar.update(i - bar.n))
    finally:
        bar.close()
    return np.asarray(result.latents[0], np.float32), float(result.losses[0])


def scan_mesh(config, folded: dict, latent: np.ndarray, frame) -> tuple[trimesh.Trimesh | None, trimesh.Trimesh | None]:
    """(mesh in the scan's frame, mesh in the normalised frame) of a fitted latent; (None, None) when empty."""
    normalized = meshing.mesh_of_latent(config, folded, latent)
    if normalized is None:
        return None, None
    return trimesh.Trimesh(frame.to_original(normalized.vertices), normalized.faces, process=False), normalized


def fit_scan(config, workdir: str, scan, frame=None, out_dir: str | None = None, progress: bool = True) -> dict:
    """Fits the latent of one scan (scans.PointScan or scans.DepthScan) from the trained mean, meshes it, writes
    the files of the module docstring; `frame` (geometry.mesh.Normalization) None: estimated from the scan.

    Returns {"out_dir", "latent", "frame", "mesh" (scan frame, or None), "metrics"}."""
    observations, frame = scans.observe(scan, frame, seed=int(config.seed))  # a bad scan is named before loading
    trained = trained_lib.load_trained(config, workdir)
    folded = fold_decoder(trained.decoder, trained.params)
    latent, fit_loss = fit_observations(config, folded, trained.latents.mean(axis=0), observations, progress)
    mesh, normalized = scan_mesh(config, folded, latent, frame)
    out_dir = storage.run_dir(workdir, "fit_scan", out_dir)
    metrics = {"observations": len(observations), "fit_loss": fit_loss}
    if mesh is not None:
        storage.atomic_export_mesh(storage.join(out_dir, "mesh_normalized.obj"), normalized)
        storage.atomic_export_mesh(storage.join(out_dir, "mesh.obj"), mesh)
        distance, _, _ = pcu.closest_points_on_mesh(scans.scan_points(scan), np.asarray(mesh.vertices, np.float64),
                                                    np.asarray(mesh.faces, np.int64))
        metrics.update(scan_to_mesh_mean=float(np.mean(distance)), scan_to_mesh_median=float(np.median(distance)),
                       scan_to_mesh_p90=float(np.percentile(distance, 90)))
    else:
        metrics["empty_mesh"] = True
    storage.save_npz(storage.join(out_dir, "latent.npz"), latent=latent, fit_loss=fit_loss, offset=frame.offset,
                     scale=frame.scale)
    storage.atomic_write_json(storage.join(out_dir, "metrics.json"), metrics)
    return {"out_dir": out_dir, "latent": latent, "frame": frame, "mesh": mesh, "metrics": metrics}
