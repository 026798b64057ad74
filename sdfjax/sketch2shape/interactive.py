"""Sketch to shape for one object at a time, compiled once: what a web page or a benchmark calls.

    s2s = SketchToShape(config, workdir)                 # loads the models, compiles every step
    sketch = s2s.frame(grey, camera)                      # a user's drawing (H, W) in [0, 1] -> (R, R) uint8
    z0 = s2s.encode(sketches, cameras)                    # (V, R, R) uint8 -> (L,): the encoder's guess
    z = s2s.refine(sketches, cameras, z0, on_step=print)  # the refinement of sdfjax.sketch2shape.optimize
    mesh = s2s.mesh(z, resolution=64)                     # trimesh.Trimesh (normalised frame) or None
    image = s2s.normal_map(z, camera)                     # (H, W, 3) uint8
    images = s2s.normal_maps(z, cameras)                  # (V, H, W, 3) uint8, same-size cameras

Same models, loss and best-iterate rule as the batch driver (sdfjax.sketch2shape.optimize),
for a batch of one object, so the page's answer is the evaluated method's answer.
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np

from sdfjax import trained as trained_lib
from sdfjax.fit import meshing
from sdfjax.fit.folded import fold_decoder
from sdfjax.render import camera as camera_lib
from sdfjax.render import latent_render, pictures, tracer
from sdfjax.sketch2shape import optimize
from sdfjax.sketch2shape.encoders import embedder, normal_map_encoder
from sdfjax.sketch2shape.losses import gaussian_prior
from sdfjax.sketch2shape.sketches import normalize_sketch


# Voxels per side of the mesh shown first (the encoder's shape, before refinement): coarse enough
# to be on screen within the page's 2 s; the refined shape is meshed at config.mesh.
QUICK_MESH_RESOLUTION = 48


class SketchToShape:
    """The trained DeepSDF run of `workdir` with its Siamese and sketch-to-latent encoders, ready to shape sketches."""

    def __init__(self, config, workdir: str, warm_views: tuple[int, ...] = (1,),
                 warm_renders: tuple[tuple[int, int], ...] = (), warm_mesh_resolutions: tuple[int, ...] = ()):
        """Loads the run and compiles refinement for each count of views in `warm_views`, rendering for each
        (number of cameras, resolution) in `warm_renders` and at the sketches' resolution, and meshing at
        config.mesh and `warm_mesh_resolutions`."""
        self.config = config
        self.trained = trained_lib.load_trained(config, workdir)
        self.siamese, self.siamese_params, meta = trained_lib.load_siamese(workdir)
        self.resolution = int(meta["resolution"])
        self.predict = optimize.encoder_predictor(config, workdir, self.resolution, batch=4)
        self.embed = embedder(self.siamese, self.siamese_params, "sketch", batch=4)
        self.settings = tracer.TraceSettings.from_config(config.render)
        self.sdf_fn = latent_render.decoder_sdf(self.trained.decoder)
        self.prior = {k: jnp.asarray(a) for k, a in
                      gaussian_prior(self.trained.latents, config.sketch.prior_shrinkage).items()}
        self.optimizer, self.step = optimize.config_step(
            config, self.sdf_fn, normal_map_encoder(self.siamese, self.siamese_params), self.resolution)
        self.folded = fold_decoder(self.trained.decoder, self.trained.params)
        self._render = latent_render.views_renderer(self.sdf_fn, self.settings)
        self._hits = optimize.silhouette_renderer(self.sdf_fn, self.settings)  # framing
        mean = self.trained.latents.mean(axis=0)
        for views in warm_views:  # compile now, not on a user's first click
            blank = np.full((views, self.resolution, self.resolution), 255, np.uint8)
            blank[:, self.resolution // 4, self.resolution // 4:-self.resolution // 4] = 0
            camera = self.camera(0.0, 10.0)
            z = self.encode(blank, [camera] * views)
            self.refine(blank, [camera] * views, z, iterations=1)
        line = np.ones((self.resolution, self.resolution), np.float32)
        line[self.resolution // 4, self.resolution // 4:-self.resolution // 4] = 0.0
        self.frame(line, self.camera(0.0, 10.0))  # with user_framing="fit", its trace compiles now too
        # Each (count, resolution) compiles once; the sketches' own size is always rendered (the refined view).
        for count, resolution in sorted({(1, self.resolution), *warm_renders}):
            self.normal_maps(mean, [self.camera(0.0, 10.0, resolution)] * count)
        for resolution in (None, *warm_mesh_resolutions):
            self.mesh(mean, resolution)

    def camera(self, azimuth: float, elevation: float, resolution: int | None = None) -> camera_lib.Camera:
        """The dataset's camera (config.render distance and focal length) at `resolution` (default the sketches')."""
        r = self.config.render
        return camera_lib.Camera(float(azimuth), float(elevation), r.distance, r.focal, r.resolution,
                                 r.resolution).scaled(resolution or self.resolution)

    def frame(self, grey: np.ndarray, camera: camera_lib.Camera, name: str = "sketch",
              fit: bool = True) -> np.ndarray:
        """A user's drawing (H, W) in [0, 1] seen from `camera` -> the sketch the models read (R, R) uint8:
        framed at config.sketch.fill, or, with config.sketch.user_framing="fit" and `fit`, where the encoder's shape
        agrees with it (sdfjax.sketch2shape.optimize.framed_drawings)."""
        if not fit or optimize.user_framing(self.config.sketch) == "fixed":
            return normalize_sketch(grey, self.resolution, self.config.sketch.fill, name=name)
        return optimize.framed_drawings([grey], [camera], self.predict, self._hits, self.trained.params, name)[0][0]

    def encode(self, sketches: np.ndarray, cameras: list[camera_lib.Camera]) -> np.ndarray:
        """(L,) latent: the mean of the encoder's latents of the object's sketches (V, R, R) drawn from `cameras`."""
        return self.predict(np.asarray(sketches), camera_lib.view_angles(cameras)).mean(axis=0)

    def refine(self, sketches: np.ndarray, cameras: list[camera_lib.Camera], z0: np.ndarray,
               iterations: int | None = None, on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
        """The refined latent (L,) of one object's sketches (V, R, R) seen from `cameras`, starting at z0.

        `on_step(done, total)` reports progress after each optimiser step.
        """
        sketches = np.asarray(sketches)
        iterations = self.config.sketch.iterations if iterations is None else iterations
        z0 = np.asarray(z0, np.float32)
        views = {k: jnp.asarray(a) for k, a in optimize.object_views(
            sketches[None], [list(cameras)], self.embed(sketches)[None], self.config.sketch).items()}
        done = [0]

        def step_done():
            done[0] += 1
            if on_step is not None:
                on_step(done[0], iterations + 1)

        best, _ = optimize.optimize_batch((self.optimizer, self.step), self.trained.params, self.prior, z0[None], views,
                                          iterations, step_done, float(self.config.sketch.get("min_improvement", 0.0)))
        return best[0]

    def mesh(self, z: np.ndarray, resolution: int | None = None):
        """The mesh of latent z at config.mesh, or at `resolution` voxels per side (normalised frame); None when
        it has no surface."""
        return meshing.mesh_of_latent(self.config, self.folded, np.asarray(z, np.float32), resolution)

    def normal_map(self, z: np.ndarray, camera: camera_lib.Camera) -> np.ndarray:
        """(H, W, 3) uint8 normal map of latent z from `camera` (white background)."""
        return self.normal_maps(z, [camera])[0]

    def normal_maps(self, z: np.ndarray, cameras: list[camera_lib.Camera]) -> np.ndarray:
        """(V, H, W, 3) uint8 normal maps of latent z from same-size `cameras` (white background), one trace."""
        return pictures.to_uint8(latent_render.render_normal_maps(
            self._render, {"decoder": self.trained.params, "z": jnp.asarray(z, jnp.float32)}, cameras))
