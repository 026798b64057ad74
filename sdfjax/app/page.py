"""The Gradio page: draw a chair (or upload a drawing) from a chosen view, get its DeepSDF shape.

    page = build_page(service)           # gr.Blocks over a sdfjax.app.service.ShapeService
    serve(page, host="127.0.0.1", port=7860)

Gradio gives what the page needs without front-end code of our own: a sketchpad with pen,
eraser, undo, clear and stroke width; a 3D mesh viewer; progress bars; a request queue, so
concurrent users each get their own answer (the encoder's shape at once, the refinements in
turn); and its assets ship in the
wheel (nothing is fetched from a CDN). Only ids (`elem_id`) that the browser test uses are set.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading

import gradio as gr
import numpy as np
from gradio.context import LocalContext
from PIL import Image

from sdfjax import errors
from sdfjax.app.service import (
    OTHER_AZIMUTHS,
    OTHER_ELEVATION,
    Cancelled,
    ShapeService,
    View,
)
from sdfjax.render.pictures import to_uint8, upsample
from sdfjax.sketch2shape.sketches import (
    MAX_PIXELS,
    WIDE_MODES,
    check_image_header,
    load_image,
)

# azimuth, elevation (degrees, sdfjax.render.camera: 0 the chair's front, positive from above) of each sketch tab:
# where people draw chairs from (three-quarter front left and right from above, the side nearly level)
DEFAULT_VIEWS = ((320.0, 25.0), (40.0, 25.0), (90.0, 5.0))
CANVAS = 512  # pixels per side of the drawing canvas
UPLOAD_LIMIT = "25mb"  # gradio refuses larger uploads before our own checks
SHAPE_REQUESTS = 8  # "Sketch to shape" requests served at once (their refinements still take turns)
PER_CLIENT = 2  # "Sketch to shape" requests one page (one browser tab or API client) may have in flight
GRADIO_FILES_SECONDS = 1800  # Gradio's copies of uploads and answers are deleted this long after they were made
SHOWN = 160  # pixels per side of the sketch as read, the live guess and the result's normal map (enlarged)

INTRO = """\
# Sketch to shape
Draw a chair as seen from the view the sliders set: the small picture shows the average chair from
there. The encoder's guess follows your drawing; **Sketch to shape** starts from it and refines the
shape until its silhouette and normal map agree with your sketch. More sketches of the same chair from
other views (tabs 2 and 3) all shape one latent.
"""


def _checked_drawing(name: str, decode, payload):
    """A sketchpad's value (gradio's `preprocess`, `decode`) with its images checked from their headers (format,
    pixels) before gradio decodes them: a huge image or a decompression bomb sent as the drawing is refused by
    `name`, never decoded; a 16-bit image is scaled to 8 bits first (gradio would clamp its levels to white); a
    file cut short fails with its name too. (A wrapper, not a subclass: gradio writes stub files for those.)"""
    if payload is not None:
        for image in (payload.background, *(payload.layers or ()), payload.composite):
            if image is not None and getattr(image, "path", None):
                try:
                    if check_image_header(image.path)[2] in WIDE_MODES:  # gradio's copy, rewritten in place
                        Image.fromarray(to_uint8(load_image(image.path))).save(image.path, format="PNG")
                except errors.DataError as e:
                    raise gr.Error(f"{name}: {str(e).split(': ', 1)[-1]}", print_exception=False) from None
    try:  # within the pixel limit now: decoding is safe
        return decode(payload)
    except (OSError, ValueError) as e:
        raise gr.Error(f"{name}: not a readable image ({type(e).__name__}: {e})", print_exception=False) from None


def _checked_angle(name: str, slider: gr.Slider, payload):
    """A slider's value sent by a client (the API takes any JSON): a finite number within the slider's bounds, or
    one message naming it."""
    try:
        value = float(payload)
    except (TypeError, ValueError):
        value = float("nan")
    if not (np.isfinite(value) and slider.minimum <= value <= slider.maximum):
        raise gr.Error(f"{name}: {payload!r} is no angle from {slider.minimum:g} to {slider.maximum:g} degrees",
                       print_exception=False)
    return gr.Slider.preprocess(slider, value)


def _waiting(page: gr.Blocks, event_id: str | None) -> bool:
    """Whether the client of request `event_id` still waits for its answer. Gradio marks a running event dead
    when its page disconnects, and drops it from the queue's active jobs when its client cancels (the queue is
    internal to Gradio: read here and nowhere else). Without a queue or an event id, somebody waits."""
    queue = getattr(page, "_queue", None)
    if event_id is None or queue is None:
        return True
    for job in getattr(queue, "active_jobs", None) or ():
        for event in job or ():
            if getattr(event, "_id", None) == event_id:
                return bool(getattr(event, "alive", True))
    return False


class ClientRequests:
    """Counts each client's requests in flight (a browser page or an API client, as Gradio tells them apart), so
    that one client cannot fill the queue."""

    def __init__(self, limit: int):
        self.limit = limit
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}

    @contextlib.contextmanager
    def admit(self, client: str):
        """Holds one of `client`'s places; errors.DataError when it has `limit` requests in flight already."""
        with self._lock:
            if self._in_flight.get(client, 0) >= self.limit:
                raise errors.DataError(f"this page has {self.limit} requests in flight already; wait for an answer")
            self._in_flight[client] = self._in_flight.get(client, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[client] -= 1
                if not self._in_flight[client]:
                    del self._in_flight[client]


def _editor_image(value) -> np.ndarray | None:
    """The drawing of a gradio sketchpad value (a dict with a `composite` image), or None when empty."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("composite")
    return None if value is None else np.asarray(value)


def _views(service: ShapeService, values: list, strict: bool, framed: bool = True) -> list[View]:
    """The page's sketches, tab by tab: (sketchpad, azimuth, elevation) per tab.

    Tab 1 must hold a drawing; a later tab counts when something is drawn in it. With
    `strict`, a bad drawing raises errors.DataError naming its tab; otherwise it is skipped.
    `framed`: each drawing framed as config.sketch.user_framing says, else at config.sketch.fill (ShapeService.view_of).
    """
    views = []
    for tab in range(service.max_views):
        drawing, azimuth, elevation = values[3 * tab: 3 * tab + 3]
        image = _editor_image(drawing)
        name = f"sketch {tab + 1}"
        if image is None or (tab > 0 and np.ptp(image) == 0):
            if tab == 0 and strict:
                raise errors.DataError(f"{name}: nothing drawn; draw a chair or upload a drawing first")
            continue
        try:
            views.append(service.view_of(image, name, float(azimuth), float(elevation), framed))
        except errors.DataError:
            if strict:
                raise
    return views


def build_page(service: ShapeService) -> gr.Blocks:
    """The page over `service`: sketch tabs with camera sliders and previews, live guess, run, results."""
    with gr.Blocks(title="sdfjax: sketch to shape", analytics_enabled=False,
                   delete_cache=(GRADIO_FILES_SECONDS // 6, GRADIO_FILES_SECONDS)) as page:
        gr.Markdown(INTRO)
        inputs, uploads = [], []
        with gr.Row():
            with gr.Column(scale=5):
                with gr.Tabs():
                    for tab, (azimuth, elevation) in enumerate(DEFAULT_VIEWS[:service.max_views]):
                        with gr.Tab(f"Sketch {tab + 1}" + ("" if tab == 0 else " (optional)")):
                            pad = gr.Sketchpad(type="numpy", image_mode="RGBA", canvas_size=(CANVAS, CANVAS),
                                               fixed_canvas=True, layers=False, transforms=(),
                                               brush=gr.Brush(colors=["#000000"], color_mode="fixed", default_size=4),
                                               eraser=gr.Eraser(default_size=16), label="Draw here",
                                               elem_id=f"sketch{tab}")
                            pad.preprocess = functools.partial(_checked_drawing, f"sketch {tab + 1}", pad.preprocess)
                            with gr.Row():
                                with gr.Column(scale=3):
                                    az = gr.Slider(0, 355, value=azimuth, step=5, label="Azimuth (degrees)",
                                                   elem_id=f"azimuth{tab}")
                                    el = gr.Slider(-30, 60, value=elevation, step=5, label="Elevation (degrees above)",
                                                   elem_id=f"elevation{tab}")
                                    for slider, angle in ((az, "azimuth"), (el, "elevation")):
                                        slider.preprocess = functools.partial(_checked_angle,
                                                                              f"sketch {tab + 1} {angle}", slider)
                                    upload = gr.File(label="…or upload a drawing (PNG, JPEG)", type="filepath",
                                                     elem_id=f"upload{tab}", height=90)
                                preview = gr.Image(value=service.preview(azimuth, elevation), label="This view",
                                                   interactive=False, height=150, scale=2, elem_id=f"preview{tab}")
                            for slider in (az, el):
                                slider.change(service.preview, [az, el], preview, show_progress="hidden",
                                              queue=False, api_visibility="private")
                            uploads.append(upload.upload(_upload_to_canvas, upload, pad, api_visibility="private"))
                            inputs += [pad, az, el]
            with gr.Column(scale=4):
                live = gr.Image(label="The encoder's guess, as you draw", interactive=False, height=230,
                                elem_id="live")
                run = gr.Button("Sketch to shape", variant="primary", elem_id="run")
                status = gr.Markdown("Draw, then press **Sketch to shape**.", elem_id="status")
                with gr.Row():
                    read = gr.Image(label="Your sketch, as the model reads it", interactive=False, height=230,
                                    elem_id="read")
                    normal = gr.Image(label="The shape from your sketch's view", interactive=False, height=230,
                                      elem_id="normal")
                others = gr.Gallery(label=f"Other views (azimuth +{', +'.join(f'{a:.0f}' for a in OTHER_AZIMUTHS)}, "
                                          f"elevation {OTHER_ELEVATION:.0f})", columns=3, height=180,
                                    elem_id="others")
                mesh = gr.Model3D(label="The mesh (drag to turn)", clear_color=(1.0, 1.0, 1.0, 1.0), height=320,
                                  elem_id="mesh")
                downloads = gr.File(label="Downloads: mesh (OBJ, PLY) and latent (.npy)", file_count="multiple",
                                    interactive=False, elem_id="downloads")

        def guess(*values):
            # the live guess frames at config.sketch.fill: fitting the framing (about 1 s) would miss its 0.5 s
            views = _views(service, list(values), strict=False, framed=False)
            return upsample(service.guess(views), SHOWN) if views else None

        clients = ClientRequests(PER_CLIENT)

        def shape(*values, progress=gr.Progress()):
            # Gradio keeps the request and its event in context (it injects neither after *values)
            event_id = LocalContext.event_id.get(None)
            client = getattr(LocalContext.request.get(None), "session_hash", None) or "unknown"

            def step(done, total):
                if not _waiting(page, event_id):  # the page closed or cancelled: stop, free the turn
                    print(f"[app] a refinement stopped after {done} of {total} steps: its page has gone",
                          file=sys.stderr, flush=True)
                    raise Cancelled
                progress((done, total), desc="refining")

            try:
                with clients.admit(client):
                    views = _views(service, list(values), strict=True)
                    sketch = upsample(views[0].sketch, SHOWN)
                    for answer in service.shape(views, on_step=step):
                        files = [answer.files[k] for k in ("obj", "ply", "latent") if k in answer.files]
                        note = ("Refining…" if answer.stage == "encoder" else "Done.")
                        more_views = list(answer.normal_maps[1:])  # none yet for the encoder's: the gallery clears
                        headline = (f"**{answer.stage.capitalize()}** "
                                    f"({len(views)} sketch{'es' if len(views) > 1 else ''}): "
                                    f"{answer.message.rstrip('.')}. {note}")
                        yield (headline, sketch, upsample(answer.normal_maps[0], SHOWN), more_views,
                               answer.files.get("glb"), files)
            except errors.DataError as e:
                raise gr.Error(str(e), print_exception=False) from None

        for tab, pad in enumerate(inputs[::3]):  # any tab's drawing updates the guess; one API name for it
            pad.change(guess, inputs, live, trigger_mode="always_last", show_progress="hidden",
                       concurrency_limit=2, concurrency_id="guess", api_name="guess" if tab == 0 else None,
                       api_visibility="public" if tab == 0 else "private")
        for uploaded in uploads:  # a drawing put on the canvas by the server is no stroke: guess after it too
            uploaded.success(guess, inputs, live, show_progress="hidden", concurrency_limit=2, concurrency_id="guess",
                             api_visibility="private")
        # Several requests at once, so each gets its encoder shape at once; the service runs their
        # refinements one at a time.
        run.click(shape, inputs, [status, read, normal, others, mesh, downloads], concurrency_limit=SHAPE_REQUESTS,
                  concurrency_id="shape", show_progress_on=[status], api_name="shape")
    return page


def _upload_to_canvas(path: str | None):
    """An uploaded drawing checked (not an image, too large, a decompression bomb: a message, nothing else
    changes) and put on the canvas, where it can be drawn over."""
    if path is None:
        return gr.skip()
    try:
        grey = ShapeService.read_upload(path)
    except errors.DataError as e:
        raise gr.Error(f"{os.path.basename(path)}: {str(e).split(': ', 1)[-1]}", print_exception=False) from None
    rgba = np.concatenate([np.repeat(grey[..., None], 3, axis=-1), np.full(grey.shape + (1,), 255, np.uint8)], -1)
    return {"background": rgba, "layers": [], "composite": rgba}


def serve(page: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, block: bool = True, queue_size: int = 64,
          auth: tuple[str, str] | None = None):
    """Serves `page` on host:port with a request queue, behind a login when `auth` (user, password) is given;
    returns the local URL when `block` is False."""
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own bomb check (wherever gradio decodes) at the page's limit
    page.queue(default_concurrency_limit=1, max_size=queue_size)
    _, url, _ = page.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=not block,
                            max_file_size=UPLOAD_LIMIT, quiet=not block, show_error=True, ssr_mode=False,
                            footer_links=[], auth=auth)
    return url
