r"""Imports meshes into the dataset layout: a ShapeNetCore v2 synset, any mesh folder, or DeepSDF's split files.

    # ShapeNetCore v2: <synset>/<model_id>/models/model_normalized.obj
    python -m data_gen.import_meshes --src=/data/ShapeNetCore.v2/03001627 --out=data/chairs \
        --limit=1000 --num_val=100 --num_test=100
    # any folder of .obj/.ply/.stl/.off/.glb files, searched recursively
    python -m data_gen.import_meshes --src=~/my_meshes --out=data/my_meshes
    # DeepSDF's protocol: its split files over the ShapeNetCore v2 root, any number of synsets
    python -m data_gen.import_meshes --src=/data/ShapeNetCore.v2 --out=data/sv2_chairs \
        --splits=examples/splits/sv2_chairs_train.json,examples/splits/sv2_chairs_test.json

A split file is DeepSDF's JSON, `{"ShapeNetV2": {"03001627": ["<model_id>", ...], ...}}`;
its split is the one its file name says (train, val or test; `val=path` names it), every
listed model goes to that split, and metainfo.csv keeps each model's synset as its
category. Without split files, the selection (`--limit`) and the random split are drawn.

Then: `python -m data_gen.preprocess --config=configs/chair16.py --config.data.root=data/chairs`.

Each mesh is loaded (multi-part scenes become one mesh), checked, and written as
`<out>/shapes/<obj_id>/mesh.obj` in its original frame; `metainfo.csv` gets the
split. A drawn selection and split are a deterministic function of the sorted source ids
and `--seed`. Meshes that fail to load, a split file's models missing under --src, or go over the time or memory
limit per mesh (`--shape_seconds`, `--shape_memory_mb`: a huge file fails alone), are listed
in `<out>/failures.csv` and left out; the import fails only if none loads.
"""

from __future__ import annotations

import csv
import dataclasses
import json
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


def split_role(spec: str) -> tuple[str, str]:
    """(split, path) of one --splits entry: `path` whose file name says train, val or test, or `split=path`."""
    role, sep, path = spec.partition("=")
    if sep and role in layout.SPLITS:
        return role, path
    name = os.path.basename(spec).lower()
    named = [s for s, words in (("train", ("train",)), ("val", ("val",)), ("test", ("test",)))
             if any(w in name for w in words)]
    if len(named) != 1:
        raise errors.DataError(f"--splits: cannot tell the split of {spec} from its file name; "
                               f"write it as train={spec}, val={spec} or test={spec}")
    return named[0], spec


def read_split_file(path: str) -> dict[str, list[str]]:
    """synset -> model ids of one DeepSDF split file ({"<dataset>": {"<synset>": [ids]}}); DataError naming it."""
    try:
        with open(os.path.expanduser(path)) as f:
            content = json.load(f)
    except OSError as e:
        raise errors.DataError(f"--splits: {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise errors.DataError(f"--splits: {path}: not JSON ({e})") from None
    synsets: dict[str, list[str]] = {}
    if not isinstance(content, dict) or not content:
        raise errors.DataError(f"--splits: {path}: expected DeepSDF's {{\"ShapeNetV2\": {{\"<synset>\": [ids]}}}}")
    for dataset, by_synset in content.items():
        if not isinstance(by_synset, dict) or not all(
                isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in by_synset.values()):
            raise errors.DataError(f"--splits: {path}: {dataset!r} must map each synset to a list of model ids")
        for synset, ids in by_synset.items():
            synsets.setdefault(synset, []).extend(ids)
    return synsets


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which meshes of --src are imported into which split: read from DeepSDF's `split_files`, or drawn (at most
    `limit`, 0: all; `num_val` and `num_test` of them held out) with `seed`."""

    limit: int = 0
    num_val: int = 0
    num_test: int = 0
    seed: int = 0
    split_files: tuple[str, ...] = ()


def plan_split_files(src: str, split_files) -> tuple[dict[str, list[str]], dict[str, str], dict[str, str]]:
    """(split -> obj_ids, obj_id -> mesh path, obj_id -> synset) of DeepSDF split files over a ShapeNetCore v2 root;
    a model listed twice is a DataError naming both files."""
    src = os.path.expanduser(src)
    if not os.path.isdir(src):
        raise errors.DataError(f"--src={src}: not a folder")
    splits: dict[str, list[str]] = {split: [] for split in layout.SPLITS}
    paths, categories, listed_in = {}, {}, {}
    for spec in split_files:
        split, path = split_role(spec)
        for synset, ids in read_split_file(path).items():
            for model_id in ids:
                layout.check_obj_id(model_id, f"--splits: {path}")
                if model_id in listed_in:
                    raise errors.DataError(f"--splits: model {model_id} is listed in {listed_in[model_id]} and in "
                                           f"{path}; a model belongs to one split")
                listed_in[model_id] = path
                splits[split].append(model_id)
                paths[model_id] = os.path.join(src, synset, model_id, SHAPENET_MESH)
                categories[model_id] = synset
    return {split: ids for split, ids in splits.items() if ids}, paths, categories


def import_meshes(src: str, out: str, selection: Selection = Selection(), shape_seconds: float = 0.0,
                  shape_memory_mb: int = 0) -> tuple[list[layout.ShapeInfo], list[tuple[str, str, str]]]:
    """Imports the `selection` of `src`; returns the shapes written and the (obj_id, path, reason) failures. Each
    mesh is loaded and written within `shape_seconds` and `shape_memory_mb` (sdfjax.limits; 0: no limit)."""
    from tqdm import tqdm

    if os.path.isfile(layout.metainfo_path(out)):
        raise errors.DataError(f"{layout.metainfo_path(out)}: already exists; choose a new --out "
                               "(importing never overwrites a dataset)")
    if selection.split_files:
        splits, sources, categories = plan_split_files(src, selection.split_files)
    else:
        sources, categories = find_meshes(src), {}
        splits = split_ids(list(sources), selection.num_val, selection.num_test, selection.limit, selection.seed)
    ok: dict[str, list[str]] = {split: [] for split in splits}
    failures = []
    for split, ids in splits.items():
        for obj_id in tqdm(ids, desc=f"import {split}", unit="mesh", file=sys.stderr):
            if not os.path.isfile(sources[obj_id]):
                failures.append((obj_id, sources[obj_id], "not found"))
                continue
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
    shapes = layout.assign_labels(ok, categories)
    layout.write_metainfo(out, shapes)
    return shapes, failures


def main(argv):
    del argv
    f = flags.FLAGS
    try:
        if f.splits and (f.limit or f.num_val or f.num_test):
            raise errors.DataError("--splits chooses the shapes and their splits: drop --limit, --num_val, --num_test")
        selection = Selection(f.limit, f.num_val, f.num_test, f.seed, tuple(f.splits))
        shapes, failures = import_meshes(f.src, f.out, selection, f.shape_seconds, f.shape_memory_mb)
    except errors.DataError as e:
        sys.exit(f"error: {e}")
    counts = {split: sum(s.split == split for s in shapes) for split in layout.SPLITS}
    print(f"imported {len(shapes)} shapes into {f.out} ({counts})")
    for obj_id, _, reason in failures:
        print(f"  skipped {obj_id}: {reason}", file=sys.stderr)


if __name__ == "__main__":  # flags live here so that importing this module defines none
    flags.DEFINE_string("src", None, "ShapeNetCore v2 synset folder (its root with --splits), or any mesh folder.")
    flags.DEFINE_string("out", None, "Dataset folder to create, e.g. data/my_meshes.")
    flags.DEFINE_integer("limit", 0, "Import at most this many shapes (0: all).")
    flags.DEFINE_integer("num_val", 0, "Validation shapes.")
    flags.DEFINE_integer("num_test", 0, "Test shapes.")
    flags.DEFINE_integer("seed", 0, "Seed of the selection and split.")
    flags.DEFINE_list("splits", [], "DeepSDF split files (train.json,test.json; or val=path): their models and "
                      "splits, from the ShapeNetCore v2 root --src.")
    flags.DEFINE_float("shape_seconds", 900.0, "Time limit per mesh (seconds; 0: none).")
    flags.DEFINE_integer("shape_memory_mb", 8192, "Memory limit per mesh beyond the importer's own (MB; 0: none).")
    flags.mark_flags_as_required(["src", "out"])
    app.run(main)
