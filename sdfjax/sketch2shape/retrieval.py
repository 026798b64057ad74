"""Sketch-based shape retrieval with the Siamese encoder (its evaluation: sdfjax.evaluators.retrieval).

    obj_ids, sketches, normal_maps, views = read_images(config, ["train"])
    index = make_index(embedder(model, params, "normal"), obj_ids, normal_maps)   # every view's normal map
    order = rank(query_embeddings, index.embeddings)                  # (Q, I) nearest first
    nearest = top_shapes(index.shape_ids[order], k)                   # (Q, k) distinct shapes
"""

from __future__ import annotations

import dataclasses

import numpy as np

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
        source = tfds_builder.data_source(config, split)
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


def nearest_train_shapes(config, model, params, query_embeddings: np.ndarray, k: int) -> list[list[str]]:
    """For each query embedding, the obj_ids of the k nearest distinct training shapes (all their views indexed)."""
    train_ids, _, train_normals, _ = read_images(config, ["train"])
    index = make_index(embedder(model, params, "normal"), train_ids, train_normals)
    top = top_shapes(index.shape_ids[rank(query_embeddings, index.embeddings)], k)
    return [[train_ids[s] for s in row] for row in top]
