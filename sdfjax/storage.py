"""Files: written so that an interrupted run never leaves half of one behind, local or remote.

Every file sdfjax writes for a run goes through this module: `atomic_write` (a temporary
file beside the target, renamed onto it only once complete), and the helpers built on
it (npz, figures, PNG, JSON, meshes). A path may be local or a URL that etils.epath
knows (`gs://bucket/run`, `s3://...`): local paths use the OS directly (fsync, atomic
rename); remote ones go through epath, so a TPU pod's workers write to the bucket,
not to a local `./gs:` folder. `run_dir` names the timestamped folder each fitting /
rendering / sketch run writes into.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import os
import tempfile
from collections.abc import Iterator

import numpy as np
from etils import epath
from PIL import Image


def is_remote(path) -> bool:
    """True for URLs (gs://, s3://, ...): paths that only etils.epath can write."""
    return "://" in str(path)


def makedirs(path: str) -> None:
    if is_remote(path):
        epath.Path(path).mkdir(parents=True, exist_ok=True)
    else:
        os.makedirs(path, exist_ok=True)


def exists(path: str) -> bool:
    return epath.Path(path).exists() if is_remote(path) else os.path.exists(path)


def join(path: str, *parts: str) -> str:
    """`os.path.join` that leaves a URL's `//` alone (it never calls abspath)."""
    return os.path.join(str(path), *parts)


def read_bytes(path: str) -> bytes:
    return epath.Path(path).read_bytes()


def read_text(path: str) -> str:
    return epath.Path(path).read_text()


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb") -> Iterator:
    """Opens a temporary file beside `path`; renames it onto `path` only on success."""
    if is_remote(path):
        with _remote_atomic_write(path, mode) as f:
            yield f
        return
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def _remote_atomic_write(path: str, mode: str) -> Iterator:
    """Buffers in memory, writes a temporary object beside `path`, then renames it onto `path`."""
    buffer = io.BytesIO() if "b" in mode else io.StringIO()
    yield buffer
    target = epath.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.{datetime.datetime.now().timestamp():.6f}.tmp"
    content = buffer.getvalue()
    if isinstance(content, str):
        tmp.write_text(content)
    else:
        tmp.write_bytes(content)
    tmp.replace(target)


def append_text(path: str, text: str) -> None:
    """Adds `text` at the end of a file (remote objects cannot be appended to: they are rewritten)."""
    if is_remote(path):
        old = read_text(path) if exists(path) else ""
        atomic_write_text(path, old + text)
    else:
        with open(path, "a") as f:
            f.write(text)


def remove_stale_temporaries(directory: str) -> list[str]:
    """Deletes the temporary files `atomic_write` leaves when its process is killed, under `directory`.

    Only call it where no other process is writing: a live write's temporary file looks the same.
    """
    removed = []
    for folder, _, names in os.walk(directory):
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                os.remove(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
    return removed


def atomic_write_text(path: str, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: str, content: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(content)


def atomic_save_npy(path: str, array: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        np.save(f, array)


def atomic_write_json(path: str, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_export_mesh(path: str, mesh) -> None:
    """Writes a trimesh mesh as OBJ (vertices and faces only) atomically."""
    atomic_write_text(path, mesh.export(file_type="obj", include_normals=False, include_texture=False))


def png_bytes(image: np.ndarray) -> bytes:
    """A uint8 (H, W) or (H, W, 3) array as PNG file content."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_png(path: str, image: np.ndarray) -> None:
    atomic_write_bytes(path, png_bytes(image))


def read_png(path: str) -> np.ndarray:
    with Image.open(epath.Path(path).open("rb") if is_remote(path) else path) as im:
        return np.asarray(im)


def save_npz(path: str, **arrays) -> None:
    """`np.savez` written atomically (and to remote paths)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_npz(path: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(read_bytes(path)) if is_remote(path) else path) as f:
        return {k: f[k] for k in f.files}


def save_figure(path: str, figure, dpi: int = 100) -> None:
    """A matplotlib figure as a PNG file, written atomically (and to remote paths)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    atomic_write_bytes(path, buffer.getvalue())


def timestamp() -> str:
    """Now, local time, as YYYYmmdd-HHMMSS: the name of a run's output folder."""
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def run_dir(workdir: str, kind: str, out_dir: str | None = None) -> str:
    """`out_dir` if given, else `<workdir>/<kind>/<timestamp>`; created either way."""
    out_dir = out_dir or join(workdir, kind, timestamp())
    makedirs(out_dir)
    return out_dir
