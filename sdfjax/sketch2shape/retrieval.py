"""Sketch-based shape retrieval with the Siamese encoder (its evaluation: sdfjax.evaluators.retrieval).

    obj_ids, sketches, normal_maps, views = read_images(config, ["train"])
    index = make_index(embedder(model, params, "normal"), obj_ids, normal_maps)   # every view's normal map
    order = rank(query_embeddings, index.embeddings)                  # (Q, I) nearest first
    nearest = top_shapes(index.shape_ids[order], k)                   # (Q, k) distinct shapes
    index = train_index(config, workdir, model, params)               # a run's or export's saved index, else the dataset's
    save_index(index, folder)                                         # folder/retrieval/: what an export ships
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from sdfjax import errors, storage
from sdfjax.data import batching, layout, tfds_builder
from sdfjax.sketch2shape.encoders import embedder


@dataclasses.dataclass
class Index:
    """Embeddings of every view of a set of shapes, row = shape-major (shape, view)."""

    embeddings: np.ndarray  # (S * V, D)
    shape_ids: np.ndarray  # (S * V,) int: position of the shape in `obj_ids`
    view_ids: np.ndarray  # (S * V,) int: view index in the dataset's view set
    obj_ids: list[str]
    views_per_shape: int


def read_images(config, splits) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """(obj_ids, sketches (S, V, H, W), normal maps (S, V, H, W, 3), views (S, V, 4)) of the splits' shapes."""
    obj_ids, sketches, normal_maps, views = [], [], [], []
    for split in splits:
        if split not in layout.SPLITS:
            raise ValueError(f"split {split!r}: expected one of {layout.SPLITS}")
        source = tfds_builder.data_source(config, split, renders=True)
        ids, _ = tfds_builder.split_index(config, split)
        for i, obj_id in enumerate(ids):
            s, n, v = batching.images_and_views(source[i])
            obj_ids.append(obj_id)
            sketches.append(s)
            normal_maps.append(n)
            views.append(v)
    return obj_ids, np.stack(sketches), np.stack(normal_maps), np.stack(views)


def make_index(embed_normals, obj_ids: list[str], normal_maps: np.ndarray) -> Index:
    """The index of normal maps (S, V, H, W, 3) under `embed_normals` (sdfjax.sketch2shape.encoders.embedder)."""
    s, v = normal_maps.shape[:2]
    embeddings = embed_normals(normal_maps.reshape(s * v, *normal_maps.shape[2:]))
    return Index(embeddings=embeddings, shape_ids=np.repeat(np.arange(s), v), view_ids=np.tile(np.arange(v), s),
                 obj_ids=list(obj_ids), views_per_shape=v)


def rank(queries: np.ndarray, index_embeddings: np.ndarray) -> np.ndarray:
    """(Q, I) index rows sorted by Euclidean distance to each query, nearest first (stable)."""
    d2 = (np.sum(queries**2, 1)[:, None] + np.sum(index_embeddings**2, 1)[None] - 2.0 * queries @ index_embeddings.T)
    return np.argsort(d2, axis=1, kind="stable")


def top_shapes(ranked_shape_ids: np.ndarray, k: int) -> np.ndarray:
    """(Q, k) the first k distinct shapes of each ranking (fewer shapes than k: the last one repeated)."""
    out = np.empty((len(ranked_shape_ids), k), np.int64)
    for q, row in enumerate(ranked_shape_ids):
        _, first = np.unique(row, return_index=True)
        distinct = row[np.sort(first)][:k]
        out[q] = np.concatenate([distinct, np.repeat(distinct[-1:], k - len(distinct))])
    return out


INDEX_DIR = "retrieval"
INDEX_JSON = "index.json"
# Each shard of a saved index stays below this (exports are committed to git, whose hosts limit file size).
MAX_SHARD_BYTES = 1 << 20
NPY_HEADER_BYTES = 256  # at least the .npy header of a 2-D float16 array (128 bytes for any realistic shape)


def save_index(index: Index, folder: str, max_shard_bytes: int = MAX_SHARD_BYTES) -> list[str]:
    """Writes `index` to folder/retrieval/: index.json (obj_ids, views per shape) and the embeddings as float16
    .npy shards of at most `max_shard_bytes` (float16 keeps the ranking: distances differ by ~1e-3 of their
    size). Returns the files written, relative to `folder`."""
    embeddings = np.asarray(index.embeddings, np.float16)
    rows = max(1, (max_shard_bytes - NPY_HEADER_BYTES) // embeddings[0].nbytes)
    names = []
    for i, start in enumerate(range(0, len(embeddings), rows)):
        names.append(f"embeddings_{i:03d}.npy")
        storage.atomic_save_npy(os.path.join(folder, INDEX_DIR, names[-1]), embeddings[start:start + rows])
    storage.atomic_write_text(os.path.join(folder, INDEX_DIR, INDEX_JSON), json.dumps(
        {"obj_ids": index.obj_ids, "views_per_shape": index.views_per_shape, "shards": names}) + "\n")
    return [os.path.join(INDEX_DIR, n) for n in [*names, INDEX_JSON]]


def load_index(folder: str) -> Index | None:
    """The index saved in folder/retrieval/ (`save_index`), or None when there is none; errors.DataError naming
    the file when it is damaged."""
    path = os.path.join(folder, INDEX_DIR, INDEX_JSON)
    if not os.path.isfile(path):
        return None
    try:
        saved = json.loads(storage.read_text(path))
        embeddings = np.concatenate([np.load(os.path.join(folder, INDEX_DIR, os.path.basename(n)))
                                     for n in saved["shards"]]).astype(np.float32)
        obj_ids, v = [str(o) for o in saved["obj_ids"]], int(saved["views_per_shape"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise errors.DataError(f"{path}: not a readable retrieval index ({type(e).__name__}: {e})") from None
    if len(embeddings) != len(obj_ids) * v:
        raise errors.DataError(f"{path}: {len(embeddings)} embeddings for {len(obj_ids)} shapes x {v} views")
    s = len(obj_ids)
    return Index(embeddings=embeddings, shape_ids=np.repeat(np.arange(s), v), view_ids=np.tile(np.arange(v), s),
                 obj_ids=obj_ids, views_per_shape=v)


def dataset_train_index(config, model, params) -> Index:
    """Every view's normal map of the training shapes of config.data.root, embedded by the Siamese encoder."""
    train_ids, _, train_normals, _ = read_images(config, ["train"])
    return make_index(embedder(model, params, "normal"), train_ids, train_normals)


def train_index(config, workdir: str, model, params) -> Index | None:
    """The training shapes' index: the one saved in `workdir` (an export ships it), else built from the dataset
    (config.data.root), else None when neither exists."""
    saved = load_index(workdir)
    if saved is not None:
        return saved
    try:
        return dataset_train_index(config, model, params)
    except errors.DataError:
        return None


def nearest_shapes(index: Index, query_embeddings: np.ndarray, k: int) -> list[list[str]]:
    """For each query embedding, the obj_ids of the k nearest distinct shapes of `index` (all their views)."""
    top = top_shapes(index.shape_ids[rank(query_embeddings, index.embeddings)], k)
    return [[index.obj_ids[s] for s in row] for row in top]
