"""The baselines every sketch-to-shape table shows beside it, per sketch.

  retrieval  the decoder's mesh of the nearest training shape's latent (what the
             Siamese encoder retrieves for the sketch);
  sdf_fit    DeepSDF reconstruction of the true shape from its SDF samples (the upper
             bound: what the decoder can represent at all). With config.sketch.sdf_fit_dir
             (a folder where sdfjax.launch.fit wrote metrics.csv for these shapes, as the
             results command's fit_test stage does) its rows are read, not fitted again.

A sketch without a retrieval (no training shapes to retrieve from) has no retrieval row; a
shape known only by its mesh (no SDF samples in a dataset, none fitted before) no sdf_fit row.
"""

from __future__ import annotations

import csv
import os

from sdfjax import errors, storage
from sdfjax.data import layout, tfds_builder
from sdfjax.evaluators import reconstruction
from sdfjax.fit import reconstruct
from sdfjax.fit.folded import fold_decoder


def read_fit_rows(fit_dir: str, obj_ids: set[str]) -> dict[str, dict]:
    """{obj_id: metrics row} of `obj_ids` found in `fit_dir`/metrics.csv (empty when fit_dir is empty)."""
    if not fit_dir:
        return {}
    path = storage.join(fit_dir, "metrics.csv")
    if not storage.exists(path):
        raise errors.DataError(f"{path}: not found; config.sketch.sdf_fit_dir names a folder where "
                               "python -m sdfjax.launch.fit wrote its metrics")
    rows = {}
    for row in csv.DictReader(storage.read_text(path).splitlines()):
        if row["obj_id"] in obj_ids:
            rows[row["obj_id"]] = {k: _number(v) for k, v in row.items() if v not in ("", None)}
    return rows


def _number(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def reference_rows(config, workdir: str, sketches, records, trained, retrieved, out_dir: str,
                   progress: bool = True) -> list[dict]:
    """Metrics rows ("method" retrieval and sdf_fit) for each sketch `sketches.names[i]` of shape
    `sketches.obj_ids[i]` (a sdfjax.sketch2shape.optimize.SketchBatch).

    `records[i]` is the shape's record, `trained` the run's TrainedModel, `retrieved[i][0]` the
    obj_id of its nearest training shape (`retrieved` None: no retrieval rows); the SDF fits go
    to `out_dir/sdf_fit` (shapes of a split other than config.fit.split: `out_dir/sdf_fit_<split>`).
    """
    names, obj_ids = sketches.names, sketches.obj_ids
    folded = fold_decoder(trained.decoder, trained.params)
    row_of = {o: i for i, o in enumerate(trained.obj_ids)}
    no_mesh = config.copy_and_resolve_references()
    no_mesh.fit.save_mesh = False
    rows, scored_by_shape = [], {}
    for name, obj_id, example, nearest in zip(names, obj_ids, records, (r[0] for r in retrieved or [])):
        key = (obj_id, nearest)
        if key not in scored_by_shape:
            scored_by_shape[key] = reconstruction.mesh_and_score(
                no_mesh, folded, trained.latents[row_of[nearest]], example, nearest, out_dir)
        rows.append({"obj_id": name, "method": "retrieval", "retrieved": nearest, **scored_by_shape[key]})
    by_obj = read_fit_rows(config.sketch.get("sdf_fit_dir", ""), set(obj_ids))
    missing = {o for o, r in zip(obj_ids, records) if "sdf_samples" in r} - set(by_obj)
    for split in layout.SPLITS:  # the shapes may come from any split (drawings of known shapes)
        in_split = sorted(missing & set(tfds_builder.split_index(config, split)[0])) if missing else []
        if not in_split:
            continue
        fit_config = config.copy_and_resolve_references()
        fit_config.fit.split, fit_config.fit.obj_ids = split, ",".join(in_split)
        fit_config.fit.save_mesh = False
        fitted = reconstruct.fit_split(fit_config, workdir, progress=progress,
                                       out_dir=os.path.join(out_dir, "sdf_fit" if split == config.fit.split
                                                            else f"sdf_fit_{split}"))
        by_obj.update({r["obj_id"]: r for r in fitted["rows"]})
        missing -= set(in_split)
    for name, obj_id in zip(names, obj_ids):
        if obj_id in by_obj:
            rows.append({**by_obj[obj_id], "obj_id": name, "method": "sdf_fit"})
    return rows
