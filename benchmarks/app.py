r"""The sketch-to-shape page under requests, as a browser would send them; last line is one JSON object.

    python -m benchmarks.app                                     # the shipped model
    python -m benchmarks.app --workdir=runs/chair16_cpu --config=configs/chair16.py:cpu

Starts `python -m sdfjax.launch.app` on 127.0.0.1 (a free port) and talks to it with
gradio_client, over HTTP and the page's own queue, so every figure includes what the page
adds to the models (encoding the request, files, the queue):

  startup_s          process start -> the page answers (loading + compiling every step)
  live_guess_s       one sketch -> the encoder's normal map (the live guess while drawing), median
  encoder_shape_s    "Sketch to shape" -> the first answer (encoder latent, coarse mesh, normal maps), median
  refined_shape_s    "Sketch to shape" -> the refined answer (config.sketch.iterations steps, mesh), median
  concurrent_*       --users requests sent at once: how many were answered, each one's latency

The sketches are the user-style drawings of tests/data/user_sketches (chairs no model saw).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from absl import app, flags
from gradio_client import Client, handle_file

from benchmarks import machine
from sdfjax.app.local_server import running_page

_WORKDIR = flags.DEFINE_string("workdir", "pretrained/chairs256_cpu", "A trained run or an exported model.")
_CONFIG = flags.DEFINE_string("config", "", "Config of --workdir (default: an exported model's own).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Sequential requests per timing (median reported).")
_USERS = flags.DEFINE_integer("users", 4, "Requests sent at once for the concurrency figures.")
_SKETCHES = flags.DEFINE_string("sketches", "tests/data/user_sketches/sketches.json", "Sketches and their views.")
_STARTUP_LIMIT_S = 900


def _inputs(sketch_path: str, azimuth: float, elevation: float, tabs: int) -> list:
    """The page's inputs with one drawing in tab 1: (sketchpad, azimuth, elevation) per tab."""
    drawing = {"background": None, "layers": [], "composite": handle_file(sketch_path)}
    values = [drawing, azimuth, elevation]
    for _ in range(1, tabs):
        values += [None, 0.0, 10.0]
    return values


def _timed_shape(client, inputs: list) -> dict:
    """Seconds to the first (encoder) and last (refined) answer of one "Sketch to shape" request."""
    start = time.monotonic()
    job = client.submit(*inputs, api_name="/shape")
    first = None
    for _ in job:  # each yielded answer
        first = time.monotonic() - start if first is None else first
    outputs = job.outputs()
    total = time.monotonic() - start
    status, *_, mesh, files = outputs[-1]
    latent = next((np.load(f) for f in files or [] if f.endswith("latent.npy")), None)
    return {"encoder_s": first, "refined_s": total, "status": status, "mesh": mesh, "files": files,
            "latent": latent}


def _own_answers(together: list[dict], sketches: list[int]) -> bool:
    """Whether each user got the answer to their own sketch: equal latents for the same sketch, others apart."""
    for i, a in enumerate(together):
        for j, b in enumerate(together[:i]):
            if a["latent"] is None or b["latent"] is None:
                return False
            same = np.allclose(a["latent"], b["latent"], atol=1e-5)
            if same != (sketches[i] == sketches[j]):
                return False
    return True


def main(argv):
    del argv
    flags = [f"--workdir={_WORKDIR.value}"] + ([f"--config={_CONFIG.value}"] if _CONFIG.value else [])
    start = time.monotonic()
    with running_page(flags, timeout_s=_STARTUP_LIMIT_S) as url:
        startup_s = time.monotonic() - start
        client = Client(url, verbose=False)
        tabs = sum(1 for p in client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/shape"]
                   ["parameters"] if p["component"] == "Imageeditor")
        with open(_SKETCHES.value) as f:
            entries = json.load(f)
        folder = os.path.dirname(_SKETCHES.value)
        requests = [_inputs(os.path.join(folder, e["file"]), e["azimuth"], e["elevation"], tabs) for e in entries]

        guesses = []
        for i in range(_REPEATS.value + 1):
            t = time.monotonic()
            client.predict(*requests[i % len(requests)], api_name="/guess")
            guesses.append(time.monotonic() - t)
        shapes = [_timed_shape(client, requests[i % len(requests)]) for i in range(_REPEATS.value)]

        with ThreadPoolExecutor(_USERS.value) as pool:  # one client per user, all sent at once
            clients = [Client(url, verbose=False) for _ in range(_USERS.value)]
            t = time.monotonic()
            together = list(pool.map(lambda i: _timed_shape(clients[i], requests[i % len(requests)]),
                                     range(_USERS.value)))
            wall = time.monotonic() - t

    answered = [r for r in together if r["mesh"] and r["files"]]
    result = {
        "benchmark": "app",
        "machine": machine.describe(),
        "workdir": _WORKDIR.value,
        "startup_s": round(startup_s, 1),
        "live_guess_s": round(statistics.median(guesses[1:]), 3),
        "encoder_shape_s": round(statistics.median(r["encoder_s"] for r in shapes), 2),
        "refined_shape_s": round(statistics.median(r["refined_s"] for r in shapes), 2),
        "targets_met": {"live_guess_lt_0.5s": statistics.median(guesses[1:]) < 0.5,
                        "encoder_shape_lt_2s": statistics.median(r["encoder_s"] for r in shapes) < 2.0,
                        "refined_shape_lt_15s": statistics.median(r["refined_s"] for r in shapes) < 15.0},
        "concurrent_users": _USERS.value,
        "concurrent_answered": len(answered),
        "concurrent_latency_s": [round(r["refined_s"], 2) for r in together],
        "concurrent_first_answer_s": [round(r["encoder_s"], 2) for r in together],
        "concurrent_wall_s": round(wall, 2),
        "concurrent_each_got_own_answer": _own_answers(together, [i % len(requests) for i in range(_USERS.value)]),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
