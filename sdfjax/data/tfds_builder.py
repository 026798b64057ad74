"""The preprocessed shapes as a TFDS array_record dataset, built and read without TensorFlow.

One example per shape, keyed by obj_id, in the split metainfo.csv gives it:

    obj_id           str
    label            int64    row of the shape's latent code (train shapes: 0..T-1)
    sdf_samples      (N, 4)   float32 x, y, z, sdf in the normalised frame
    surface_samples  (M, 6)   float32 points and normals in the normalised frame
    offset, scale    (3,), () float32 normalisation (x_norm = (x + offset) * scale)

and, when every shape has its `render` stage done:

    normal_maps      (V, H, W, 3) uint8  ground-truth normal maps, (n + 1) / 2 on white
    sketches         (V, H, W)    uint8  black lines on white
    views            (V, 4)       float32 azimuth, elevation (degrees), distance, focal (pixels)

Build with `pack_dataset(config)` (the `tfds` stage of sdfjax.data.pipeline); read with
`data_source(config, split)`, a random-access sequence of dicts of numpy arrays.
"""

from __future__ import annotations

import json
import os
import shutil
from unittest import mock

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer
from tensorflow_datasets.core import shuffle as tfds_shuffle

from sdfjax import errors, storage
from sdfjax.data import layout
from sdfjax.render import camera

DATASET_NAME = "sdf_shapes"
VERSION = "1.0.0"


def tfds_dir(config) -> str:
    return config.data.tfds_dir or os.path.join(config.data.root, "tfds")


def _unreadable(path: str) -> str | None:
    """Why a shape's preprocessed files cannot be packed (a truncated or corrupt file), or None."""
    try:
        sdf = np.load(os.path.join(path, layout.SDF_SAMPLES), mmap_mode="r")
        surface = np.load(os.path.join(path, layout.SURFACE_SAMPLES), mmap_mode="r")
        with open(os.path.join(path, layout.NORMALIZATION)) as f:
            norm = json.load(f)
        float(norm["scale"]), np.asarray(norm["offset"], np.float32).reshape(3)
    except (OSError, ValueError, KeyError, TypeError, EOFError) as e:
        return f"unreadable preprocessed file ({type(e).__name__}: {e}); rerun with --overwrite"
    if sdf.ndim != 2 or sdf.shape[1] != 4 or surface.ndim != 2 or surface.shape[1] != 6:
        return f"preprocessed arrays of shapes {sdf.shape} and {surface.shape}; expected (N, 4) and (M, 6)"
    return None


def _scan_shapes(root: str) -> tuple[list[layout.ShapeInfo], list[tuple[str, str]]]:
    """(shapes ready to pack, [(obj_id, reason)] of shapes whose files exist but cannot be read).

    Ready: its SDF, surface and normalisation files exist and read back. Shapes without
    them (not preprocessed, or failed) are neither.
    """
    needed = (layout.SDF_SAMPLES, layout.SURFACE_SAMPLES, layout.NORMALIZATION)
    ready, unreadable = [], []
    for s in layout.read_metainfo(root):
        path = layout.shape_dir(root, s.obj_id)
        if not all(os.path.isfile(os.path.join(path, f)) for f in needed):
            continue
        reason = _unreadable(path)
        if reason is None:
            ready.append(s)
        else:
            unreadable.append((s.obj_id, reason))
    return ready, unreadable


def _render_shape(root: str, shapes: list[layout.ShapeInfo]) -> tuple[int, int, int] | None:
    """(V, H, W) when every shape has renders of one view set, else None (no image features)."""
    sizes = set()
    for s in shapes:
        path = os.path.join(layout.shape_dir(root, s.obj_id), layout.VIEWS)
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            views = json.load(f)["views"]
        sizes.add((len(views), views[0]["height"], views[0]["width"]))
    if len(sizes) != 1:
        raise errors.DataError(f"{root}: shapes were rendered with different view sets {sorted(sizes)}; "
                               "rerun python -m data_gen.preprocess with --overwrite")
    return sizes.pop()


def _read_renders(path: str) -> dict[str, np.ndarray]:
    with open(os.path.join(path, layout.VIEWS)) as f:
        views = json.load(f)["views"]
    return {
        "normal_maps": np.stack([storage.read_png(os.path.join(path, layout.normal_map_path(i)))
                                 for i in range(len(views))]),
        "sketches": np.stack([storage.read_png(os.path.join(path, layout.sketch_path(i))) for i in range(len(views))]),
        "views": np.asarray([[v["azimuth"], v["elevation"], v["distance"], v["focal"]] for v in views], np.float32),
    }


class SdfShapes(tfds.core.GeneratorBasedBuilder):
    """Preprocessed shapes of one dataset folder (`root`)."""

    VERSION = tfds.core.Version(VERSION)

    def __init__(self, root: str, shapes: list[layout.ShapeInfo], **kwargs):
        """`shapes`: the ready shapes to pack (`_scan_shapes`), read once by the caller."""
        self._root = root
        self._shapes = list(shapes)
        super().__init__(**kwargs)

    @classmethod
    def _get_builder_name(cls) -> str:  # noqa: D102 (TFDS hook)
        return DATASET_NAME

    def _info(self) -> tfds.core.DatasetInfo:
        shapes = self._shapes
        index = {split: [[s.obj_id, s.label] for s in shapes if s.split == split] for split in layout.SPLITS}
        features = {
            "obj_id": tfds.features.Text(),
            "label": tfds.features.Scalar(dtype=np.int64),
            "sdf_samples": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
            "surface_samples": tfds.features.Tensor(shape=(None, 6), dtype=np.float32),
            "offset": tfds.features.Tensor(shape=(3,), dtype=np.float32),
            "scale": tfds.features.Scalar(dtype=np.float32),
        }
        render_shape = _render_shape(self._root, shapes) if shapes else None
        if render_shape:
            v, h, w = render_shape
            features.update(normal_maps=tfds.features.Tensor(shape=(v, h, w, 3), dtype=np.uint8),
                            sketches=tfds.features.Tensor(shape=(v, h, w), dtype=np.uint8),
                            views=tfds.features.Tensor(shape=(v, 4), dtype=np.float32))
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"DeepSDF samples of the shapes in {self._root}",
            metadata=tfds.core.MetadataDict(index=index),
            # Records keep metainfo order, so `split_index` names each record without reading it.
            disable_shuffling=True,
            features=tfds.features.FeaturesDict(features),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        shapes = self._shapes
        return {split: self._generate_examples([s for s in shapes if s.split == split])
                for split in layout.SPLITS if any(s.split == split for s in shapes)}

    def _generate_examples(self, shapes):
        with_renders = "normal_maps" in self.info.features
        for s in shapes:
            path = layout.shape_dir(self._root, s.obj_id)
            with open(os.path.join(path, layout.NORMALIZATION)) as f:
                norm = json.load(f)
            renders = _read_renders(path) if with_renders else {}
            yield s.obj_id, {
                **renders,
                "obj_id": s.obj_id,
                "label": s.label,
                "sdf_samples": np.load(os.path.join(path, layout.SDF_SAMPLES)),
                "surface_samples": np.load(os.path.join(path, layout.SURFACE_SAMPLES)),
                "offset": np.asarray(norm["offset"], np.float32),
                "scale": np.float32(norm["scale"]),
            }


def dataset_path(config) -> str:
    return os.path.join(tfds_dir(config), DATASET_NAME, VERSION)


def _packed_bytes(root: str, shapes) -> int:
    """About how many bytes the shapes' records take: their arrays, and their images as raw uint8."""
    total = 0
    render = _render_shape(root, shapes)
    for s in shapes:
        path = layout.shape_dir(root, s.obj_id)
        total += sum(os.path.getsize(os.path.join(path, f)) for f in (layout.SDF_SAMPLES, layout.SURFACE_SAMPLES))
        if render:
            v, h, w = render
            total += v * h * w * 4  # normal map (3) and sketch (1) bytes per pixel
    return total


def _serialize_deterministically(serializer, example) -> bytes:
    """TFDS's record bytes with the proto's map entries in one order (its default order changes with each process's
    hash seed), so that the same shapes pack into the same bytes on any machine and runner."""
    return serializer.get_tf_example(example).SerializeToString(deterministic=True)


def pack_dataset(config, overwrite: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """Builds the array_record dataset of `config.data.root`.

    Returns (its folder, [(obj_id, reason)] of preprocessed shapes left out because a file
    of theirs cannot be read); the others are packed. An existing dataset is kept unless
    `overwrite`.
    """
    path = dataset_path(config)
    if os.path.isdir(path) and not overwrite:
        return path, []
    ready, unreadable = _scan_shapes(config.data.root)
    if not ready:
        raise errors.DataError(f"{config.data.root}: no preprocessed shapes to pack")
    # Build beside the old dataset, then swap, so a failed build keeps the old one.
    staging = tfds_dir(config) + ".building"
    shutil.rmtree(staging, ignore_errors=True)
    tfds.disable_progress_bar()  # preprocess shows its own progress
    builder = SdfShapes(config.data.root, ready, data_dir=staging, file_format="array_record")
    # TFDS spills a shuffle buffer over 1 GB to disk through tf.io.gfile, i.e. TensorFlow, which is
    # not a dependency (a 352-chair set at the cpu spec is 1.4 GB): keep the records in memory instead.
    needed = 2 * _packed_bytes(config.data.root, ready)
    with mock.patch.object(tfds_shuffle, "MAX_MEM_BUFFER_SIZE", max(tfds_shuffle.MAX_MEM_BUFFER_SIZE, needed)), \
            mock.patch.object(example_serializer.ExampleSerializer, "serialize_example", _serialize_deterministically):
        builder.download_and_prepare()
    old = tfds_dir(config) + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(tfds_dir(config)):
        os.replace(tfds_dir(config), old)
    os.replace(staging, tfds_dir(config))
    shutil.rmtree(old, ignore_errors=True)
    return path, unreadable


def split_index(config, split: str) -> tuple[list[str], list[int]]:
    """obj_ids and labels of the records of `split`, in record order (no record is read)."""
    data_source(config, split)  # checks that the split exists
    pairs = json.loads(storage.read_text(os.path.join(dataset_path(config), "metadata.json")))["index"][split]
    return [p[0] for p in pairs], [int(p[1]) for p in pairs]


def data_source(config, split: str, renders: bool = False):
    """Random-access source of one split: `len(src)`, `src[i]` -> dict of numpy arrays.

    With `renders` (callers that read the sketches, normal maps or views), the split's
    records must hold renders of config.render's view set (`check_views`).
    """
    path = dataset_path(config)
    if not storage.exists(path):  # config.data.tfds_dir may be a bucket (gs://...)
        raise errors.DataError(f"{path}: no TFDS dataset; run python -m data_gen.preprocess "
                               f"--config.data.root={config.data.root}")
    builder = tfds.builder_from_directory(path)
    if split not in builder.info.splits:
        raise errors.DataError(f"{path}: split {split!r} has no preprocessed shapes "
                               f"(splits: {list(builder.info.splits)})")
    source = builder.as_data_source(split=split)
    if renders and len(source):
        check_views(config, source[0], path)
    return source


def has_renders(config) -> bool:
    """Whether the dataset exists and was packed with renders (its records hold views, normal maps, sketches)."""
    path = dataset_path(config)
    return storage.exists(path) and "normal_maps" in tfds.builder_from_directory(path).info.features


def check_views(config, record: dict, where: str) -> None:
    """DataError, naming `where` and the command that re-renders it, unless `record` holds renders of
    config.render's views (azimuths, elevations and distance), so that images of two view sets never mix."""
    root = config.data.root
    rerender = (f"re-render them (the render stage alone): python -m data_gen.preprocess --config=<this config> "
                f"--config.data.root={root} --only=render,tfds")
    if "views" not in record:
        raise errors.DataError(f"{where}: the dataset has no sketches or normal maps; {rerender}")
    have = np.round(np.asarray(record["views"], np.float64)[:, :3], 3)
    want = np.round(np.asarray([[c.azimuth, c.elevation, c.distance]
                                for c in camera.views_from_config(config.render)], np.float64), 3)
    if have.shape != want.shape or not np.array_equal(have, want):
        raise errors.DataError(
            f"{where}: rendered from other views than config.render's ({len(have)} views, elevations "
            f"{sorted(set(have[:, 1].tolist()))} against {len(want)} views, elevations "
            f"{sorted(set(want[:, 1].tolist()))}: sdfjax.render.camera's positive elevations look from above); {rerender}")
