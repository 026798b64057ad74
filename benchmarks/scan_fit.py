r"""Fitting your own scans against fitting the dataset's samples; last line is one JSON object.

    python -m benchmarks.scan_fit                         # the shipped model, the first 16 test chairs
    python -m benchmarks.scan_fit --model=runs/chairs256_cpu --data=data/chairs256 --shapes=32

Four ways to give the same test chairs to the same model, each fitted by the same
sdfjax.fit.sdf_fit settings from the trained mean latent, meshed and scored alike (Chamfer
x1000 in the original frame against the chair's 30,000 surface samples):

  samples   the dataset's SDF samples (DeepSDF's reconstruction);
  points    a scan of 5,000 surface points with normals, in millimetres and moved off the
            origin, its frame estimated from the points (sdfjax.fit.scans, as `launch.fit --points`);
  partial   one depth view ray cast in the normalised frame (DeepSDF's completion, `fit.partial`);
  depth     the same view written as a 16-bit PNG in millimetres with its intrinsics and read
            back as `launch.fit --depth` reads it, the frame estimated from the seen points;
            and `depth_known_frame`, the same with the chair's true frame given.

Needs the dataset folder (`make results` data) with its normalised meshes.
"""

from __future__ import annotations

import json
import os
import tempfile

import jax
import numpy as np
import trimesh
from absl import app, flags
from PIL import Image

from benchmarks import machine
from sdfjax import config_files, trained as trained_lib
from sdfjax.data import layout
from sdfjax.fit import meshing, partial, reconstruct, scans, sdf_fit
from sdfjax.fit.folded import fold_decoder
from sdfjax.geometry import mesh as mesh_lib
from sdfjax.geometry import metrics
from sdfjax.render import mesh_caster

_MODEL = flags.DEFINE_string("model", "pretrained/chairs256_cpu", "Exported model or training run.")
_DATA = flags.DEFINE_string("data", "data/chairs256", "Its preprocessed dataset folder.")
_SHAPES = flags.DEFINE_integer("shapes", 16, "Test chairs (the first of the split).")
_POINTS = flags.DEFINE_integer("points", 5000, "Surface points of a point scan.")
MM = 1000.0  # scans are written in millimetres of the original frame
SHIFT = np.array([300.0, -50.0, 1200.0])  # and moved off the origin, as a scanner's frame would be


def depth_png(config, example: dict, mesh: trimesh.Trimesh, folder: str, obj_id: str):
    """(path, intrinsics, frame of the depth scan's own frame) of a 16-bit depth PNG in millimetres."""
    camera = partial.partial_camera(config)
    cast = mesh_caster.cast_mesh(mesh.vertices, mesh.faces, camera)
    _, directions = camera.rays()
    forward = camera.axes()[0]
    scale = float(example["scale"])
    z_mm = np.where(cast["hit"], cast["depth"] * (directions @ forward) / scale * MM, 0.0)
    path = os.path.join(folder, f"{obj_id}.png")
    Image.fromarray(np.round(z_mm).reshape(camera.height, camera.width).astype(np.uint16)).save(path)
    intrinsics = scans.Intrinsics(camera.focal, camera.focal, camera.width / 2 - 0.5, camera.height / 2 - 0.5)
    # The depth scan's frame: the camera's centre at the origin, millimetres; the normalised frame puts it at
    # camera.position.
    known = mesh_lib.Normalization(offset=camera.position / (scale / MM), scale=scale / MM)
    return path, intrinsics, known


def main(argv):
    del argv
    config = config_files.get_config(_MODEL.value)
    config.data.root = _DATA.value
    config.fit.split, config.fit.obj_ids, config.fit.max_shapes = "test", "", _SHAPES.value
    trained = trained_lib.load_trained(config, _MODEL.value)
    folded = fold_decoder(trained.decoder, trained.params)
    settings = sdf_fit.FitSettings.from_config(config)
    obj_ids, examples = reconstruct.load_examples(config)
    camera = partial.partial_camera(config)
    observations = {k: [] for k in ("samples", "points", "partial", "depth", "depth_known_frame")}
    to_dataset = {k: [] for k in observations}  # per shape: the scan frame -> the dataset's normalised frame
    with tempfile.TemporaryDirectory() as folder:
        for obj_id, example in zip(obj_ids, examples):
            truth = mesh_lib.Normalization(np.asarray(example["offset"], np.float64), float(example["scale"]))
            identity = mesh_lib.Normalization(np.zeros(3), 1.0)
            mesh = trimesh.load(os.path.join(layout.shape_dir(_DATA.value, obj_id), layout.NORMALIZED_MESH),
                                process=False, force="mesh")
            observations["samples"].append(example["sdf_samples"])
            to_dataset["samples"].append(identity)
            surface = example["surface_samples"][:_POINTS.value]
            scan = scans.PointScan(truth.to_original(surface[:, :3]) * MM + SHIFT, surface[:, 3:].astype(np.float64))
            rows, frame = scans.observe(scan, seed=config.seed)
            observations["points"].append(rows)
            to_dataset["points"].append((frame, mesh_lib.Normalization(truth.offset * MM - SHIFT, truth.scale / MM)))
            rng = np.random.default_rng(config.seed)
            observations["partial"].append(partial.depth_observations(mesh.vertices, mesh.faces, camera, rng))
            to_dataset["partial"].append(identity)
            path, intrinsics, known = depth_png(config, example, mesh, folder, obj_id)
            depth_scan = scans.DepthScan(scans.read_depth_image(path, depth_scale=1.0), intrinsics,
                                         (camera.azimuth, camera.elevation))
            rows, frame = scans.observe(depth_scan, seed=config.seed)
            observations["depth"].append(rows)
            to_dataset["depth"].append((frame, known))
            rows, _ = scans.observe(depth_scan, frame=known, seed=config.seed)
            observations["depth_known_frame"].append(rows)
            to_dataset["depth_known_frame"].append(identity)

    initial = np.repeat(trained.latents.mean(axis=0)[None, None], len(obj_ids), axis=0)
    chamfer = {}
    for kind, samples in observations.items():
        result = sdf_fit.fit_latents(folded, sdf_fit.ShapeSamples.from_list(samples), initial, settings,
                                     jax.random.key(config.seed))
        values = []
        for z, example, frames in zip(result.latents, examples, to_dataset[kind]):
            mesh = meshing.mesh_of_latent(config, folded, np.asarray(z))
            if mesh is not None and isinstance(frames, tuple):  # scan frame -> its own units -> dataset frame
                scan_frame, dataset = frames
                mesh = trimesh.Trimesh(dataset.to_normalized(scan_frame.to_original(mesh.vertices)), mesh.faces,
                                       process=False)
            truth = mesh_lib.Normalization(np.asarray(example["offset"], np.float64), float(example["scale"]))
            surface = example["surface_samples"]
            values.append(metrics.evaluate_mesh(mesh, surface[:, :3], surface[:, 3:], truth, seed=config.seed,
                                                emd_points=64)["chamfer"])
        chamfer[kind] = np.asarray(values)
        print(f"{kind:18s} chamfer x1000 mean {np.nanmean(values):.3f} median {np.nanmedian(values):.3f} "
              f"empty {int(np.isnan(values).sum())}")
    median = {k: float(np.nanmedian(v)) for k, v in chamfer.items()}
    print(json.dumps({"benchmark": "scan_fit", "machine": machine.describe(), "model": _MODEL.value,
                      "shapes": len(obj_ids), "iterations": settings.num_iterations,
                      "chamfer_median": {k: round(v, 4) for k, v in median.items()},
                      "chamfer_mean": {k: round(float(np.nanmean(v)), 4) for k, v in chamfer.items()},
                      "points_over_samples": round(median["points"] / median["samples"], 3),
                      "depth_over_partial": round(median["depth"] / median["partial"], 3),
                      "depth_known_frame_over_partial": round(median["depth_known_frame"] / median["partial"], 3)}))


if __name__ == "__main__":
    app.run(main)
