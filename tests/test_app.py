"""The sketch-to-shape page in a real browser (Debian's headless Chromium driven by Playwright) and under load.

One server for the module: `python -m sdfjax.launch.app` on the shipped model (pretrained/),
with a short refinement so the suite stays quick; the page must work with every request
that leaves 127.0.0.1 refused (no CDN at run time).
"""

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import types
import zlib
from concurrent.futures import ThreadPoolExecutor

import ml_collections
import numpy as np
import pytest
from PIL import Image

from sdfjax.app.local_server import running_page
from tests.conftest import optimised_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "pretrained", "chairs256_cpu")
USER_SKETCHES = os.path.join(ROOT, "tests", "data", "user_sketches")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ITERATIONS = 3
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server():
    # The second tab stays empty here (its refinement is never compiled); refined meshes at 64^3, not 128^3.
    flags = ["--config=configs/chairs256.py:cpu", f"--config.sketch.iterations={ITERATIONS}", f"--workdir={SHIPPED}",
             "--config.mesh.resolution=64", "--max_views=2", "--warm_views=1"]
    try:
        with running_page(flags, cwd=ROOT, env=optimised_env(PYTHONPATH=ROOT)) as url:
            yield url
    except RuntimeError as e:
        pytest.fail(str(e))


@pytest.fixture
def browser_page(tmp_path):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM}: no Chromium; `make test` installs Debian's chromium (apt-get) when missing")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        outside = []

        def only_local(route):
            if route.request.url.startswith(("http://127.0.0.1", "data:", "blob:")):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", only_local)
        page.outside_requests = outside
        yield page
        browser.close()


def _stroke(page, box, points):
    x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
    page.mouse.move(x0 + points[0][0] * w, y0 + points[0][1] * h)
    page.mouse.down()
    for u, v in points[1:]:
        page.mouse.move(x0 + u * w, y0 + v * h, steps=6)
    page.mouse.up()


def _draw_chair(page, tab: int = 0):
    """A chair seen from the front: back, seat, two legs, drawn with the mouse on the sketchpad's canvas."""
    page.locator(f"#sketch{tab} button[aria-label='Brush']").click()
    box = page.locator(f"#sketch{tab} canvas").last.bounding_box()
    box = {"x": box["x"] + box["width"] / 2 - box["height"] / 2, "y": box["y"], "width": box["height"],
           "height": box["height"]}  # the square drawing area in the middle of the canvas element
    _stroke(page, box, [(0.3, 0.1), (0.7, 0.1), (0.7, 0.5), (0.3, 0.5), (0.3, 0.1)])
    _stroke(page, box, [(0.25, 0.5), (0.75, 0.5), (0.78, 0.58), (0.22, 0.58), (0.25, 0.5)])
    for x in (0.27, 0.73):
        _stroke(page, box, [(x, 0.58), (x, 0.92)])


def _image_of(page, selector: str) -> np.ndarray:
    """The pixels of the first <img> under `selector`, fetched from the server as the browser sees them."""
    src = page.locator(f"{selector} img").first.get_attribute("src")
    body = page.request.get(src).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def _set_slider(page, elem_id: str, value: int):
    number = page.locator(f"#{elem_id} input[type=number]")
    number.fill(str(value))
    number.press("Enter")


@pytest.mark.slow
def test_drawing_with_the_mouse_gives_a_mesh_and_a_normal_map(server, browser_page, tmp_path):
    page = browser_page
    page.goto(server)
    page.locator("#run").wait_for()
    before = page.locator("#preview0 img").get_attribute("src")
    _set_slider(page, "azimuth0", 0)
    page.wait_for_function(f"document.querySelector('#preview0 img').src != {json.dumps(before)}", timeout=20000)
    _draw_chair(page)
    page.locator("#live img").wait_for(timeout=30000)  # the encoder's guess follows the drawing
    page.locator("#run").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('Done')", timeout=120000)
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

    status = page.locator("#status").inner_text()
    assert "Refined" in status and "vertices" in status, status
    normal = _image_of(page, "#normal")
    object_pixels = (normal.astype(int).sum(axis=-1) < 3 * 250).mean()
    assert 0.01 < object_pixels < 0.9, f"the normal map is blank or full ({object_pixels:.1%} object pixels)"
    assert len(np.unique(normal.reshape(-1, 3), axis=0)) > 20  # shaded by normals, not one flat colour
    names = page.locator("#downloads").inner_text().replace("\n", "")
    assert "shape.obj" in names and "shape.ply" in names and "latent.npy" in names
    assert page.locator("#mesh canvas").count() == 1  # the 3D viewer is showing a model
    obj = page.locator("#downloads a[href$='shape.obj']").first.get_attribute("href")
    text = page.request.get(obj).text()
    assert text.count("\nv ") > 100 and text.count("\nf ") > 100
    assert (tmp_path / "page.png").stat().st_size > 10_000
    assert page.outside_requests == [], f"the page asked outside 127.0.0.1: {page.outside_requests[:5]}"


def _message_naming(page, name: str) -> str:
    """The text of the page's message (an error toast) that names `name`, waited for."""
    toast = page.locator(".toast-body", has_text=name).first
    try:
        toast.wait_for(timeout=20000)
    except Exception:  # noqa: BLE001 (say which messages did show)
        pytest.fail(f"no message naming {name!r}; messages: {page.locator('.toast-body').all_inner_texts()}")
    return toast.inner_text()


def _decompression_bomb(path):
    """A valid PNG header saying 30000 x 30000 pixels, a few hundred bytes on disk."""
    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    header = (30000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.slow
def test_bad_uploads_and_a_blank_canvas_get_a_message_and_the_page_keeps_serving(server, browser_page, tmp_path):
    page = browser_page
    page.goto(server)
    page.locator("#run").wait_for()
    page.locator("#run").click()
    assert "nothing drawn" in _message_naming(page, "sketch 1")

    not_image = tmp_path / "notes.png"
    not_image.write_text("these are not pixels")
    page.locator("#upload0 input[type=file]").set_input_files(str(not_image))
    message = _message_naming(page, "notes.png")
    assert "not a readable image" in message, message

    page.reload()
    page.locator("#run").wait_for()
    page.locator("#upload0 input[type=file]").set_input_files(str(_decompression_bomb(tmp_path / "bomb.png")))
    message = _message_naming(page, "bomb.png")
    assert "decompression bomb" in message, message

    page.reload()
    page.locator("#run").wait_for()
    huge = tmp_path / "huge.png"
    Image.new("L", (5000, 4000), 255).save(huge)  # 20 megapixels of white paper: a small file, a huge image
    page.locator("#upload0 input[type=file]").set_input_files(str(huge))
    assert "5000 x 4000 pixels" in _message_naming(page, "huge.png")

    page.reload()  # a real drawing uploaded: it lands on the canvas and shapes as usual
    page.locator("#run").wait_for()
    page.locator("#upload0 input[type=file]").set_input_files(
        os.path.join(USER_SKETCHES, "chair_000_0290_front.png"))
    page.locator("#live img").wait_for(timeout=30000)
    page.locator("#run").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('Done')", timeout=120000)


@pytest.mark.slow
def test_users_at_once_are_all_answered_each_with_their_own_shape(server):
    from gradio_client import Client, handle_file

    with open(os.path.join(USER_SKETCHES, "sketches.json")) as f:
        entries = json.load(f)

    def request(i):
        e = entries[i % 2]
        drawing = {"background": None, "layers": [], "composite": handle_file(os.path.join(USER_SKETCHES, e["file"]))}
        outputs = Client(server, verbose=False).predict(drawing, e["azimuth"], e["elevation"], None, 0.0, 10.0,
                                                        api_name="/shape")
        latent = next(f for f in outputs[-1] if f.endswith("latent.npy"))
        return outputs[0], np.load(latent)

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(request, range(3)))
    assert all("Refined" in status for status, _ in answers)
    (_, a), (_, b), (_, a_again) = answers
    np.testing.assert_allclose(a, a_again, atol=1e-5)  # the same sketch: the same answer, whoever was first
    assert np.abs(a - b).max() > 1e-3  # another sketch: another shape, not a neighbour's result


# A page's user who leaves: a client process that asks for a shape and exits once the encoder's shape is there.
LEAVING_CLIENT = """
import os, sys, time
from gradio_client import Client, handle_file
url, path, azimuth, elevation = sys.argv[1:5]
drawing = {"background": None, "layers": [], "composite": handle_file(path)}
job = Client(url, verbose=False).submit(drawing, float(azimuth), float(elevation), None, 0.0, 10.0, api_name="/shape")
deadline = time.monotonic() + 240
while not job.outputs() and time.monotonic() < deadline:
    time.sleep(0.05)
print("left after the encoder's shape" if job.outputs() else "no answer", flush=True)
os._exit(0)
"""


def _memory_sampler(pid: int, peak: list, stop: threading.Event):
    """Keeps peak[0] at the largest resident memory (bytes) of process `pid` seen every 50 ms until `stop`."""
    import psutil

    process = psutil.Process(pid)
    while not stop.is_set():
        try:
            peak[0] = max(peak[0], process.memory_info().rss)
        except psutil.Error:  # the page has stopped
            return
        time.sleep(0.05)


@pytest.mark.slow
def test_hostile_requests_at_once_are_refused_by_name_the_good_ones_answered_and_memory_stays_bounded(tmp_path):
    """12 requests at once, 5 good and 7 bad, through the page's API as a browser sends them (the drawing as the
    sketchpad's image); then one client over its limit, and one that leaves in the middle of its refinement."""
    import psutil
    from gradio_client import Client, handle_file

    with open(os.path.join(USER_SKETCHES, "sketches.json")) as f:
        entries = json.load(f)
    good = [(os.path.join(USER_SKETCHES, e["file"]), e["azimuth"], e["elevation"]) for e in entries[:4]]
    lines = np.asarray(Image.open(os.path.join(USER_SKETCHES, entries[4]["file"])).convert("L"), np.float32) / 255
    sixteen = tmp_path / "sixteen.png"  # a 16-bit scan: lines at 16,000 on paper at 60,000
    Image.fromarray((16000 + lines * 44000).astype(np.uint16)).save(sixteen)
    good.append((str(sixteen), entries[4]["azimuth"], entries[4]["elevation"]))
    notes, truncated, tiny, huge, blank = (tmp_path / f"{n}.png" for n in ("notes", "truncated", "tiny", "huge",
                                                                            "blank"))
    notes.write_text("these are not pixels")
    with open(good[0][0], "rb") as f:
        truncated.write_bytes(f.read()[:300])
    Image.new("L", (1, 1), 0).save(tiny)
    Image.new("L", (9000, 9000), 255).save(huge)  # 81 megapixels in a few hundred kB
    Image.new("L", (400, 300), 255).save(blank)
    bad = [(str(notes), 40.0, 25.0, "not a readable image"), (str(truncated), 40.0, 25.0, "not a readable image"),
           (str(tiny), 40.0, 25.0, "1 x 1"), (str(huge), 40.0, 25.0, "decompression bomb"),
           (str(_decompression_bomb(tmp_path / "bomb.png")), 40.0, 25.0, "decompression bomb"),
           (str(blank), 40.0, 25.0, "blank"), (good[0][0], 40.0, "north", "no angle")]
    flags = ["--config=configs/chairs256.py:cpu", "--config.sketch.iterations=15", f"--workdir={SHIPPED}",
             "--config.mesh.resolution=32", "--max_views=2", "--warm_views=1"]
    watch = {}
    with running_page(flags, cwd=ROOT, env=optimised_env(PYTHONPATH=ROOT), watch=watch) as url:
        idle = psutil.Process(watch["pid"]).memory_info().rss
        peak, stop = [idle], threading.Event()
        sampler = threading.Thread(target=_memory_sampler, args=(watch["pid"], peak, stop), daemon=True)
        sampler.start()

        def request(path, azimuth, elevation, client=None):
            drawing = {"background": None, "layers": [], "composite": handle_file(path)}
            try:
                return (client or Client(url, verbose=False)).predict(drawing, azimuth, elevation, None, 0.0, 10.0,
                                                                      api_name="/shape")[0]
            except Exception as e:  # noqa: BLE001 (gradio_client's AppError carries the page's message)
                return f"refused: {e}"

        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda case: request(*case[:3]), good + bad))
        for (path, *_), answer in zip(good, answers[:len(good)]):
            assert "Refined" in answer, (path, answer)
        for (path, _, _, expected), answer in zip(bad, answers[len(good):]):
            assert answer.startswith("refused") and expected in answer and "sketch 1" in answer, (path, answer)

        one_page = Client(url, verbose=False)  # one client, three requests at once: the third waits no turn
        with ThreadPoolExecutor(3) as pool:
            answers = pool.map(lambda _: request(*good[0], client=one_page), range(3))
            # meanwhile a page that leaves after its encoder shape (its process ends: its connections close), its
            # refinement waiting its turn behind them
            left = subprocess.run([sys.executable, "-c", LEAVING_CLIENT, url, *map(str, good[1])], cwd=ROOT,
                                  capture_output=True, text=True, timeout=300, check=False)
            assert left.stdout.strip() == "left after the encoder's shape", left.stderr[-2000:]
            answers = list(answers)
        assert sum("requests in flight" in a for a in answers) >= 1, answers
        assert sum("Refined" in a for a in answers) >= 1, answers
        deadline = time.monotonic() + 60
        while not any("a refinement stopped after" in line for line in watch["log"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()
        sampler.join()
        log = "".join(watch["log"])
    stopped = [line for line in watch["log"] if "a refinement stopped after" in line]
    assert stopped and "of 16 steps" in stopped[0], log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert peak[0] - idle < 2**30, (peak[0] - idle) / 2**20  # MB over the page's idle size


class _NoSurface:
    """A model whose every latent has no zero level set (the decoder is positive everywhere)."""

    def camera(self, azimuth, elevation, resolution):
        return (azimuth, elevation, resolution)

    def normal_maps(self, z, cameras):
        return np.full((len(cameras), 8, 8, 3), 255, np.uint8)

    def mesh(self, z, resolution=None):
        return None


class _HeldRefinement(_NoSurface):
    """A model whose refinement holds until released, counting refinements running at once."""

    def __init__(self):
        self.release, self.entered, self.guard = threading.Event(), threading.Event(), threading.Lock()
        self.running = self.most_at_once = 0

    def encode(self, sketches, cameras):
        return np.zeros(4, np.float32)

    def refine(self, sketches, cameras, z0, on_step=None):
        with self.guard:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        self.entered.set()
        self.release.wait(60)
        with self.guard:
            self.running -= 1
        return z0 + 1.0


def test_a_request_gets_its_encoder_shape_while_another_refines_and_refinements_take_turns(tmp_path):
    from sdfjax.app.service import ShapeService, View

    service = ShapeService.__new__(ShapeService)
    service.model, service.display_resolution, service.out_root = _HeldRefinement(), 8, str(tmp_path)
    service.resolution, service.quick_mesh_resolution, service.max_views = 8, 8, 3
    service._refine_turn = threading.Lock()
    views = [View(np.zeros((8, 8), np.uint8), 0.0, 0.0)]
    first = service.shape(views)
    assert next(first).stage == "encoder"
    with ThreadPoolExecutor(3) as pool:
        rest_of_first = pool.submit(list, first)
        assert service.model.entered.wait(30)  # the first request is refining (and held there)
        second = service.shape(views)
        encoder_shape = pool.submit(next, second)
        assert encoder_shape.result(timeout=30).stage == "encoder"  # not behind the other's refinement
        rest_of_second = pool.submit(list, second)
        time.sleep(0.5)
        assert service.model.running == 1  # the second refinement waits its turn
        service.model.release.set()
        answers = rest_of_first.result(timeout=30) + rest_of_second.result(timeout=30)
    assert [a.stage for a in answers] == ["refined", "refined"] and service.model.most_at_once == 1


def test_an_empty_shape_is_said_with_its_latent_and_no_mesh_files(tmp_path):
    from sdfjax.app.service import ShapeService, View

    service = object.__new__(ShapeService)
    service.model, service.display_resolution, service.out_root = _NoSurface(), 8, str(tmp_path)
    answer = service._answer("refined", np.zeros(4), [View(np.zeros((8, 8), np.uint8), 0.0, 0.0)], str(tmp_path),
                             time.monotonic(), None, other_views=True)
    assert "empty" in answer.message and answer.vertices == 0
    assert set(answer.files) == {"latent"} and os.path.isfile(answer.files["latent"])


def test_drawings_are_read_whatever_their_alpha_and_colour_and_blank_ones_are_refused(tmp_path, monkeypatch):
    from sdfjax import errors
    from sdfjax.app.service import ShapeService
    from sdfjax.sketch2shape import optimize, sketches
    from sdfjax.sketch2shape.interactive import SketchToShape

    service = object.__new__(ShapeService)
    service.resolution = 32
    service.config = ml_collections.ConfigDict({"sketch": {"fill": 0.8, "user_framing": "fixed"},
                                                "render": {"distance": 4.0, "focal": 512.0, "resolution": 256}})
    service.model = object.__new__(SketchToShape)  # its framing only: no models loaded
    service.model.config, service.model.resolution = service.config, 32
    service.sketch_of = lambda drawing, name: service.view_of(drawing, name, 30.0, 10.0).sketch
    strokes = np.zeros((200, 200, 4), np.uint8)  # what a sketchpad sends: black strokes on transparency
    strokes[40:160, 60:64, 3] = 255
    strokes[40:44, 60:140, 3] = 255
    sketch = service.sketch_of(strokes, "sketch 1")
    assert sketch.shape == (32, 32) and 10 < (sketch == 0).sum() < 200
    opaque = np.full((200, 200), 255, np.uint8)
    opaque[40:160, 60:64] = 0
    opaque[40:44, 60:140] = 0
    np.testing.assert_array_equal(service.sketch_of(opaque, "sketch 1"), sketch)
    # A coloured drawing reads the same on the page as from its PNG file (BT.601 luma, as Pillow's "L").
    colour = np.full((200, 200, 3), 255, np.uint8)
    colour[40:160, 60:64] = (200, 30, 30)
    colour[40:44, 60:140] = (30, 160, 60)
    colour[100:104, 60:140] = (90, 90, 250)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    from_file = sketches.normalize_sketch(sketches.load_image(str(tmp_path / "colour.png")), 32)
    np.testing.assert_array_equal(service.sketch_of(colour, "sketch 1"), from_file)
    # the page frames a drawing as the launcher does, at config.sketch.fill
    service.config.sketch.fill = 0.5
    smaller = service.sketch_of(colour, "sketch 1")
    np.testing.assert_array_equal(smaller, sketches.normalize_sketch(sketches.load_image(str(tmp_path / "colour.png")),
                                                                     32, 0.5))
    assert np.ptp(np.nonzero(smaller < 128)[0]) < np.ptp(np.nonzero(from_file < 128)[0])
    np.testing.assert_allclose(sketches.grey_of_pixels(colour)[50, 61], (0.299 * 200 + 0.587 * 30 + 0.114 * 30) / 255,
                               rtol=1e-6)
    with pytest.raises(errors.DataError, match="sketch 3: expected .* got shape \\(200, 200, 2\\)"):
        service.sketch_of(np.zeros((200, 200, 2), np.uint8), "sketch 3")
    with pytest.raises(errors.DataError, match="sketch 2: the image is blank"):
        service.sketch_of(np.zeros((200, 200, 4), np.uint8), "sketch 2")
    with pytest.raises(errors.DataError, match="sketch 1: nothing drawn"):
        service.sketch_of(None, "sketch 1")
    # with user_framing="fit" the page frames each drawing where the encoder's shape agrees with it, from its view
    seen = []
    monkeypatch.setattr(optimize, "framed_drawings", lambda greys, cameras, *rest: seen.append(cameras) or (
        np.zeros((1, 32, 32), np.uint8), np.zeros((1, 3), np.float32)))
    service.config.sketch.user_framing = "fit"
    service.model.predict = service.model._hits = None
    service.model.trained = types.SimpleNamespace(params=None)
    view = service.view_of(colour, "sketch 1", 40.0, -20.0)
    assert (view.azimuth, view.elevation) == (40.0, -20.0) and not view.sketch.any()
    assert [(c.azimuth, c.elevation, c.width) for c in seen[0]] == [(40.0, -20.0, 32)]
    # ... but not for the live guess, which must stay quick: framed at config.sketch.fill
    np.testing.assert_array_equal(service.view_of(colour, "sketch 1", 40.0, -20.0, framed=False).sketch, smaller)
    assert len(seen) == 1


def test_answers_files_are_kept_for_the_newest_requests_only(tmp_path, monkeypatch):
    from sdfjax.app import service as service_lib

    monkeypatch.setattr(service_lib, "KEEP_ANSWERS", 3)
    service = object.__new__(service_lib.ShapeService)
    service.model, service.display_resolution, service.out_root = _HeldRefinement(), 8, str(tmp_path)
    service.model.release.set()  # refinements run through
    service.resolution, service.quick_mesh_resolution, service.max_views = 8, 8, 3
    service._refine_turn = threading.Lock()
    views = [service_lib.View(np.zeros((8, 8), np.uint8), 0.0, 0.0)]
    latents = [list(service.shape(views))[-1].files["latent"] for _ in range(5)]
    assert len(os.listdir(tmp_path)) == 3  # the disk a page uses is bounded by its retention
    assert all(os.path.exists(p) for p in latents[-3:]) and not any(os.path.exists(p) for p in latents[:2])


def test_serving_beyond_this_machine_needs_a_login(tmp_path):
    from sdfjax.launch import app as app_launcher

    assert app_launcher.login("127.0.0.1", "") is None and app_launcher.login("::1", "") is None
    with pytest.raises(ValueError, match="--host=0.0.0.0 serves beyond this machine: give --auth"):
        app_launcher.login("0.0.0.0", "")
    assert app_launcher.login("0.0.0.0", "ada:lovelace") == ("ada", "lovelace")
    (tmp_path / "login").write_text("ada:secret\n")
    assert app_launcher.login("192.168.1.5", str(tmp_path / "login")) == ("ada", "secret")
    with pytest.raises(ValueError, match="expected user:password"):
        app_launcher.login("0.0.0.0", "ada")


def test_one_client_may_have_two_requests_in_flight_and_its_places_come_back():
    from sdfjax import errors
    from sdfjax.app.page import ClientRequests

    clients = ClientRequests(2)
    with clients.admit("a"), clients.admit("a"):
        with pytest.raises(errors.DataError, match="2 requests in flight"), clients.admit("a"):
            pass
        with clients.admit("b"):  # another page is not held back
            pass
    with clients.admit("a"), clients.admit("a"):  # both places came back
        pass
    with pytest.raises(RuntimeError), clients.admit("a"):  # ... also when the request failed
        raise RuntimeError("boom")
    assert clients._in_flight == {}


def test_a_refinement_whose_user_has_gone_stops_and_frees_its_turn(tmp_path):
    from sdfjax.app.service import Cancelled, ShapeService, View

    class StepwiseRefinement(_HeldRefinement):
        def refine(self, sketches, cameras, z0, on_step=None):
            for done in range(1, 101):
                on_step(done, 100)
            return z0 + 1.0

    service = ShapeService.__new__(ShapeService)
    service.model, service.out_root, service.max_views = StepwiseRefinement(), str(tmp_path), 1
    service.display_resolution, service.resolution, service.quick_mesh_resolution = 8, 8, 8
    service._refine_turn = threading.Lock()
    view = View(np.full((8, 8), 255, np.uint8), 0.0, 10.0)
    steps = []

    def gone_after_three(done, total):
        steps.append(done)
        if done > 3:
            raise Cancelled

    answers = list(service.shape([view], on_step=gone_after_three))
    assert [a.stage for a in answers] == ["encoder"] and steps == [1, 2, 3, 4]
    assert service._refine_turn.acquire(blocking=False)  # the turn is free for the next request
