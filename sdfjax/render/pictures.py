"""Pictures for people: images as uint8, grids of same-size images, nearest-neighbour upsampling."""

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
