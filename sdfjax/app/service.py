"""What the page asks of the models, as plain Python over arrays and files (no web framework here).

    service = ShapeService(config, workdir)                  # loads the run, compiles every step once
    view = service.view_of(canvas, "sketch 1", 30, 10)     # a drawing seen from there, framed as the models read it
    preview = service.preview(azimuth, elevation)           # the mean chair from that view (what to draw)
    guess = service.guess([view])                            # the encoder's normal map, while drawing
    for shape in service.shape(views, on_step):             # the encoder's shape, then the refined one
        shape.normal_maps, shape.files["obj"], shape.message

The encoder's shape comes first, from the sketch's view only and with a coarse mesh
(`quick_mesh_resolution`), so it is on screen at once; refinement then reports each step
through `on_step(done, total)`, and the refined shape comes with the other views and a mesh
at config.mesh. The live guess is rendered at the sketches' resolution. Every request
writes its own folder of files. Requests may run at once: refinements (the long part) take
turns behind one lock, so a request's encoder shape never waits for another's refinement.
`on_step` may raise `Cancelled` (its user has gone): the refinement stops at that step and
the request ends after its encoder shape.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np

from sdfjax import errors
from sdfjax.render.pictures import shaded_mesh, to_uint8
from sdfjax.sketch2shape.interactive import QUICK_MESH_RESOLUTION, SketchToShape
from sdfjax.sketch2shape.sketches import MAX_PIXELS, grey_of_pixels, load_image


class Cancelled(Exception):
    """Raised by a request's `on_step` when nobody waits for its answer any more."""


OTHER_AZIMUTHS = (90.0, 180.0, 270.0)  # added to the sketch's azimuth for the "other views" row
OTHER_ELEVATION = 20.0
PREVIEW_CACHE = 256  # views' previews kept (one per whole degree asked for)
KEEP_ANSWERS = 64  # requests whose files (meshes, latents) stay in the output folder; older ones are removed


def checked_view(azimuth, elevation, name: str) -> tuple[float, float]:
    """(azimuth, elevation) as floats in degrees; errors.DataError naming `name` when either is not a finite number
    or the elevation lies outside [-90, 90] (a slider's value sent by hand, NaN included)."""
    try:
        azimuth, elevation = float(azimuth), float(elevation)
    except (TypeError, ValueError):
        raise errors.DataError(f"{name}: the view's azimuth and elevation must be numbers") from None
    if not (np.isfinite(azimuth) and np.isfinite(elevation)) or abs(elevation) > 90:
        raise errors.DataError(f"{name}: azimuth {azimuth} and elevation {elevation} are no view "
                               "(finite degrees, elevation within [-90, 90])")
    return azimuth, elevation


@dataclasses.dataclass(frozen=True)
class View:
    """One sketch of the object: the normalised sketch (R, R) uint8 and its camera angles in degrees."""

    sketch: np.ndarray
    azimuth: float
    elevation: float


@dataclasses.dataclass
class Shape:
    """One answer: `stage` "encoder" or "refined", with its latent, pictures, files and timings."""

    stage: str
    latent: np.ndarray  # (L,)
    normal_maps: np.ndarray  # (V, D, D, 3) uint8: the first sketch's view, then (refined) len(OTHER_AZIMUTHS) others
    files: dict[str, str]  # "obj", "ply", "glb" (absent when the shape is empty) and "latent" -> path
    vertices: int
    message: str


class ShapeService:
    """A trained run (or the shipped model) behind the page; safe to call from several threads."""

    def __init__(self, config, workdir: str, max_views: int = 3, display_resolution: int | None = None,
                 quick_mesh_resolution: int = QUICK_MESH_RESOLUTION, out_root: str | None = None,
                 warm_views: int | None = None):
        """`warm_views`: the refinement is compiled at start-up for 1..warm_views sketches (default
        max_views); more sketches compile on their first request instead (a faster start)."""
        self.config = config
        self.max_views = int(max_views)
        warm_views = self.max_views if warm_views is None else min(max(int(warm_views), 1), self.max_views)
        self.display_resolution = int(display_resolution or config.render.preview_resolution)
        self.quick_mesh_resolution = int(quick_mesh_resolution)
        self.model = SketchToShape(config, workdir, warm_views=tuple(range(1, warm_views + 1)),
                                   warm_renders=((1, self.display_resolution), (1 + len(OTHER_AZIMUTHS),
                                                                                self.display_resolution),
                                                 (1, config.render.resolution)),
                                   warm_mesh_resolutions=(self.quick_mesh_resolution,))
        self.resolution = self.model.resolution
        self.mean_latent = self.model.trained.latents.mean(axis=0)
        self.out_root = out_root or tempfile.mkdtemp(prefix="sdfjax_app_")
        # One refinement at a time: two would share the CPU and both finish late.
        self._refine_turn = threading.Lock()
        self._mean_view = functools.lru_cache(maxsize=PREVIEW_CACHE)(
            lambda azimuth, elevation: self.model.normal_map(self.mean_latent,
                                                             self.model.camera(azimuth, elevation,
                                                                               self.display_resolution)))

    def preview(self, azimuth: float, elevation: float) -> np.ndarray:
        """(D, D, 3) uint8: the mean trained chair's normal map from this view (cached per whole degree)."""
        azimuth, elevation = checked_view(azimuth, elevation, "the preview")
        return self._mean_view(round(azimuth) % 360, round(elevation))

    def view_of(self, drawing: np.ndarray | None, name: str, azimuth: float, elevation: float,
                framed: bool = True) -> View:
        """A drawing (H, W) or (H, W, C) uint8, dark lines on light, seen from (azimuth, elevation) in degrees ->
        its View, the sketch framed as config.sketch.user_framing says (SketchToShape.frame), or with `framed`
        False at config.sketch.fill (no encoder or tracer run: the page's live guess).

        Raises errors.DataError naming `name` when there is no drawing, it is blank or not a line drawing.
        """
        azimuth, elevation = checked_view(azimuth, elevation, name)
        grey = self._grey(drawing, name)
        camera = self.model.camera(azimuth, elevation)
        return View(self.model.frame(grey, camera, name, fit=framed), float(azimuth), float(elevation))

    @staticmethod
    def _grey(drawing: np.ndarray | None, name: str) -> np.ndarray:
        """(H, W) grey in [0, 1] of a drawing, errors.DataError naming `name` when it is missing or too large."""
        if drawing is None:
            raise errors.DataError(f"{name}: nothing drawn")
        try:
            grey = grey_of_pixels(drawing)
        except errors.DataError as e:
            raise errors.DataError(f"{name}: {e}") from None
        if grey.size > MAX_PIXELS:
            raise errors.DataError(f"{name}: {grey.shape[1]} x {grey.shape[0]} pixels is more than a sketch may have")
        return grey

    @staticmethod
    def read_upload(path: str) -> np.ndarray:
        """An uploaded sketch file as (H, W) uint8 grey for the canvas; errors.DataError naming the file when it
        is not an image, too large or a decompression bomb (checked before decoding)."""
        return to_uint8(load_image(path))

    def _cameras(self, views: list[View], resolution: int):
        return [self.model.camera(v.azimuth, v.elevation, resolution) for v in views]

    def _display_cameras(self, view: View):
        first = self.model.camera(view.azimuth, view.elevation, self.display_resolution)
        return [first] + [self.model.camera((view.azimuth + d) % 360, OTHER_ELEVATION, self.display_resolution)
                          for d in OTHER_AZIMUTHS]

    def _check(self, views: list[View]) -> None:
        if not views:
            raise errors.DataError("draw a sketch (or upload one) first")
        if len(views) > self.max_views:
            raise errors.DataError(f"{len(views)} sketches: this page takes at most {self.max_views}")

    def guess(self, views: list[View]) -> np.ndarray:
        """(R, R, 3) uint8: the encoder's shape from the first sketch's view (no refinement, no mesh)."""
        self._check(views)
        z = self.model.encode(np.stack([v.sketch for v in views]), self._cameras(views, self.resolution))
        return self.model.normal_map(z, self._cameras(views[:1], self.config.render.resolution)[0])

    def shape(self, views: list[View], on_step: Callable[[int, int], None] | None = None) -> Iterator[Shape]:
        """Yields the encoder's shape (coarse mesh), then the refined one (config.mesh), each with its files.

        The refinement waits for any other request's refinement to finish; the encoder's shape does not. When
        `on_step` raises Cancelled, the refinement stops there and nothing more is yielded.
        """
        self._check(views)
        start = time.monotonic()
        out = os.path.join(self.out_root, f"{time.time_ns()}-{uuid.uuid4().hex[:8]}")
        self._remove_old_answers()
        sketches = np.stack([v.sketch for v in views])
        cameras = self._cameras(views, self.resolution)
        z0 = self.model.encode(sketches, cameras)
        yield self._answer("encoder", z0, views, out, start, self.quick_mesh_resolution, other_views=False)
        try:
            with self._refine_turn:
                z = self.model.refine(sketches, cameras, z0, on_step=on_step)
        except Cancelled:
            return
        yield self._answer("refined", z, views, out, start, None, other_views=True)

    def _remove_old_answers(self) -> None:
        """Keeps the KEEP_ANSWERS newest requests' folders under out_root (named by their start time)."""
        with contextlib.suppress(FileNotFoundError):
            folders = sorted(os.listdir(self.out_root))
            for old in folders[:max(0, len(folders) - KEEP_ANSWERS + 1)]:
                shutil.rmtree(os.path.join(self.out_root, old), ignore_errors=True)

    def _answer(self, stage: str, z: np.ndarray, views: list[View], out: str, start: float,
                mesh_resolution: int | None, other_views: bool) -> Shape:
        folder = os.path.join(out, stage)
        os.makedirs(folder, exist_ok=True)
        cameras = self._display_cameras(views[0])
        images = self.model.normal_maps(z, cameras if other_views else cameras[:1])
        mesh = self.model.mesh(z, mesh_resolution)
        files = {"latent": os.path.join(folder, "latent.npy")}
        np.save(files["latent"], np.asarray(z, np.float32))
        if mesh is None or len(mesh.faces) == 0:
            message = (f"The {stage} shape is empty: the decoder has no surface for this latent. "
                       "Try a clearer drawing, another view, or a second sketch.")
            vertices = 0
        else:
            for kind, shown in (("obj", mesh), ("ply", mesh), ("glb", shaded_mesh(mesh))):
                files[kind] = os.path.join(folder, f"shape.{kind}")  # the page shows the GLB: shaded to read
                shown.export(files[kind])
            vertices = len(mesh.vertices)
            message = f"{stage} shape: {vertices:,} vertices, {time.monotonic() - start:.1f} s after the request"
        return Shape(stage=stage, latent=np.asarray(z, np.float32), normal_maps=images, files=files,
                     vertices=vertices, message=message)

