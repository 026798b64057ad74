"""Writing files so that an interrupted run never leaves half of one behind, and PNG bytes.

Every file sdfjax writes goes through `atomic_write` (a temporary file beside the target,
renamed onto it only once complete). `run_dir` names the timestamped folder each
fitting / rendering / sketch run writes into.
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
from PIL import Image


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb") -> Iterator:
    """Opens a temporary file beside `path`; renames it onto `path` only on success."""
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
    with Image.open(path) as im:
        return np.asarray(im)


def timestamp() -> str:
    """Now, local time, as YYYYmmdd-HHMMSS: the name of a run's output folder."""
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def run_dir(workdir: str, kind: str, out_dir: str | None = None) -> str:
    """`out_dir` if given, else `<workdir>/<kind>/<timestamp>`; created either way."""
    out_dir = out_dir or os.path.join(workdir, kind, timestamp())
    os.makedirs(out_dir, exist_ok=True)
    return out_dir
