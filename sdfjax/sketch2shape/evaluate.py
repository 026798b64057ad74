"""The baselines every sketch-to-shape table shows beside it, per sketch.

  retrieval  the decoder's mesh of the nearest training shape's latent (what the
             Siamese encoder retrieves for the sketch);
  sdf_fit    DeepSDF reconstruction of the true shape from its SDF samples (the upper
             bound: what the decoder can represent at all).
"""

from __future__ import annotations

import os

from sdfjax.fit import reconstruct, scoring


def reference_rows(config, workdir: str, names, obj_ids, records, folded, trained, retrieved, out_dir: str,
                   progress: bool = True) -> list[dict]:
    """Metrics rows ("method" retrieval and sdf_fit) for each sketch `names[i]` of shape `obj_ids[i]`.

    `records[i]` is the shape's dataset record, `retrieved[i][0]` the obj_id of its nearest
    training shape; the SDF fits go to `out_dir/sdf_fit`.
    """
    row_of = {o: i for i, o in enumerate(trained.obj_ids)}
    no_mesh = config.copy_and_resolve_references()
    no_mesh.fit.save_mesh = False
    rows, scored_by_shape = [], {}
    for name, obj_id, example, nearest in zip(names, obj_ids, records, (r[0] for r in retrieved)):
        key = (obj_id, nearest)
        if key not in scored_by_shape:
            scored_by_shape[key] = scoring.mesh_and_score(no_mesh, folded, trained.latents[row_of[nearest]], example,
                                                          nearest, out_dir)
        rows.append({"obj_id": name, "method": "retrieval", "retrieved": nearest, **scored_by_shape[key]})
    fit_config = config.copy_and_resolve_references()
    fit_config.fit.obj_ids = ",".join(sorted(set(obj_ids)))
    fit_config.fit.save_mesh = False
    fitted = reconstruct.fit_split(fit_config, workdir, progress=progress, out_dir=os.path.join(out_dir, "sdf_fit"))
    by_obj = {r["obj_id"]: r for r in fitted["rows"]}
    for name, obj_id in zip(names, obj_ids):
        rows.append({**by_obj[obj_id], "obj_id": name, "method": "sdf_fit"})
    return rows
