"""Retrieval: Recall@k of sketches against an index of normal maps (the Siamese encoder).

    recall = recall_at_objects(index.shape_ids[order], query_shape_ids, index.views_per_shape, 1)
    result = evaluate_retrieval(config, workdir)          # the val sketches, written with a picture

Recall at object level (Sketch2Shape's retrieval test): with V views per shape in the
index, Recall@n is the share of the query shape's V normal maps among the n x V
nearest index entries. Recall@1 is thus the R-precision of the query's shape: 1 when
the V nearest entries are all views of the right shape, 1/#shapes by chance.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from sdfjax import storage, trained
from sdfjax.data import tfds_builder
from sdfjax.render import pictures
from sdfjax.sketch2shape.encoders import embedder
from sdfjax.sketch2shape.retrieval import make_index, rank, read_images


def recall_at_objects(ranked_shape_ids: np.ndarray, query_shape_ids: np.ndarray, views_per_shape: int,
                      objects: int) -> np.ndarray:
    """(Q,) Sketch2Shape's Recall@objects: share of the query shape's views in the top objects x V entries."""
    k = objects * views_per_shape
    hits = ranked_shape_ids[:, :k] == np.asarray(query_shape_ids)[:, None]
    return hits.sum(axis=1) / views_per_shape


def _mark_wrong(normal_map: np.ndarray) -> np.ndarray:
    """A retrieved normal map of the wrong shape, its background tinted red."""
    image = normal_map.copy()
    background = np.all(image == 255, axis=-1)
    image[background] = (255, 190, 190)
    return image


def retrieval_picture(query_sketches: np.ndarray, correct: np.ndarray, retrieved: np.ndarray) -> np.ndarray:
    """Rows of: query sketch | its top-k retrieved normal maps (wrong shape: red background)."""
    rows = []
    for sketch, ok, images in zip(query_sketches, correct, retrieved):
        rows.append([sketch] + [im if good else _mark_wrong(im) for im, good in zip(images, ok)])
    return pictures.picture_grid(rows)


def evaluate_retrieval(config, workdir: str, progress: bool = True, out_dir: str | None = None) -> dict:
    """Recall@1/@5 of the val sketches against the index of `config.siamese.index_split` normal maps.

    Writes `<workdir>/siamese/eval/<timestamp>/`: retrieval.json (the recalls, chance
    levels, per-view Recall@1) and retrieval.png (queries with their top 5).
    """
    sc = config.siamese
    model, params, meta = trained.load_siamese(workdir)
    index_splits = [s.strip() for s in sc.index_split.split(",") if s.strip()]
    query_splits = [s.strip() for s in sc.query_split.split(",") if s.strip()]
    # Each split's records are read once, also when it gives both the index and the queries.
    all_ids, all_sketches, all_normals, _ = read_images(config, list(dict.fromkeys(index_splits + query_splits)))
    position = {o: i for i, o in enumerate(all_ids)}
    index_ids = [o for split in index_splits for o in tfds_builder.split_index(config, split)[0]]
    query_ids = [o for split in query_splits for o in tfds_builder.split_index(config, split)[0]]
    index_normals = all_normals[[position[o] for o in index_ids]]
    query_sketches = all_sketches[[position[o] for o in query_ids]]
    if index_normals.shape[2] != meta["resolution"]:
        raise ValueError(f"the Siamese encoder was trained on {meta['resolution']} px images; "
                         f"{config.data.root} has {index_normals.shape[2]} px")
    missing = [o for o in query_ids if o not in index_ids]
    if missing:
        raise ValueError(f"config.siamese.index_split={sc.index_split!r} lacks the query shapes {missing[:3]}")
    if progress:
        print(f"embedding {index_normals.shape[0] * index_normals.shape[1]} normal maps and "
              f"{query_sketches.shape[0] * query_sketches.shape[1]} sketches", file=sys.stderr)
    index = make_index(embedder(model, params, "normal"), index_ids, index_normals)
    s, v = query_sketches.shape[:2]
    queries = embedder(model, params, "sketch")(query_sketches.reshape(s * v, *query_sketches.shape[2:]))
    query_shape = np.repeat([index_ids.index(o) for o in query_ids], v)
    query_view = np.tile(np.arange(v), s)
    order = rank(queries, index.embeddings)
    ranked = index.shape_ids[order]
    r1, r5 = recall_at_objects(ranked, query_shape, v, 1), recall_at_objects(ranked, query_shape, v, 5)
    result = {"recall_at_1_object": float(r1.mean()), "recall_at_5_object": float(r5.mean()),
              "top1_shape_accuracy": float(np.mean(ranked[:, 0] == query_shape)),
              "chance_recall_at_1": 1.0 / len(index_ids), "chance_recall_at_5": min(1.0, 5.0 / len(index_ids)),
              "index_shapes": len(index_ids), "views_per_shape": v, "queries": int(s * v),
              "index_split": sc.index_split, "query_split": sc.query_split,
              "recall_at_1_by_view": [float(r1[query_view == i].mean()) for i in range(v)]}

    out_dir = storage.run_dir(trained.siamese_dir(workdir), "eval", out_dir)
    storage.atomic_write_json(os.path.join(out_dir, "retrieval.json"), result)
    shown = np.linspace(0, s * v - 1, max(1, min(sc.picture_queries, s * v))).round().astype(int)
    top = order[shown, :5]
    flat_normals = index_normals.reshape(-1, *index_normals.shape[2:])
    picture = retrieval_picture(query_sketches.reshape(s * v, *query_sketches.shape[2:])[shown],
                                index.shape_ids[top] == query_shape[shown, None], flat_normals[top])
    storage.write_png(os.path.join(out_dir, "retrieval.png"), picture)
    return {**result, "out_dir": out_dir}


def format_recall(result: dict) -> str:
    return (f"Recall@1 {result['recall_at_1_object']:.3f} (chance {result['chance_recall_at_1']:.3f}), "
            f"Recall@5 {result['recall_at_5_object']:.3f} (chance {result['chance_recall_at_5']:.3f}), "
            f"nearest view of the right shape {result['top1_shape_accuracy']:.3f}; "
            f"{result['queries']} sketches against {result['index_shapes']} shapes x {result['views_per_shape']} views")
