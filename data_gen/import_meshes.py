r"""Imports meshes into the dataset layout: a ShapeNetCore v2 synset, or any mesh folder.

    # ShapeNetCore v2: <synset>/<model_id>/models/model_normalized.obj
    python -m data_gen.import_meshes --src=/data/ShapeNetCore.v2/03001627 --out=data/chairs \
        --limit=1000 --num_val=100 --num_test=100
    # any folder of .obj/.ply/.stl/.off/.glb files, searched recursively
    python -m data_gen.import_meshes --src=~/my_meshes --out=data/my_meshes

Then: `python -m data_gen.preprocess --config=configs/chair16.py --config.data.root=data/chairs`.

Each mesh is loaded (multi-part scenes become one mesh), checked, and written as
`<out>/shapes/<obj_id>/mesh.obj` in its original frame; `metainfo.csv` gets the
split. The selection (`--limit`) and the split are a deterministic function of the
sorted source ids and `--seed`. Meshes that fail to load, or go over the time or memory
limit per mesh (`--shape_seconds`, `--shape_memory_mb`: a huge file fails alone), are listed
in `<out>/failures.csv` and left out; the import fails only if none loads.
"""

from __future__ import annotations

import csv
import os
import re
import sys
from collections.abc import Sequence
from io import StringIO

import numpy as np
from absl import app, flags

from sdfjax import errors, limits, storage
from sdfjax.data import layout
from sdfjax.geometry import mesh as mesh_lib

SHAPENET_MESH = os.path.join("models", "model_normalized.obj")


def find_meshes(src: str) -> dict[str, str]:
    """obj_id -> mesh path. ShapeNet model folders keep their id; other files their stem."""
    src = os.path.expanduser(src)
    if not os.path.isdir(src):
        raise errors.DataError(f"--src={src}: not a folder")
    shapenet = {d: os.path.join(src, d, SHAPENET_MESH) for d in sorted(os.listdir(src))
                if os.path.isfile(os.path.join(src, d, SHAPENET_MESH))}
    if shapenet:
        return shapenet
    found: dict[str, str] = {}
    for directory, _, files in sorted(os.walk(src)):
        for name in sorted(files):
            stem, ext = os.path.splitext(name)
            if ext.lower() not in mesh_lib.MESH_EXTENSIONS:
                continue
            obj_id = re.sub(r"[^A-Za-z0-9_.\-]", "_", stem).lstrip("._-") or "mesh"
            unique, k = obj_id, 1
            while unique in found:  # same stem in two folders, or a.obj and a.ply
                unique, k = f"{obj_id}_{k}", k + 1
            found[unique] = os.path.join(directory, name)
    if not found:
        raise errors.DataError(f"--src={src}: no ShapeNet models ({SHAPENET_MESH}) and no mesh files "
                               f"({', '.join(mesh_lib.MESH_EXTENSIONS)})")
    return found


def split_ids(obj_ids: Sequence[str], num_val: int, num_test: int, limit: int, seed: int) -> dict[str, list[str]]:
    """Deterministic selection and split: shuffle the sorted ids with `seed`."""
    order = np.random.default_rng(seed).permutation(len(obj_ids))
    chosen = [sorted(obj_ids)[i] for i in order][: limit if limit > 0 else None]
    if num_val + num_test >= len(chosen):
        raise errors.DataError(f"{len(chosen)} shapes cannot hold {num_val} val + {num_test} test "
                               "and at least one training shape")
    return {"val": sorted(chosen[:num_val]), "test": sorted(chosen[num_val:num_val + num_test]),
            "train": sorted(chosen[num_val + num_test:])}


def import_meshes(src: str, out: str, limit: int = 0, num_val: int = 0, num_test: int = 0, seed: int = 0,
                  shape_seconds: float = 0.0, shape_memory_mb: int = 0
                  ) -> tuple[list[layout.ShapeInfo], list[tuple[str, str, str]]]:
    """Imports; returns the shapes written and the (obj_id, path, reason) failures. Each mesh is loaded and
    written within `shape_seconds` and `shape_memory_mb` (sdfjax.limits; 0: no limit)."""
    from tqdm import tqdm

    if os.path.isfile(layout.metainfo_path(out)):
        raise errors.DataError(f"{layout.metainfo_path(out)}: already exists; choose a new --out "
                               "(importing never overwrites a dataset)")
    sources = find_meshes(src)
    splits = split_ids(list(sources), num_val, num_test, limit, seed)
    ok: dict[str, list[str]] = {split: [] for split in splits}
    failures = []
    for split, ids in splits.items():
        for obj_id in tqdm(ids, desc=f"import {split}", unit="mesh", file=sys.stderr):
            try:
                with limits.shape_limits(sources[obj_id], shape_seconds, shape_memory_mb):
                    mesh = mesh_lib.load_mesh(sources[obj_id])
                    storage.atomic_export_mesh(os.path.join(layout.shape_dir(out, obj_id), layout.MESH), mesh)
            except (mesh_lib.MeshError, limits.LimitExceeded) as e:
                failures.append((obj_id, sources[obj_id], str(e)))
                continue
            ok[split].append(obj_id)
    if not any(ok.values()):
        raise errors.DataError(f"--src={src}: none of {len(sources)} meshes could be imported; "
                               f"first failure: {failures[0][2] if failures else 'none'}")
    if failures:
        buf = StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["obj_id", "path", "reason"])
        writer.writerows(failures)
        storage.atomic_write_text(os.path.join(out, "failures.csv"), buf.getvalue())
    shapes = layout.assign_labels(ok)
    layout.write_metainfo(out, shapes)
    return shapes, failures


def main(argv):
    del argv
    f = flags.FLAGS
    try:
        shapes, failures = import_meshes(f.src, f.out, f.limit, f.num_val, f.num_test, f.seed, f.shape_seconds,
                                         f.shape_memory_mb)
    except errors.DataError as e:
        sys.exit(f"error: {e}")
    counts = {split: sum(s.split == split for s in shapes) for split in layout.SPLITS}
    print(f"imported {len(shapes)} shapes into {f.out} ({counts})")
    for obj_id, _, reason in failures:
        print(f"  skipped {obj_id}: {reason}", file=sys.stderr)


if __name__ == "__main__":  # flags live here so that importing this module defines none
    flags.DEFINE_string("src", None, "ShapeNetCore v2 synset folder or any folder of meshes.")
    flags.DEFINE_string("out", None, "Dataset folder to create, e.g. data/my_meshes.")
    flags.DEFINE_integer("limit", 0, "Import at most this many shapes (0: all).")
    flags.DEFINE_integer("num_val", 0, "Validation shapes.")
    flags.DEFINE_integer("num_test", 0, "Test shapes.")
    flags.DEFINE_integer("seed", 0, "Seed of the selection and split.")
    flags.DEFINE_float("shape_seconds", 900.0, "Time limit per mesh (seconds; 0: none).")
    flags.DEFINE_integer("shape_memory_mb", 8192, "Memory limit per mesh beyond the importer's own (MB; 0: none).")
    flags.mark_flags_as_required(["src", "out"])
    app.run(main)
