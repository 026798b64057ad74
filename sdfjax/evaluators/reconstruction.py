"""Reconstruction: the mesh of each latent scored against its true shape.

    row = mesh_and_score(config, folded, z, example, obj_id, out_dir)
    rows = score_latents(config, folded, latents, examples, names, out_dir)

Metrics follow DeepSDF (Chamfer x1000 in the original frame) and Sketch2Shape (EMD,
F-score, normal consistency); see sdfjax.geometry.metrics. Every table of reconstructed
shapes (SDF fitting, normal-map fitting, sketch to shape) is made of these rows.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from sdfjax import storage
from sdfjax import trained as trained_lib
from sdfjax.data import layout, tfds_builder
from sdfjax.fit.meshing import mesh_of_latent
from sdfjax.geometry import isosurface, metrics
from sdfjax.geometry import mesh as mesh_lib
from sdfjax.render import camera as camera_lib
from sdfjax.render import latent_render, mesh_caster, pictures, tracer


def mesh_and_score(config, folded: dict, z: np.ndarray, example: dict, obj_id: str, out_dir: str) -> dict:
    """Extracts the mesh of latent z, writes it (config.fit.save_mesh) and scores it (config.fit.metrics).

    `example` is the shape's dataset record (surface samples and normalisation); the mesh
    goes to `out_dir/meshes/<obj_id>.obj` (and meshes_original/ with config.mesh.original_frame).
    """
    fc = config.fit
    row = metrics.nan_metrics()
    if not (fc.save_mesh or fc.metrics):
        return row
    mesh = mesh_of_latent(config, folded, z)
    normalization = mesh_lib.Normalization(np.asarray(example["offset"], np.float64), float(example["scale"]))
    if fc.save_mesh and mesh is not None:
        storage.atomic_export_mesh(os.path.join(out_dir, "meshes", f"{obj_id}.obj"), mesh)
        if config.mesh.original_frame:
            storage.atomic_export_mesh(os.path.join(out_dir, "meshes_original", f"{obj_id}.obj"),
                                  isosurface.to_original_frame(mesh, normalization))
    if fc.metrics:
        surface = example["surface_samples"]
        row.update(metrics.evaluate_mesh(mesh, surface[:, :3], surface[:, 3:], normalization, name=obj_id,
                                         seed=config.seed, emd_points=fc.emd_points))
    return row


def score_latents(config, folded: dict, latents: np.ndarray, examples: Sequence[dict], names: Sequence[str],
                  out_dir: str, progress: bool = True, extra: Sequence[dict] | None = None) -> list[dict]:
    """One metrics row per latent: {"obj_id": name, **extra[i], **mesh_and_score(...)}, with a progress bar."""
    rows = []
    bar = tqdm(range(len(names)), desc="mesh+metrics", unit="shape", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    for i in bar:
        rows.append({"obj_id": names[i], **(extra[i] if extra else {}),
                     **mesh_and_score(config, folded, latents[i], examples[i], names[i], out_dir)})
    return rows


# The view of a reconstruction picture of a dataset preprocessed without its views (DeepSDF alone): three-quarter
# front, from above.
PICTURE_VIEW = (30.0, 20.0)


def reconstruction_picture(config, workdir: str, fit_dir: str, count: int) -> np.ndarray | None:
    """Rows of: a test shape's ground-truth normal map | the render of its latent fitted in `fit_dir` (a `fit`
    run's folder), at each of config.results.test_views (a dataset without renders: its normalised mesh ray cast
    from PICTURE_VIEW); None when the fit wrote no latents."""
    if not storage.exists(storage.join(fit_dir, "latents.npz")):
        return None
    saved = storage.load_npz(storage.join(fit_dir, "latents.npz"))
    trained = trained_lib.load_trained(config, workdir)
    rendered = tfds_builder.has_renders(config)
    source = tfds_builder.data_source(config, "test", renders=rendered)
    ids, _ = tfds_builder.split_index(config, "test")
    settings = tracer.TraceSettings.from_config(config.render)
    render = latent_render.views_renderer(latent_render.decoder_sdf(trained.decoder), settings)
    rows = []
    for obj_id, z in list(zip([str(o) for o in saved["obj_ids"]], saved["latents"]))[:count]:
        example = source[ids.index(obj_id)]
        row = []
        for camera, truth in _picture_views(config, example, obj_id, rendered):
            image = latent_render.render_normal_maps(render, {"decoder": trained.params, "z": jnp.asarray(z)},
                                                     [camera])[0]
            row += [truth, image]
        rows.append(row)
    return pictures.picture_grid(rows) if rows else None


def _picture_views(config, example: dict, obj_id: str, rendered: bool) -> list[tuple]:
    """(camera, ground-truth normal map) of each view of a reconstruction picture's row."""
    if rendered:
        return [(camera_lib.Camera(*map(float, example["views"][v]), width=example["normal_maps"].shape[2],
                                   height=example["normal_maps"].shape[1]), example["normal_maps"][v])
                for v in config.results.test_views]
    mesh = mesh_lib.load_mesh(storage.join(layout.shape_dir(config.data.root, obj_id), layout.NORMALIZED_MESH))
    rc = config.render
    camera = camera_lib.Camera(*PICTURE_VIEW, float(rc.distance), float(rc.focal), int(rc.resolution),
                               int(rc.resolution))
    cast = mesh_caster.cast_mesh(mesh.vertices, mesh.faces, camera)
    return [(camera, mesh_caster.normal_map_uint8(cast["normals"], cast["hit"], camera))]
