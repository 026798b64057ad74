r"""Procedural chairs and tables, written in the dataset layout of DESIGN.md.

Each shape is a union of closed parts (boxes and cylinders) concatenated without any
boolean operation, so parts overlap and interpenetrate the way ShapeNet's parts do. A
shape is a pure function of (category, seed, index): the same call writes the same files.

Frame: y is up, the seat / table top faces +y, the chair's back is at -z; metres.

    python -m data_gen.synthetic --out=data/chair16                    # the default set
    python -m data_gen.synthetic --out=data/table8 --category=table \
        --num_train=8 --num_val=2 --num_test=2
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import trimesh
from absl import app, flags

from sdfjax import io
from sdfjax.data import layout

_SECTIONS = 24  # cylinder resolution: smooth enough for 256^3 marching cubes to see curvature


def _box(extents, centre, rotation=None) -> trimesh.Trimesh:
    transform = np.eye(4)
    if rotation is not None:
        transform[:3, :3] = rotation
    transform[:3, 3] = centre
    return trimesh.creation.box(extents=extents, transform=transform)


def _cylinder(radius, start, end) -> trimesh.Trimesh:
    return trimesh.creation.cylinder(radius=radius, segment=[start, end], sections=_SECTIONS)


def _rot_x(angle) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _legs(rng, width, depth, height, top_y, round_legs) -> list[trimesh.Trimesh]:
    """Three to five legs under a rectangle, or a pedestal with a star or disc base."""
    kind = rng.choice(["four", "three", "five", "pedestal"], p=[0.55, 0.1, 0.1, 0.25])
    thickness = rng.uniform(0.03, 0.06)
    parts = []
    if kind == "pedestal":
        column = rng.uniform(0.03, 0.06)
        parts.append(_cylinder(column, [0, 0.05, 0], [0, top_y + 0.01, 0]))
        if rng.random() < 0.5:  # disc base
            parts.append(_cylinder(rng.uniform(0.2, 0.3), [0, 0, 0], [0, 0.04, 0]))
        else:  # star base of five feet
            reach = 0.5 * min(width, depth) * rng.uniform(0.9, 1.3)
            for k in range(5):
                a = 2 * np.pi * k / 5
                foot = np.array([np.sin(a), 0, np.cos(a)]) * reach
                parts.append(_cylinder(0.025, [0, 0.05, 0], foot + [0, 0.025, 0]))
                parts.append(_cylinder(0.03, foot, foot + [0, 0.05, 0]))
        return parts
    inset = rng.uniform(0.02, 0.08)
    hx, hz = width / 2 - inset, depth / 2 - inset
    if kind == "four":
        feet = [(sx * hx, sz * hz) for sx in (-1, 1) for sz in (-1, 1)]
    else:
        n = 3 if kind == "three" else 5
        feet = [(hx * np.sin(2 * np.pi * k / n), hz * np.cos(2 * np.pi * k / n)) for k in range(n)]
    splay = rng.uniform(0.0, 0.06)
    for x, z in feet:
        top = np.array([x, top_y + 0.01, z])
        bottom = np.array([x * (1 + splay), 0.0, z * (1 + splay)])
        if round_legs:
            parts.append(_cylinder(thickness / 2, bottom, top))
        else:
            centre = (top + bottom) / 2
            parts.append(_box([thickness, top[1] - bottom[1], thickness], centre))
    if kind == "four" and rng.random() < 0.4:  # stretchers between the legs
        y = rng.uniform(0.1, 0.25) * height
        for sx in (-1, 1):
            parts.append(_box([thickness * 0.6, thickness * 0.6, 2 * hz], [sx * hx, y, 0]))
    return parts


def make_chair(rng: np.random.Generator) -> trimesh.Trimesh:
    """A chair: seat, legs or pedestal, a solid / slatted / ladder back or none, arms or not."""
    width, depth = rng.uniform(0.4, 0.6), rng.uniform(0.38, 0.55)
    seat_t, seat_y = rng.uniform(0.03, 0.08), rng.uniform(0.38, 0.5)
    parts = [_box([width, seat_t, depth], [0, seat_y, 0])]
    parts += _legs(rng, width, depth, seat_y, seat_y - seat_t / 2, round_legs=rng.random() < 0.4)

    back_kind = rng.choice(["solid", "slatted", "ladder", "none"], p=[0.4, 0.25, 0.2, 0.15])
    back_h, back_t = rng.uniform(0.3, 0.55), rng.uniform(0.025, 0.05)
    tilt = _rot_x(-rng.uniform(0.0, 0.25))
    base = np.array([0, seat_y + seat_t / 2, -depth / 2 + back_t / 2])

    def back_part(extents, offset):  # a part of the back, tilted about the seat's rear edge
        return _box(extents, base + tilt @ np.asarray(offset, float), tilt)

    if back_kind == "solid":
        parts.append(back_part([width, back_h, back_t], [0, back_h / 2, 0]))
    elif back_kind in ("slatted", "ladder"):
        post = rng.uniform(0.03, 0.05)
        for sx in (-1, 1):
            parts.append(back_part([post, back_h, back_t], [sx * (width - post) / 2, back_h / 2, 0]))
        rail = rng.uniform(0.04, 0.1)
        parts.append(back_part([width, rail, back_t], [0, back_h - rail / 2, 0]))
        n = int(rng.integers(2, 6))
        if back_kind == "slatted":
            for x in np.linspace(-width / 2 + post, width / 2 - post, n + 2)[1:-1]:
                parts.append(back_part([0.6 * post, back_h - rail, 0.7 * back_t], [x, (back_h - rail) / 2, 0]))
        else:
            for y in np.linspace(0, back_h - rail, n + 1)[1:]:
                parts.append(back_part([width - post, 0.6 * rail, 0.7 * back_t], [0, y - 0.3 * rail, 0]))
    if back_kind != "none" and rng.random() < 0.35:  # arms: a rest on a front support per side
        arm_y = seat_y + rng.uniform(0.18, 0.25)
        for sx in (-1, 1):
            x = sx * (width / 2 + 0.02)
            parts.append(_box([0.05, 0.035, depth], [x, arm_y, 0]))
            parts.append(_box([0.035, arm_y - seat_y, 0.035], [x, (arm_y + seat_y) / 2, depth / 2 - 0.04]))
    return trimesh.util.concatenate(parts)


def make_table(rng: np.random.Generator) -> trimesh.Trimesh:
    """A table: rectangular or round top, legs or pedestal, an optional lower shelf."""
    height, top_t = rng.uniform(0.55, 0.8), rng.uniform(0.03, 0.06)
    if rng.random() < 0.3:
        radius = rng.uniform(0.35, 0.6)
        parts = [_cylinder(radius, [0, height - top_t, 0], [0, height, 0])]
        width = depth = 1.4 * radius
    else:
        width, depth = rng.uniform(0.8, 1.6), rng.uniform(0.5, 0.9)
        parts = [_box([width, top_t, depth], [0, height - top_t / 2, 0])]
    parts += _legs(rng, width, depth, height, height - top_t, round_legs=rng.random() < 0.5)
    if rng.random() < 0.3:
        parts.append(_box([0.8 * width, 0.02, 0.8 * depth], [0, 0.2 * height, 0]))
    return trimesh.util.concatenate(parts)


CATEGORIES: dict[str, Callable[[np.random.Generator], trimesh.Trimesh]] = {
    "chair": make_chair,
    "table": make_table,
}


def make_shape(category: str, seed: int, index: int) -> trimesh.Trimesh:
    """Shape `index` of `category` for `seed`: deterministic, independent of other shapes."""
    return CATEGORIES[category](np.random.default_rng([seed, index, list(CATEGORIES).index(category)]))


def write_dataset(out: str, category: str = "chair", num_train: int = 16, num_val: int = 4,
                  num_test: int = 4, seed: int = 0) -> list[layout.ShapeInfo]:
    """Writes `out/shapes/<obj_id>/mesh.obj` and `out/metainfo.csv`; returns the shapes."""
    if category not in CATEGORIES:
        raise ValueError(f"--category={category!r}: expected one of {sorted(CATEGORIES)}")
    counts = {"train": num_train, "val": num_val, "test": num_test}
    ids, index = {}, 0
    for split, n in counts.items():
        ids[split] = [f"{category}_{seed:03d}_{index + k:04d}" for k in range(n)]
        index += n
    shapes = layout.assign_labels(ids)
    for i, shape in enumerate(shapes):
        path = os.path.join(layout.shape_dir(out, shape.obj_id), layout.MESH)
        io.atomic_export_mesh(path, make_shape(category, seed, i))
    layout.write_metainfo(out, shapes)
    return shapes


def main(argv):
    del argv
    f = flags.FLAGS
    shapes = write_dataset(f.out, f.category, f.num_train, f.num_val, f.num_test, f.seed)
    print(f"wrote {len(shapes)} {f.category}s to {f.out}")


if __name__ == "__main__":  # flags live here so that importing this module defines none
    flags.DEFINE_string("out", "data/chair16", "Dataset folder to write.")
    flags.DEFINE_enum("category", "chair", list(CATEGORIES), "Shape category.")
    flags.DEFINE_integer("num_train", 16, "Training shapes.")
    flags.DEFINE_integer("num_val", 4, "Validation shapes.")
    flags.DEFINE_integer("num_test", 4, "Test shapes.")
    flags.DEFINE_integer("seed", 0, "Generator seed.")
    app.run(main)
