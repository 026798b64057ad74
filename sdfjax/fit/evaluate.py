"""Fit a split's shapes with a trained decoder, extract meshes, score them (DeepSDF evaluate.py).

    summary = fit_split(config, workdir)

reads the latest checkpoint of `workdir`, the shapes of `config.fit.split` (or the
`config.fit.obj_ids` among them), fits their latent codes (sdfjax.fit.latent), and
writes `workdir/fit/<timestamp>/`:

    metrics.csv        obj_id, chamfer (x1000, original frame), emd, fscore@0.01, fscore@0.02,
                       normal_consistency, fit_loss; a last `mean_metric` row (Sketch2Shape)
    latents.npz        obj_ids, latents (S, L), fit_loss (S,), restart_losses (S, K)
    meshes/<obj_id>.obj            normalised frame (and meshes_original/ on request)
    fit_loss.png       each shape's fitting loss against the step

Every check on the input (checkpoint, decoder, split, obj_ids, init) runs before the
first fitting step.
"""

from __future__ import annotations

import csv
import datetime
import functools
import math
import os
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from sdfjax import checkpoint
from sdfjax.data import layout, tfds_builder
from sdfjax.fit import latent, partial
from sdfjax.geometry import isosurface, metrics
from sdfjax.geometry import mesh as mesh_lib
from sdfjax.render import camera as camera_lib

CSV_COLUMNS = ("obj_id",) + metrics.METRIC_NAMES + ("fit_loss",)


def select_shapes(config, split: str, obj_ids: str = "") -> tuple[list[int], list[str]]:
    """Record indices and obj_ids of the shapes to fit: all of `split`, or the listed ones."""
    if split not in layout.SPLITS:
        raise ValueError(f"config.fit.split={split!r}: expected one of {layout.SPLITS}")
    ids, _ = tfds_builder.split_index(config, split)
    if not obj_ids:
        return list(range(len(ids))), ids
    wanted = [o.strip() for o in obj_ids.split(",") if o.strip()]
    missing = [o for o in wanted if o not in ids]
    if missing:
        raise ValueError(f"config.fit.obj_ids: {', '.join(missing)} not in the preprocessed {split} split of "
                         f"{config.data.root} ({len(ids)} shapes, e.g. {', '.join(ids[:3])})")
    return [ids.index(o) for o in wanted], wanted


def decoder_sdf_fn(folded: dict, z: np.ndarray, chunk: int, fourier_frequencies: int = 0):
    """(n, 3) numpy points -> (n,) numpy SDF of latent z under the folded decoder, in fixed-size chunks."""
    fn = _folded_sdf_jit(fourier_frequencies)
    z = jnp.asarray(z, jnp.float32)
    return isosurface.chunked(lambda points: fn(folded, z, points), chunk)


@functools.lru_cache(maxsize=None)
def _folded_sdf_jit(fourier_frequencies: int):
    """One jitted f(folded, z, points) per feature setting, shared by every shape and mesh."""
    return jax.jit(lambda f, z, x: latent.folded_sdf(f, latent.latent_biases(f, z[None]), x[None],
                                                     fourier_frequencies)[0])


def extract_mesh(sdf_fn, mesh_config):
    """(mesh or None, decoder queries) of the zero level set at `mesh_config.resolution`."""
    n = mesh_config.resolution
    if mesh_config.coarse_to_fine:
        values, queries = isosurface.sdf_grid_coarse_to_fine(sdf_fn, n, lipschitz=mesh_config.lipschitz,
                                                            chunk=mesh_config.chunk)
    else:
        values, queries = isosurface.sdf_grid_dense(sdf_fn, n, chunk=mesh_config.chunk), n**3
    return isosurface.marching_cubes(values), queries


def write_metrics_csv(path: str, rows: list[dict], group_by: str | None = None):
    """Writes rows plus `mean_metric` rows (NaN-aware means); returns the mean row.

    With `group_by` (a column such as "method"), there is one mean row per value of that
    column and the return value is {value: mean row}. Columns beyond the metrics that the
    rows carry (e.g. "method", "retrieved") are written after obj_id.
    """
    groups = {None: rows} if group_by is None else {}
    if group_by is not None:
        for r in rows:
            groups.setdefault(r[group_by], []).append(r)
    means = {}
    for key, members in groups.items():
        mean = {"obj_id": "mean_metric", **({group_by: key} if group_by else {})}
        for name in CSV_COLUMNS[1:]:
            values = np.asarray([r.get(name, np.nan) for r in members], np.float64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: NaN mean
                mean[name] = float(np.nanmean(values)) if len(values) else float("nan")
        means[key] = mean
    extra = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in CSV_COLUMNS]
    columns = CSV_COLUMNS[:1] + tuple(extra) + CSV_COLUMNS[1:]
    with layout.atomic_write(path, "w") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows + list(means.values()):
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return means[None] if group_by is None else means


def format_table(rows: list[dict]) -> str:
    """The metrics as an aligned text table (what the launcher prints)."""
    header = ["obj_id", "chamfer", "emd", "F@0.01", "F@0.02", "NC"]
    keys = ["obj_id", "chamfer", "emd", "fscore@0.01", "fscore@0.02", "normal_consistency"]
    cells = [header] + [[str(r["obj_id"])] + [f"{r[k]:.4f}" for k in keys[1:]] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in cells)


def plot_loss_curves(path: str, curves: np.ndarray, obj_ids: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, obj_id in enumerate(obj_ids):
        ax.plot(curves[:, i], lw=0.8, label=obj_id if len(obj_ids) <= 8 else None)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("fitting loss")
    if len(obj_ids) <= 8:
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def mesh_and_score(config, folded: dict, z: np.ndarray, example: dict, obj_id: str, out_dir: str) -> dict:
    """Extracts the mesh of latent z, writes it (config.fit.save_mesh) and scores it (config.fit.metrics).

    `example` is the shape's dataset record (surface samples and normalisation).
    """
    fc = config.fit
    row = metrics.nan_metrics()
    if not (fc.save_mesh or fc.metrics):
        return row
    sdf_fn = decoder_sdf_fn(folded, z, config.mesh.chunk, config.model.get("fourier_frequencies", 0))
    mesh, _ = extract_mesh(sdf_fn, config.mesh)
    normalization = mesh_lib.Normalization(np.asarray(example["offset"], np.float64), float(example["scale"]))
    if fc.save_mesh and mesh is not None:
        layout.atomic_export_mesh(os.path.join(out_dir, "meshes", f"{obj_id}.obj"), mesh)
        if config.mesh.original_frame:
            layout.atomic_export_mesh(os.path.join(out_dir, "meshes_original", f"{obj_id}.obj"),
                                      isosurface.to_original_frame(mesh, normalization))
    if fc.metrics:
        surface = example["surface_samples"]
        row.update(metrics.evaluate_mesh(mesh, surface[:, :3], surface[:, 3:], normalization, name=obj_id,
                                         seed=config.seed, emd_points=fc.emd_points))
    return row


def fit_split(config, workdir: str, progress: bool = True, out_dir: str | None = None) -> dict:
    """Fits, meshes and scores the shapes `config.fit` selects; returns a summary.

    Returns {"out_dir", "rows" (one dict per shape), "mean" (the mean_metric row)}.
    """
    from tqdm import tqdm

    fc = config.fit
    trained = checkpoint.load_trained(config, workdir)
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
    initial = latent.initial_latents(fc.init, len(obj_ids), fc.restarts, trained.decoder.latent_dim,
                                     trained.latents, rng, fc.init_std, prior_rows)
    settings = latent.FitSettings.from_config(config)
    folded = latent.fold_decoder(trained.decoder, trained.params)

    out_dir = out_dir or os.path.join(workdir, "fit", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    direction = camera_lib.direction_from_angles(fc.partial_azimuth, fc.partial_elevation)
    batch = max(1, fc.shapes_per_batch)
    num_batches = math.ceil(len(obj_ids) / batch)
    bar = tqdm(total=num_batches * settings.num_iterations, desc="fit", unit="step", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    records, latents, losses, restart_losses, curves = [], [], [], [], []
    try:
        for b in range(num_batches):
            part = slice(b * batch, (b + 1) * batch)
            examples = [source[i] for i in indices[part]]
            samples = [e["sdf_samples"] for e in examples]
            if fc.partial:
                samples = [partial.partial_observation(s, e["surface_samples"], direction)
                           for s, e in zip(samples, examples)]
            done = b * settings.num_iterations
            result = latent.fit_latents(folded, latent.ShapeSamples.from_list(samples), initial[part], settings,
                                        jax.random.fold_in(jax.random.key(config.seed), b),
                                        progress=lambda i: bar.update(done + i - bar.n))
            latents.append(result.latents)
            losses.append(result.losses)
            restart_losses.append(result.restart_losses)
            curves.append(result.loss_curve)
            records.extend(zip(obj_ids[part], examples))
    finally:
        bar.close()
    latents = np.concatenate(latents)
    losses = np.concatenate(losses)
    np.savez(os.path.join(out_dir, "latents.npz"), obj_ids=np.asarray(obj_ids), latents=latents, fit_loss=losses,
             restart_losses=np.concatenate(restart_losses), init=fc.init, split=fc.split)
    if settings.num_iterations:
        plot_loss_curves(os.path.join(out_dir, "fit_loss.png"), np.concatenate(curves, axis=1), obj_ids)

    rows = []
    shape_bar = tqdm(records, desc="mesh+metrics", unit="shape", disable=not progress, file=sys.stderr,
                     dynamic_ncols=True)
    for i, (obj_id, example) in enumerate(shape_bar):
        rows.append({"obj_id": obj_id, "fit_loss": float(losses[i]),
                     **mesh_and_score(config, folded, latents[i], example, obj_id, out_dir)})
    mean = write_metrics_csv(os.path.join(out_dir, "metrics.csv"), rows)
    return {"out_dir": out_dir, "rows": rows, "mean": mean}
