"""Host-side batches: DeepSDF's scenes x SDF samples, and the Siamese encoder's shapes x views.

Each process draws its own share of the scenes of a step from the TFDS data source
(random access), so hosts never read each other's shapes. Batches are a pure function of
(seed, step, process): a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import collections
import queue
import threading
from collections.abc import Iterator

import numpy as np

from sdfjax import errors
from sdfjax.render import camera as camera_lib


def split_by_sign(example: dict) -> tuple[np.ndarray, np.ndarray]:
    """A record's SDF samples (N, 4) split into (sdf >= 0, sdf < 0)."""
    samples = np.asarray(example["sdf_samples"], np.float32)
    return samples[samples[:, 3] >= 0], samples[samples[:, 3] < 0]


def images_and_views(example: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A record's (sketches (V, H, W), normal maps (V, H, W, 3), views (V, 4)); DataError if not rendered."""
    if "normal_maps" not in example:
        raise errors.DataError("the dataset has no sketches or normal maps; run python -m data_gen.preprocess "
                               "(its render stage) for every shape")
    return (np.asarray(example["sketches"]), np.asarray(example["normal_maps"]),
            np.asarray(example["views"], np.float32))


class ShapeCache:
    """What `read(record)` keeps of each shape, read on demand, least recently used evicted."""

    def __init__(self, source, max_shapes: int = 4096, read=split_by_sign):
        self._source = source
        self._read = read
        self._max = max_shapes
        self._cache: collections.OrderedDict[int, tuple[np.ndarray, np.ndarray]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int):
        with self._lock:
            if index in self._cache:
                self._cache.move_to_end(index)
                return self._cache[index]
        entry = self._read(self._source[index])
        with self._lock:
            self._cache[index] = entry
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return entry


class _ShapeBatcher:
    """Which shapes each step's batch holds, and batches built ahead in a thread.

    Step `s` belongs to epoch `s // steps_per_epoch`; each epoch visits the scenes in a
    fresh permutation (cycled when there are fewer scenes than a batch holds). Process
    `p` of `P` produces the p-th contiguous block of rows of the global batch, the block
    `jax.make_array_from_process_local_data` places there, so the global batch (and its
    random draws) is the same whatever the number of processes.
    """

    def __init__(self, labels: np.ndarray, scenes_per_batch: int, seed: int, process: tuple[int, int], field: str):
        """`process`: (this process's index, the process count); `field` names scenes_per_batch in errors."""
        process_index, process_count = process
        if scenes_per_batch % process_count:
            raise ValueError(f"{field}={scenes_per_batch} must divide by {process_count} processes")
        self.labels = np.asarray(labels, np.int32)  # latent row of each source index
        self.scenes_per_batch = scenes_per_batch
        self.seed, self.process_index, self.process_count = seed, process_index, process_count
        self.steps_per_epoch = max(1, len(self.labels) // scenes_per_batch)

    def scene_indices(self, step: int) -> np.ndarray:
        """Source indices of the global batch of `step`."""
        epoch, within = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))
        start = within * self.scenes_per_batch
        return np.take(order, np.arange(start, start + self.scenes_per_batch), mode="wrap")

    def local_scenes(self, step: int) -> tuple[int, np.ndarray]:
        """(row of the global batch where this process's block starts, its source indices)."""
        per_process = self.scenes_per_batch // self.process_count
        first = self.process_index * per_process
        return first, self.scene_indices(step)[first:first + per_process]

    def local_batch(self, step: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def iterate(self, first_step: int, last_step: int, prefetch: int = 2) -> Iterator[dict[str, np.ndarray]]:
        """Local batches of steps [first_step, last_step), built in a background thread."""
        out: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        stop = threading.Event()

        def work():
            try:
                for step in range(first_step, last_step):
                    if stop.is_set():
                        return
                    out.put(self.local_batch(step))
            except BaseException as e:  # hand the error to the consumer  # noqa: BLE001
                out.put(e)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            for _ in range(first_step, last_step):
                item = out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    out.get_nowait()
                except queue.Empty:
                    thread.join(0.05)


class SceneBatcher(_ShapeBatcher):
    """DeepSDF batches: `scenes_per_batch` scenes x `samples_per_scene` samples, half of each sign
    (config.train's sizes)."""

    def __init__(self, source, labels: np.ndarray, train_config, seed: int, process: tuple[int, int] = (0, 1)):
        tc = train_config
        super().__init__(labels, tc.scenes_per_batch, seed, process, "train.scenes_per_batch")
        if tc.samples_per_scene % 2:
            raise ValueError(f"train.samples_per_scene={tc.samples_per_scene} must be even (half positive)")
        self.shapes = ShapeCache(source, tc.get("cache_shapes", 4096))
        self.samples_per_scene = tc.samples_per_scene

    def local_batch(self, step: int) -> dict[str, np.ndarray]:
        first, scenes = self.local_scenes(step)
        half = self.samples_per_scene // 2
        xyz = np.empty((len(scenes), self.samples_per_scene, 3), np.float32)
        sdf = np.empty((len(scenes), self.samples_per_scene), np.float32)
        for row, index in enumerate(scenes):
            # One generator per (step, row of the global batch): independent of the process count.
            rng = np.random.default_rng([self.seed, step, first + row, 1])
            pos, neg = self.shapes[int(index)]
            # DeepSDF draws with replacement; a shape with no negative (open) samples uses positives.
            picked = np.concatenate([pos[rng.integers(len(pos), size=half)] if len(pos) else neg[:0],
                                     neg[rng.integers(len(neg), size=half)] if len(neg) else pos[:0]])
            if len(picked) < self.samples_per_scene:
                pool = pos if len(pos) else neg
                picked = pool[rng.integers(len(pool), size=self.samples_per_scene)]
            xyz[row], sdf[row] = picked[:, :3], picked[:, 3]
        return {"labels": self.labels[scenes], "xyz": xyz, "sdf": sdf}


class ViewBatcher(_ShapeBatcher):
    """Siamese batches: `shapes_per_batch` shapes x `views_per_shape` views, a sketch and a normal map each.

    local_batch(step) = {"sketches" (B, H, W) uint8, "normal_maps" (B, H, W, 3) uint8,
    "labels" (B,) int32, "rights" (B, 3) float32: the camera's right vector of each view,
    which a horizontal flip of a normal map needs, "view_angles" (B, 2) float32: each view's
    azimuth and elevation in degrees}, B = this process's shapes x K. The sizes come from a
    config section (`section_name`: siamese or encoder).
    """

    def __init__(self, source, labels: np.ndarray, section, seed: int, process: tuple[int, int] = (0, 1),
                 view_subset=None, section_name: str = "siamese"):
        super().__init__(labels, section.shapes_per_batch, seed, process, f"{section_name}.shapes_per_batch")
        self.shapes = ShapeCache(source, section.get("cache_shapes", 2048), read=images_and_views)
        self.views_per_shape = section.views_per_shape
        self.view_subset = None if view_subset is None else np.asarray(view_subset, np.int64)  # None: every view

    def local_batch(self, step: int) -> dict[str, np.ndarray]:
        first, scenes = self.local_scenes(step)
        sketches, normal_maps, labels, rights, angles = [], [], [], [], []
        for row, index in enumerate(scenes):
            rng = np.random.default_rng([self.seed, step, first + row, 2])
            shape_sketches, shape_normals, views = self.shapes[int(index)]
            allowed = np.arange(len(views)) if self.view_subset is None else self.view_subset
            picked = allowed[rng.choice(len(allowed), self.views_per_shape, replace=self.views_per_shape > len(allowed))]
            sketches.append(shape_sketches[picked])
            normal_maps.append(shape_normals[picked])
            labels.append(np.full(len(picked), self.labels[index], np.int32))
            rights.extend(camera_lib.Camera(float(views[v, 0]), float(views[v, 1])).axes()[1] for v in picked)
            angles.append(views[picked, :2])
        return {"sketches": np.concatenate(sketches), "normal_maps": np.concatenate(normal_maps),
                "labels": np.concatenate(labels), "rights": np.asarray(rights, np.float32),
                "view_angles": np.concatenate(angles).astype(np.float32)}
