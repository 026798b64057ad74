"""The page's launcher in a child process on a free 127.0.0.1 port, waited for until it answers.

    with running_page(["--workdir=pretrained/chairs256_cpu"]) as url:   # http://127.0.0.1:<port>/
        gradio_client.Client(url).predict(..., api_name="/shape")

What the browser test and `benchmarks/app.py` share: the real command line (`python -m
sdfjax.launch.app`), started, waited for, its output drained so it never blocks on a full
pipe, and stopped on the way out.
"""

from __future__ import annotations

import collections
import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

from gradio_client import Client

READY = "[app] serving on"  # what sdfjax.launch.app prints once every step is compiled


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_page(flags: list[str], cwd: str | None = None, env: dict | None = None,
                 timeout_s: float = 900.0, watch: dict | None = None) -> Iterator[str]:
    """Starts `python -m sdfjax.launch.app <flags> --port=<free>` and yields its URL once a client connects.

    With `watch` (a dict), the page's process id goes to watch["pid"] and every line of its
    log (stderr) to the list watch["log"], for tests that look at its memory and its log.
    Raises RuntimeError with the end of the page's output when it exits or does not answer within
    `timeout_s`; the process is terminated when the block ends.
    """
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "sdfjax.launch.app", *flags, f"--port={port}"], cwd=cwd,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tail = collections.deque(maxlen=40)
    log = [] if watch is None else watch.setdefault("log", [])
    if watch is not None:
        watch["pid"] = process.pid

    def keep(line):
        tail.append(line)
        if watch is not None:
            log.append(line)

    try:
        for line in process.stderr:
            keep(line)
            if READY in line:
                break
        else:
            raise RuntimeError(f"the page did not start (exit {process.wait()}):\n{''.join(tail)}")
        threading.Thread(target=lambda: [keep(line) for line in process.stderr], daemon=True).start()  # drained
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                Client(url, verbose=False)
                break
            except Exception:  # noqa: BLE001 (still binding the port)
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"the page never answered on {url}:\n{''.join(tail)}") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
