"""More shapes for the sketch encoder than there are training meshes: latents sampled from the trained table.

    latents = sample_latents(table, 512, seed=0)                       # (512, L)
    sketches, hit = sketches_of_latents(decoder, params, latents, cameras, settings)   # (512, V, R, R) uint8
    cache = SampledSketches.load_or_make(path, ...)                     # the same, kept in the encoder's folder

Sketch2Shape's encoder sees one sketch per (shape, view) of the training meshes. Here new
shapes come from the decoder itself: half of them on the segment between two trained
latents (z = (1 - t) z_a + t z_b, t ~ U(0, 1)), half drawn from a Gaussian fitted to the
table (its mean and covariance, shrunk towards the mean variance as in
sdfjax.sketch2shape.losses.gaussian_prior). Each is sphere-traced (sdfjax.render.tracer)
from dataset views and turned into a sketch exactly as a mesh is in preprocessing
(sdfjax.render.edges.sketch_from_render on the normal map, depth and hit mask), and its
target is the latent it was rendered from. A draw whose render is nearly empty (the
decoder has no surface there) is dropped.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from sdfjax import io
from sdfjax.render import camera as camera_lib
from sdfjax.render import edges, latent_render, tracer
from sdfjax.render.mesh_caster import normal_map_uint8
from sdfjax.sketch2shape.losses import shrunk_gaussian

MIN_HIT_FRACTION = 0.01  # a render with fewer object pixels is no chair
SHARE_UNITS = 1_000_000  # the interpolation share is kept in the cache's integer source record in these units


def sample_latents(table: np.ndarray, count: int, seed: int, interpolation_share: float = 0.5,
                   shrinkage: float = 0.1) -> np.ndarray:
    """(count, L) float32: interpolations between random pairs of rows of `table` (T, L), then Gaussian draws."""
    table = np.asarray(table, np.float64)
    rng = np.random.default_rng([seed, 5])
    num_interp = int(round(count * interpolation_share)) if len(table) > 1 else 0
    a = rng.integers(len(table), size=num_interp)
    b = (a + rng.integers(1, len(table), size=num_interp)) % len(table)  # another row than a
    t = rng.uniform(size=(num_interp, 1))
    interpolated = (1.0 - t) * table[a] + t * table[b]
    mean, cov = shrunk_gaussian(table, shrinkage)
    drawn = rng.multivariate_normal(mean, cov, size=count - num_interp, method="eigh")
    return np.concatenate([interpolated, drawn]).astype(np.float32)


def sketches_of_latents(decoder, decoder_params, latents: np.ndarray, cameras: Sequence[camera_lib.Camera],
                        settings: tracer.TraceSettings, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(sketches (N, V, H, W) uint8, hit fractions (N, V)) of each latent from each camera (same size)."""
    render = latent_render.views_renderer(latent_render.decoder_sdf(decoder, relu_grad_beta=0.0), settings)
    origins, directions = camera_lib.stack_rays(cameras)
    h, w = cameras[0].height, cameras[0].width
    sketches = np.empty((len(latents), len(cameras), h, w), np.uint8)
    hit_fraction = np.empty((len(latents), len(cameras)), np.float32)
    for i in tqdm(range(len(latents)), desc="render sampled shapes", unit="shape", disable=not progress):
        out = jax.device_get(render({"decoder": decoder_params, "z": jnp.asarray(latents[i])}, origins, directions))
        for v, camera in enumerate(cameras):
            hit = np.asarray(out["hit"][v])
            normal_map = normal_map_uint8(np.asarray(out["normals"][v]), hit, camera)
            sketches[i, v] = edges.sketch_from_render(normal_map, np.asarray(out["depth"][v]).reshape(h, w),
                                                      hit.reshape(h, w))
            hit_fraction[i, v] = hit.mean()
    return sketches, hit_fraction


@dataclasses.dataclass
class SampledSketches:
    """Sketches of sampled latents: `sketches` (N, V, H, W) uint8 from dataset views `views` (V,), `latents` (N, L)."""

    latents: np.ndarray
    sketches: np.ndarray
    views: np.ndarray

    FILE = "sampled_sketches.npz"

    @classmethod
    def load_or_make(cls, folder: str, table: np.ndarray, count: int, view_indices: Sequence[int], cameras,
                     decoder, decoder_params, settings: tracer.TraceSettings, seed: int,
                     interpolation_share: float = 0.5, progress: bool = False) -> "SampledSketches":
        """The set in `folder` when it was made from the same table, count, seed, share and views, else made
        (and saved) now."""
        path = io.join(folder, cls.FILE)
        views = np.asarray(view_indices, np.int64)
        source = np.asarray([zlib.crc32(np.ascontiguousarray(table, np.float32).tobytes()), count, seed,
                             round(interpolation_share * SHARE_UNITS)], np.int64)
        if io.exists(path):
            saved = io.load_npz(path)
            if np.array_equal(saved["source"], source) and np.array_equal(saved["views"], views):
                return cls(saved["latents"], saved["sketches"], saved["views"])
        latents = sample_latents(table, count, seed, interpolation_share)
        sketches, hit = sketches_of_latents(decoder, decoder_params, latents, [cameras[v] for v in views], settings,
                                            progress)
        keep = hit.min(axis=1) >= MIN_HIT_FRACTION
        result = cls(latents[keep], sketches[keep], views)
        io.save_npz(path, latents=result.latents, sketches=result.sketches, views=views, source=source)
        return result

    def batch(self, step: int, count: int, seed: int, process_index: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sketches (count, H, W), rows (count,), the dataset view index of each (count,)) drawn at random
        (seeded by step and process)."""
        rng = np.random.default_rng([seed, step, process_index, 3])
        rows = rng.integers(len(self.latents), size=count)
        columns = rng.integers(len(self.views), size=count)
        return self.sketches[rows, columns], rows.astype(np.int32), self.views[columns]
