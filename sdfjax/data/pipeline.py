"""Preprocessing a dataset folder into DeepSDF training and evaluation data.

Per shape (`data/<name>/shapes/<obj_id>/`, see sdfjax.data.layout):

  normalize  normalized_mesh.obj, normalization.json   (DeepSDF's unit-sphere frame)
  sdf        sdf_samples.npy      (N, 4) float32       (DeepSDF's sampling, docs/design.md)
  surface    surface_samples.npy  (M, 6) float32       (points + normals, for metrics)
  render     normals/00000.png ..., sketches/00000.png ..., views.json (one per view of
             config.render: ground-truth normal maps by ray casting, and their sketches)

then packs every finished shape into a TFDS array_record dataset (stage `tfds`).

    results = preprocess_dataset(config)       # every stage of every shape still to do
    ensure_dataset(config)                     # only when the TFDS dataset is missing

(command line: python -m data_gen.preprocess --config=configs/chair16.py:cpu).

Shapes run in parallel worker processes. A finished stage is skipped unless
`--overwrite`. A shape's outputs are all computed before any is written, each file is
written atomically, so a failing or interrupted run never loses or corrupts what an
earlier run wrote. Failures are listed in `<root>/failures.csv`; the run exits non-zero
only when every shape it tried failed.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import functools
import multiprocessing
import os
import resource
import sys
import time
import zlib
from collections.abc import Sequence
from io import StringIO

import numpy as np
from tqdm import tqdm

from sdfjax import errors, limits, locks, storage
from sdfjax.data import layout, tfds_builder
from sdfjax.geometry import mesh as mesh_lib
from sdfjax.geometry import sdf as sdf_lib
from sdfjax.render import camera, edges, mesh_caster

# Each stage and the files it writes, in the order they run.
STAGE_OUTPUTS = {
    "normalize": (layout.NORMALIZED_MESH, layout.NORMALIZATION),
    "sdf": (layout.SDF_SAMPLES,),
    "surface": (layout.SURFACE_SAMPLES,),
    "render": (layout.VIEWS,),  # written after normals/*.png and sketches/*.png
}
SHAPE_STAGES = tuple(STAGE_OUTPUTS)
ALL_STAGES = SHAPE_STAGES + ("tfds",)


@dataclasses.dataclass(frozen=True)
class Settings:
    """What preprocessing reads from `config.data` (picklable for worker processes)."""

    sampling: sdf_lib.SamplingSpec
    num_surface_samples: int
    seed: int
    views: tuple = ()  # sdfjax.render.camera.Camera per view of the `render` stage
    shape_seconds: float = 0.0  # limits on one shape's work (sdfjax.limits); 0: none
    shape_memory_mb: int = 0

    @classmethod
    def from_config(cls, config) -> "Settings":
        data = config.data
        spec = sdf_lib.SamplingSpec(
            num_samples=int(data.num_sdf_samples),
            near_fraction=float(data.near_surface_fraction),
            variances=tuple(float(v) for v in data.near_surface_variances),
        )
        views = tuple(camera.views_from_config(config.render)) if "render" in config else ()
        return cls(spec, int(data.num_surface_samples), int(config.seed), views,
                   float(data.get("shape_seconds", 0.0)), int(data.get("shape_memory_mb", 0)))


@dataclasses.dataclass(frozen=True)
class ShapeResult:
    obj_id: str
    status: str  # "done", "skipped" or "failed"
    stages: tuple[str, ...] = ()
    reason: str = ""


def _rng(settings: Settings, obj_id: str, stage: str) -> np.random.Generator:
    """A generator per (seed, shape, stage): results do not depend on order or workers."""
    return np.random.default_rng([settings.seed, zlib.crc32(obj_id.encode()), SHAPE_STAGES.index(stage)])


def pending_stages(shape_path: str, stages: Sequence[str], overwrite: bool, views: Sequence = ()) -> list[str]:
    """The `stages` to run for one shape: those whose outputs are missing (all with `overwrite`), and `render`
    when its views.json records other views than `views` (so a changed view set re-renders, never mixes)."""
    def done(stage):
        if not all(os.path.isfile(os.path.join(shape_path, f)) for f in STAGE_OUTPUTS[stage]):
            return False
        return stage != "render" or _rendered_views(shape_path) == [v.to_json() for v in views]
    return [s for s in stages if overwrite or not done(s)]


def _rendered_views(shape_path: str) -> list | None:
    """The views a shape's views.json records (None when it cannot be read)."""
    try:
        return json.loads(storage.read_text(os.path.join(shape_path, layout.VIEWS)))["views"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def normalized_shape(mesh_path: str):
    """(normalization, the mesh in DeepSDF's unit-sphere frame, its SignedDistanceField) of a mesh file."""
    mesh = mesh_lib.load_mesh(mesh_path)
    normalization = mesh_lib.compute_normalization(mesh)
    normalized = mesh_lib.normalize_mesh(mesh, normalization)
    return normalization, normalized, sdf_lib.SignedDistanceField.from_mesh(normalized)


def surface_samples(normalized, field, settings: Settings, obj_id: str) -> np.ndarray:
    """(M, 6) float32 surface points and normals of a normalised shape: the surface stage's output."""
    points, normals = sdf_lib.sample_surface(
        normalized, settings.num_surface_samples, _rng(settings, obj_id, "surface"), faces=field.faces)
    return np.concatenate([points, normals], 1).astype(np.float32)


def surface_record(config, mesh_path: str, obj_id: str) -> dict:
    """What scoring and pictures read of a shape's dataset record ("surface_samples", "offset", "scale", and the
    "normalized_mesh" itself), computed from its mesh file as preprocessing computes them (the same numbers), for
    shapes outside any dataset."""
    normalization, normalized, field = normalized_shape(mesh_path)
    return {"surface_samples": surface_samples(normalized, field, Settings.from_config(config), obj_id),
            "offset": np.asarray(normalization.offset, np.float32), "scale": np.float32(normalization.scale),
            "normalized_mesh": normalized}


def preprocess_shape(root: str, obj_id: str, settings: Settings, stages: Sequence[str],
                     overwrite: bool = False) -> ShapeResult:
    """Runs the pending `stages` for one shape; never raises for bad input."""
    shape_path = layout.shape_dir(root, obj_id)
    storage.remove_stale_temporaries(shape_path)  # left by a run killed mid-write; this worker owns the folder
    todo = pending_stages(shape_path, stages, overwrite, settings.views)
    if not todo:
        return ShapeResult(obj_id, "skipped")
    try:
        with limits.shape_limits(obj_id, settings.shape_seconds, settings.shape_memory_mb):
            outputs = _compute_stages(shape_path, obj_id, settings, todo)
    except Exception as e:  # one bad shape must not stop the others: report it instead.
        reason = str(e) if isinstance(e, (mesh_lib.MeshError, errors.DataError)) else f"{type(e).__name__}: {e}"
        return ShapeResult(obj_id, "failed", tuple(todo), reason)
    try:
        for name, content in outputs.items():
            path = os.path.join(shape_path, name)
            if isinstance(content, bytes):
                storage.atomic_write_bytes(path, content)
            elif isinstance(content, np.ndarray):
                storage.atomic_save_npy(path, content)
            elif isinstance(content, dict):
                storage.atomic_write_json(path, content)
            else:
                storage.atomic_export_mesh(path, content)
    except OSError as e:  # a full disk, a quota: this shape fails (its finished files stay whole), the run goes on
        return ShapeResult(obj_id, "failed", tuple(todo), f"writing {name}: {type(e).__name__}: {e}")
    return ShapeResult(obj_id, "done", tuple(todo))


def _compute_stages(shape_path: str, obj_id: str, settings: Settings, todo: Sequence[str]) -> dict[str, object]:
    """The files of one shape's pending stages (file name -> content), computed before any is written."""
    normalization, normalized, field = normalized_shape(os.path.join(shape_path, layout.MESH))
    outputs: dict[str, object] = {}
    if "normalize" in todo:
        outputs[layout.NORMALIZED_MESH] = normalized
        outputs[layout.NORMALIZATION] = normalization.to_json()
    if "sdf" in todo:
        samples = sdf_lib.sample_sdf(field, normalized, settings.sampling, _rng(settings, obj_id, "sdf"))
        if not np.all(np.isfinite(samples)):
            raise mesh_lib.MeshError(f"{obj_id}: non-finite SDF samples")
        outputs[layout.SDF_SAMPLES] = samples
    if "surface" in todo:
        outputs[layout.SURFACE_SAMPLES] = surface_samples(normalized, field, settings, obj_id)
    if "render" in todo:
        outputs.update(render_views(normalized, settings.views))
    return outputs


def render_views(normalized, views) -> dict[str, object]:
    """normals/<i>.png, sketches/<i>.png for every view, then views.json (file name -> content)."""
    if not views:
        raise errors.DataError("the render stage needs config.render views")
    outputs: dict[str, object] = {}
    for i, view in enumerate(views):
        cast = mesh_caster.cast_mesh(normalized.vertices, normalized.faces, view)
        normal_map = mesh_caster.normal_map_uint8(cast["normals"], cast["hit"], view)
        shape = (view.height, view.width)
        lines = edges.sketch_from_render(normal_map, cast["depth"].reshape(shape), cast["hit"].reshape(shape))
        outputs[layout.normal_map_path(i)] = storage.png_bytes(normal_map)
        outputs[layout.sketch_path(i)] = storage.png_bytes(lines)
    outputs[layout.VIEWS] = {"views": [v.to_json() for v in views]}
    return outputs


def write_failures(root: str, results: Sequence[ShapeResult]) -> str:
    """Writes `failures.csv` of this run (a header alone when nothing failed)."""
    buf = StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["obj_id", "stages", "reason"])
    for r in results:
        if r.status == "failed":
            writer.writerow([r.obj_id, "+".join(r.stages), r.reason])
    path = os.path.join(root, "failures.csv")
    storage.atomic_write_text(path, buf.getvalue())
    return path


def _run_in_workers(obj_ids: Sequence[str], workers: int, run_one, stages: Sequence[str], bar) -> list[ShapeResult]:
    """`run_one(obj_id)` for every shape in worker processes; a worker that dies fails only its own shape.

    At most `workers` shapes are in flight, so when a worker dies (killed, out of memory,
    a crash in native code) and takes the pool down, only those shapes are suspects: each
    is retried alone, the one whose worker dies again is listed as failed, and a new pool
    goes on with the rest.
    """
    context = multiprocessing.get_context("spawn")  # not fork: the parent may hold JAX or BLAS threads
    queue, results = list(obj_ids), []
    while queue:
        suspects = []
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
            in_flight = {}
            while (queue or in_flight) and not suspects:
                while queue and len(in_flight) < workers:
                    obj_id = queue.pop(0)
                    in_flight[pool.submit(run_one, obj_id)] = obj_id
                done, _ = concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    obj_id = in_flight.pop(future)
                    try:
                        results.append(future.result())
                        bar.update()
                    except concurrent.futures.process.BrokenProcessPool:
                        suspects.append(obj_id)
            suspects += in_flight.values()  # the broken pool fails every shape it held
        for obj_id in suspects:
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as alone:
                try:
                    results.append(alone.submit(run_one, obj_id).result())
                except concurrent.futures.process.BrokenProcessPool:
                    results.append(ShapeResult(obj_id, "failed", tuple(stages),
                                               "its worker process died (killed, or out of memory)"))
            bar.update()
    return results


def preprocess_dataset(config, stages: Sequence[str] = ALL_STAGES, overwrite: bool = False,
                       obj_ids: Sequence[str] | None = None, progress: bool = True,
                       shape_fn=None, runner=None) -> list[ShapeResult]:
    """Preprocesses every shape of `config.data.root` (or `obj_ids`), then packs TFDS.

    `shape_fn` (default `preprocess_shape`, same arguments) does one shape, in local worker
    processes; or `runner(root, obj_ids, settings, stages, overwrite) -> [ShapeResult]`, named
    by its `engine`, runs `preprocess_shape` for every shape elsewhere
    (sdfjax.data.beam_pipeline.BeamRunner). Shapes whose
    files cannot be packed are listed in failures.csv with the stage `tfds`. The data root
    is locked for the run (sdfjax.locks): a second run on it refuses in one line.

    Raises:
      errors.DataError: metainfo.csv is missing or malformed, an obj_id is unknown, or another
        process is preprocessing the same data root.
    """
    with locks.hold(config.data.root, "preprocessing", enabled=os.path.isdir(config.data.root)):
        return _preprocess_dataset(config, stages, overwrite, obj_ids, progress, shape_fn, runner)


def _preprocess_dataset(config, stages, overwrite, obj_ids, progress, shape_fn, runner) -> list[ShapeResult]:
    unknown = [s for s in stages if s not in ALL_STAGES]
    if unknown:
        raise errors.DataError(f"unknown preprocessing stage(s) {unknown}; expected some of {ALL_STAGES}")
    root = config.data.root
    shapes = layout.read_metainfo(root)
    if obj_ids:
        known = {s.obj_id for s in shapes}
        missing = [o for o in obj_ids if o not in known]
        if missing:
            raise errors.DataError(f"{layout.metainfo_path(root)}: obj_id(s) {missing} not listed")
        shapes = [s for s in shapes if s.obj_id in set(obj_ids)]
    settings = Settings.from_config(config)
    shape_fn = shape_fn or preprocess_shape
    started = time.perf_counter()
    shape_stages = [s for s in SHAPE_STAGES if s in stages]
    ids = [s.obj_id for s in shapes]
    results = []
    bar = tqdm(total=len(ids), desc=f"preprocess {os.path.basename(os.path.normpath(root))}",
               unit="shape", disable=not progress, file=sys.stderr)
    workers = max(1, min(int(config.data.num_workers), len(ids)))
    run_one = functools.partial(shape_fn, root, settings=settings, stages=shape_stages, overwrite=overwrite)
    if runner is not None:
        results = runner(root, ids, settings, shape_stages, overwrite)
        bar.update(len(results))
    elif workers == 1:
        for obj_id in ids:
            results.append(run_one(obj_id))
            bar.update()
    else:
        results = _run_in_workers(ids, workers, run_one, shape_stages, bar)
    bar.close()
    results.sort(key=lambda r: ids.index(r.obj_id))
    write_failures(root, results)
    shape_seconds = time.perf_counter() - started
    if "tfds" in stages:
        changed = any(r.status == "done" for r in results)
        _, unpackable = tfds_builder.pack_dataset(config, overwrite=overwrite or changed)
        bad = dict(unpackable)
        results = [ShapeResult(r.obj_id, "failed", r.stages + ("tfds",), bad[r.obj_id]) if r.obj_id in bad else r
                   for r in results]
        write_failures(root, results)
    engine = runner.engine if runner is not None else "local processes"
    _write_stats(root, results, shape_stages, (engine, workers), shape_seconds, time.perf_counter() - started)
    return results


def _write_stats(root: str, results, stages, engine: tuple[str, int], shape_seconds: float, seconds: float) -> None:
    """`<root>/preprocess_stats.json`: this run's engine (what ran the shapes, and its local workers), throughput
    (shapes done per minute) and peak memory.

    A run that preprocessed no shape (all done before) keeps the file of the run that did.
    """
    done = sum(r.status == "done" for r in results)
    if not done and storage.exists(os.path.join(root, "preprocess_stats.json")):
        return
    storage.atomic_write_json(os.path.join(root, "preprocess_stats.json"), {
        "shapes": len(results), "done": done, "failed": sum(r.status == "failed" for r in results),
        "stages": list(stages), "engine": engine[0], "workers": engine[1], "seconds": round(seconds, 2),
        "shape_stage_seconds": round(shape_seconds, 2),
        "shapes_per_minute": round(60 * done / shape_seconds, 2) if done and shape_seconds > 0 else None,
        # Linux reports KiB; the largest worker process (spawned) counts under RUSAGE_CHILDREN.
        "peak_rss_mb_main": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_mb_worker": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)})


def ensure_dataset(config, progress: bool = True) -> None:
    """Preprocesses `config.data.root` when it has no TFDS dataset yet (what `train` needs).

    Raises errors.DataError when every shape failed (failures.csv says why).
    """
    if storage.exists(tfds_builder.dataset_path(config)):
        return
    print(f"no TFDS dataset under {config.data.root}: preprocessing it first", file=sys.stderr)
    results = preprocess_dataset(config, progress=progress)
    if results and all(r.status == "failed" for r in results):
        raise errors.DataError(f"{config.data.root}: every shape failed to preprocess; see failures.csv")
