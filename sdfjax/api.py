"""The Python API: a trained model in a few lines, from any folder (docs/api.md).

    import sdfjax
    model = sdfjax.load_pretrained("pretrained/chairs256_cpu")    # a shipped model or a training run's folder
    z = model.latents.mean(axis=0)                                 # (L,): the trained table's mean
    mesh = model.mesh(z, resolution=128)                           # trimesh.Trimesh, normalised frame
    d = model.sdf(z, xyz)                                          # (N,) signed distances at (N, 3) points
    z_fit = model.fit(samples=sdf_samples)                         # DeepSDF reconstruction from (N, 4) samples
    z_fit = model.fit(points=xyz, normals=n)                       # ... or from surface points with normals
    shape = model.fit_scan(sdfjax.read_point_scan("scan.ply"))     # your own scan: shape.mesh in its units
    shape = model.sketch_to_shape("chair.png", azimuth=40, elevation=20)   # shape.latent, shape.mesh

Coordinates are in the model's normalised frame (DeepSDF's: the training shapes centred
and scaled into the unit sphere); angles in degrees, in the camera convention of
sdfjax.render.camera. The config is the folder's own (config.json, or the one training
stored in its checkpoint), read as data; pass `config=` to override it.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
import trimesh

from sdfjax import config_files, shipped
from sdfjax import trained as trained_lib
from sdfjax.fit import meshing, partial, reconstruct, scans, sdf_fit
from sdfjax.fit.folded import fold_decoder
from sdfjax.fit.scans import DepthScan, Intrinsics, read_depth_image, read_point_scan  # noqa: F401 (sdfjax.<name>)
from sdfjax.sketch2shape import sketches as sketches_lib
from sdfjax.sketch2shape.interactive import SketchToShape


@dataclasses.dataclass
class SketchShape:
    """What `Model.sketch_to_shape` returns: the refined latent, its mesh, and the encoder's start."""

    latent: np.ndarray  # (L,)
    mesh: trimesh.Trimesh | None  # normalised frame; None when the latent's SDF has no surface
    encoder_latent: np.ndarray  # (L,): the sketch-to-latent encoder's guess, before refinement
    sketch: np.ndarray  # (R, R) uint8: the drawing as the models read it (framed, resampled)


@dataclasses.dataclass
class ScanShape:
    """What `Model.fit_scan` returns: the fitted latent, the frame between the scan and the model, the mesh."""

    latent: np.ndarray  # (L,)
    frame: object  # sdfjax.geometry.mesh.Normalization: scan frame -> normalised frame
    mesh: trimesh.Trimesh | None  # the scan's frame and units; None when the latent's SDF has no surface
    fit_loss: float


class Model:
    """A trained DeepSDF decoder with its latent table and, where the folder has them, the sketch models."""

    def __init__(self, config, folder: str):
        self.config = config
        self.folder = folder
        self._trained = trained_lib.load_trained(config, folder)
        self._folded = fold_decoder(self._trained.decoder, self._trained.params)
        self._sketch_models: SketchToShape | None = None  # loaded and compiled on the first sketch

    @property
    def latents(self) -> np.ndarray:
        """(T, L) the trained latents of the training shapes, in label order."""
        return self._trained.latents

    @property
    def obj_ids(self) -> list[str]:
        """The training shape of each row of `latents`."""
        return list(self._trained.obj_ids)

    @property
    def latent_dim(self) -> int:
        return int(self._trained.latents.shape[1])

    def _latent(self, z) -> np.ndarray:
        z = np.asarray(z, np.float32)
        if z.shape != (self.latent_dim,):
            raise ValueError(f"latent: expected shape ({self.latent_dim},), got {z.shape}")
        return z

    def sdf(self, z, xyz) -> np.ndarray:
        """(N,) float32 signed distances of latent z (L,) at points xyz (N, 3), normalised frame (Eq. 9's f)."""
        xyz = np.asarray(xyz, np.float32)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise ValueError(f"xyz: expected (N, 3) points, got shape {xyz.shape}")
        fn = meshing.decoder_sdf_fn(self._folded, self._latent(z), self.config.mesh.chunk,
                                    self.config.model.get("fourier_frequencies", 0))
        return np.asarray(fn(xyz), np.float32)

    def mesh(self, z, resolution: int | None = None) -> trimesh.Trimesh | None:
        """The zero level set of latent z by marching cubes, at `resolution` voxels per side (default
        config.mesh.resolution), in the normalised frame; None when the SDF has no surface."""
        return meshing.mesh_of_latent(self.config, self._folded, self._latent(z), resolution)

    def fit(self, samples=None, *, points=None, normals=None, iterations: int | None = None,
            seed: int = 0) -> np.ndarray:
        """DeepSDF reconstruction (Sec. 4.2, Eq. 10): the latent (L,) whose SDF best explains the observations,
        the decoder frozen, started from the mean trained latent.

        Either `samples` (N, 4): points and their signed distances (as a dataset's sdf_samples), or
        `points` (N, 3) on the surface with outward `normals` (N, 3): a scan, turned into samples along the
        normals and in free space, signed by the nearest point's normal (sdfjax.fit.partial.oriented_point_samples).
        `iterations` defaults to config.fit.num_iterations.
        """
        if (samples is None) == (points is None):
            raise ValueError("fit: give samples=(N, 4) SDF samples, or points=(N, 3) with normals=(N, 3)")
        if points is not None:
            observations = partial.oriented_point_samples(points, normals)
        else:
            observations = np.asarray(samples, np.float32)
            if observations.ndim != 2 or observations.shape[1] != 4 or not len(observations):
                raise ValueError(f"samples: expected (N, 4) x, y, z, sdf rows, got shape {observations.shape}")
            if not np.isfinite(observations).all():
                raise ValueError("samples: some values are NaN or infinite")
        settings = sdf_fit.FitSettings.from_config(self.config)
        if iterations is not None:
            settings = dataclasses.replace(settings, num_iterations=int(iterations))
        initial = self.latents.mean(axis=0)[None, None]
        result = sdf_fit.fit_latents(self._folded, sdf_fit.ShapeSamples.from_list([observations]), initial,
                                     settings, jax.random.key(seed))
        return result.latents[0]

    def fit_scan(self, scan, frame=None, iterations: int | None = None) -> ScanShape:
        """DeepSDF reconstruction of your own scan, in its own frame and units (sdfjax.fit.scans): `scan` is a
        `scans.PointScan` (surface points with normals; `read_point_scan(path)`) or a `scans.DepthScan` (one
        depth image, its intrinsics and view); `frame` (a geometry.mesh.Normalization from the scan's frame
        to the model's) defaults to one estimated from the scan. ScanError names what is wrong with a scan."""
        config = self.config
        if iterations is not None:
            config = config.copy_and_resolve_references()
            config.fit.num_iterations = int(iterations)
        observations, frame = scans.observe(scan, frame, seed=int(config.seed))
        latent, fit_loss = reconstruct.fit_observations(config, self._folded, self.latents.mean(axis=0), observations)
        mesh, _ = reconstruct.scan_mesh(config, self._folded, latent, frame)
        return ScanShape(latent, frame, mesh, fit_loss)

    def sketch_to_shape(self, image, azimuth: float, elevation: float, refine: bool = True,
                        resolution: int | None = None) -> SketchShape:
        """A drawing of one object seen from (azimuth, elevation) degrees -> its shape: the sketch-to-latent
        encoder's latent, refined (with `refine`) until the latent's renders match the drawing
        (sdfjax.sketch2shape.optimize), then meshed at `resolution` (default config.mesh.resolution).

        `image`: a file path (str or os.PathLike), or an array (H, W) grey in [0, 1] or uint8 grey/RGB/RGBA, dark lines on white.
        The first call loads the Siamese and sketch encoders and compiles the refinement (a minute on a CPU).
        """
        grey = sketches_lib.load_image(os.fspath(image)) if isinstance(image, (str, os.PathLike)) else _grey(image)
        if self._sketch_models is None:
            self._sketch_models = SketchToShape(self.config, self.folder)
        s2s = self._sketch_models
        camera = s2s.camera(float(azimuth), float(elevation))
        sketch = s2s.frame(grey, camera)
        z0 = s2s.encode(sketch[None], [camera])
        z = s2s.refine(sketch[None], [camera], z0) if refine else z0
        return SketchShape(latent=np.asarray(z, np.float32), mesh=self.mesh(z, resolution),
                           encoder_latent=np.asarray(z0, np.float32), sketch=sketch)


def _grey(image) -> np.ndarray:
    """An array drawing as (H, W) grey in [0, 1]: float grey kept, uint8 grey/RGB/RGBA through the page's rule."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return sketches_lib.grey_of_pixels(array)
    if array.ndim != 2:
        raise ValueError(f"image: a float array must be (H, W) grey in [0, 1], got shape {array.shape}")
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def load_pretrained(path: str, config=None) -> Model:
    """The model in `path`: an exported folder (checked against its manifest first) or a training run's folder,
    with its own config unless `config` (a ConfigDict or a spec such as "chair16:cpu") is given.

    Raises ValueError (errors.DataError for damaged files) naming the folder when it holds no model.
    """
    if shipped.is_export(path):
        shipped.verify(path)
    if isinstance(config, str):
        config = config_files.load(config)
    if config is None:
        config = config_files.saved(path)
        if config is None:
            raise ValueError(f"{path}: neither an exported model nor a training run (no config.json, no DeepSDF "
                             "checkpoint)")
    return Model(config, path)
