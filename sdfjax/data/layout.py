"""The on-disk layout of a dataset, `data/<name>/`, shared with Sketch2Shape.

    data/<name>/
      metainfo.csv                 obj_id,label,split[,category]  (label = row of the latent code;
                                   category, e.g. a ShapeNet synset, in sets of several categories)
      failures.csv                 obj_id,stage,reason of the last preprocessing run
      shapes/<obj_id>/
        mesh.obj                   the mesh as imported, original frame
        normalized_mesh.obj        DeepSDF-normalised (see geometry.mesh)
        normalization.json         {"offset": [x, y, z], "scale": s}
        sdf_samples.npy            (N, 4) float32: x, y, z, sdf (normalised frame)
        surface_samples.npy        (M, 6) float32: x, y, z, nx, ny, nz (normalised frame)
        views.json, normals/<view>.png, sketches/<view>.png   renders of config.render's views
      tfds/                        the packed TFDS array_record dataset

Labels: training shapes hold labels 0..T-1 (their rows in the latent table); val and
test shapes follow. All writes go through `sdfjax.storage.atomic_write`, so an interrupted
run never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
from collections.abc import Sequence

from sdfjax.errors import DataError
from sdfjax.storage import atomic_write_text

SPLITS = ("train", "val", "test")
METAINFO_COLUMNS = ("obj_id", "label", "split")  # and an optional "category"
_OBJ_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

MESH = "mesh.obj"
NORMALIZED_MESH = "normalized_mesh.obj"
NORMALIZATION = "normalization.json"
SDF_SAMPLES = "sdf_samples.npy"
SURFACE_SAMPLES = "surface_samples.npy"
VIEWS = "views.json"
NORMALS_DIR = "normals"
SKETCHES_DIR = "sketches"


def normal_map_path(view: int) -> str:
    return os.path.join(NORMALS_DIR, f"{view:05d}.png")


def sketch_path(view: int) -> str:
    return os.path.join(SKETCHES_DIR, f"{view:05d}.png")


@dataclasses.dataclass(frozen=True)
class ShapeInfo:
    obj_id: str
    label: int
    split: str
    category: str = ""  # e.g. a ShapeNet synset id; "" in a set of one category


def shape_dir(root: str, obj_id: str) -> str:
    return os.path.join(root, "shapes", obj_id)


def metainfo_path(root: str) -> str:
    return os.path.join(root, "metainfo.csv")


def check_obj_id(obj_id: str, where: str) -> None:
    if not _OBJ_ID.match(obj_id):
        raise DataError(f"{where}: obj_id {obj_id!r} must be letters, digits, '_', '-', '.'")


def read_metainfo(root: str) -> list[ShapeInfo]:
    """Reads and checks `metainfo.csv`: columns, unique obj_ids, known splits, labels.

    Raises:
      DataError naming the file and line of the first problem.
    """
    path = metainfo_path(root)
    if not os.path.isfile(path):
        raise DataError(f"{path}: not found (create the dataset with data_gen.synthetic "
                        "or data_gen.import_meshes)")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in METAINFO_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; expected {list(METAINFO_COLUMNS)}")
        shapes, seen = [], {}
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            obj_id, split = row["obj_id"].strip(), row["split"].strip()
            check_obj_id(obj_id, where)
            if obj_id in seen:
                raise DataError(f"{where}: duplicate obj_id {obj_id!r} (first on line {seen[obj_id]})")
            seen[obj_id] = line
            if split not in SPLITS:
                raise DataError(f"{where}: unknown split {split!r} for {obj_id!r}; expected one of {SPLITS}")
            try:
                label = int(row["label"])
            except ValueError:
                raise DataError(f"{where}: label {row['label']!r} of {obj_id!r} is not an integer") from None
            shapes.append(ShapeInfo(obj_id, label, split, (row.get("category") or "").strip()))
    if not shapes:
        raise DataError(f"{path}: no shapes listed")
    train_labels = sorted(s.label for s in shapes if s.split == "train")
    if train_labels != list(range(len(train_labels))):
        raise DataError(f"{path}: train labels must be 0..{len(train_labels) - 1} (one latent row each), "
                        f"got {train_labels[:8]}{'...' if len(train_labels) > 8 else ''}")
    labels = [s.label for s in shapes]
    if len(set(labels)) != len(labels):
        raise DataError(f"{path}: labels must be unique")
    return shapes


def shape_categories(root: str) -> dict[str, str]:
    """obj_id -> category of every shape in `metainfo.csv` ("" in a set of one category)."""
    return {s.obj_id: s.category for s in read_metainfo(root)}


def write_metainfo(root: str, shapes: Sequence[ShapeInfo]) -> None:
    """Writes `metainfo.csv`, with the category column when some shape has a category."""
    categorised = any(s.category for s in shapes)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(METAINFO_COLUMNS + (("category",) if categorised else ()))
    for s in shapes:
        writer.writerow([s.obj_id, s.label, s.split] + ([s.category] if categorised else []))
    atomic_write_text(metainfo_path(root), buf.getvalue())


def assign_labels(obj_ids_by_split: dict[str, Sequence[str]], categories: dict[str, str] | None = None
                  ) -> list[ShapeInfo]:
    """Labels 0..T-1 for train shapes (latent rows), then val, then test; `categories`: obj_id -> category."""
    shapes = []
    for split in SPLITS:
        for obj_id in obj_ids_by_split.get(split, ()):
            shapes.append(ShapeInfo(obj_id, len(shapes), split, (categories or {}).get(obj_id, "")))
    return shapes
