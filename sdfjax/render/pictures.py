"""Pictures for people: images as uint8, grids of same-size images, nearest-neighbour upsampling, meshes
shaded in their vertex colours."""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 as is; [0, 1] floats scaled and rounded."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def picture_grid(rows: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    """A white-separated grid of equally sized images (uint8 or [0, 1] float; grey or RGB)."""
    def rgb(im):
        im = to_uint8(im)
        return np.repeat(im[..., None], 3, -1) if im.ndim == 2 else im

    rows = [[rgb(im) for im in row] for row in rows]
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            grid[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = im
    return grid


def upsample(image: np.ndarray, size: int) -> np.ndarray:
    """An image resized to (size, size) uint8 by nearest neighbour (sketch lines stay crisp)."""
    return np.asarray(Image.fromarray(to_uint8(image)).resize((size, size), Image.Resampling.NEAREST))


# a key light from the upper front right and a dimmer fill from the left, in the object frame (y up, front +z)
KEY_LIGHT = (0.45, 0.75, 0.5)
FILL_LIGHT = (-0.7, 0.2, 0.3)


def shaded_mesh(mesh, base=(200, 190, 175)):
    """A copy of a trimesh whose vertex colours (RGBA uint8) bake in Lambert shading of `base` under a key and a
    fill light plus a sky-to-ground ambient term, so any viewer, even one that draws vertex colours unlit, shows
    the form; what each light adds: key 0.6 n.l, fill 0.2 n.l, ambient 0.25 (ground) to 0.4 (sky)."""
    shaded = mesh.copy()
    normals = np.asarray(shaded.vertex_normals, np.float64)
    key = np.asarray(KEY_LIGHT) / np.linalg.norm(KEY_LIGHT)
    fill = np.asarray(FILL_LIGHT) / np.linalg.norm(FILL_LIGHT)
    light = (0.325 + 0.075 * normals[:, 1] + 0.6 * np.clip(normals @ key, 0, None)
             + 0.2 * np.clip(normals @ fill, 0, None))
    rgb = np.clip(np.asarray(base, np.float64)[None] * light[:, None], 0, 255).round().astype(np.uint8)
    shaded.visual.vertex_colors = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    return shaded
