r"""Procedural chairs and tables, written in the dataset layout of docs/design.md.

Each shape is a union of closed parts concatenated without any boolean operation, so
parts overlap and interpenetrate the way ShapeNet's parts do: boxes, cylinders, rounded
boxes and cushions (superellipsoids), bent tubes (sled and cantilever frames), and
curved slabs (backs bent around the sitter, moulded one-piece shells). Chairs come in
styles (classic, sled, cantilever, shell, and rare wide sofas and benches) with their
own seats, legs, backs and arms; tables in tops (box, rounded, round, thin glass on an
apron) and bases (legs or pedestals, trestles, end panels). A share of shapes keeps
ShapeNet's defects: one part left open, or duplicated in place, so the sign repair of
preprocessing is exercised. A shape is a pure function of (category, seed, index):
`shape_and_structure` also returns the choices that made it.

Frame: y is up, the seat / table top faces +y, the chair's back is at -z; metres.

    python -m data_gen.synthetic --out=data/chair16                    # the default set
    python -m data_gen.synthetic --out=data/table8 --category=table \
        --num_train=8 --num_val=2 --num_test=2
    python -m data_gen.synthetic --out=data/chair16 --preview        # + preview.png: 64 shapes
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import trimesh
from absl import app, flags

from sdfjax import storage
from sdfjax.data import layout
from sdfjax.geometry import mesh as mesh_lib
from sdfjax.render import camera as camera_lib
from sdfjax.render import mesh_caster, pictures

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


def _rounded_box(extents, centre, roundness: float = 0.25, rotation=None) -> trimesh.Trimesh:
    """A box with rounded edges and corners: a superellipsoid (exponent `roundness`, 0 = sharp) of a sphere's mesh."""
    sphere = trimesh.creation.uv_sphere(radius=1.0, count=[20, 20])
    v = sphere.vertices
    v = np.sign(v) * np.abs(v) ** max(roundness, 1e-3) * (np.asarray(extents, float) / 2)
    if rotation is not None:
        v = v @ np.asarray(rotation).T
    return trimesh.Trimesh(v + np.asarray(centre, float), sphere.faces, process=False)


def _tube(points, radius) -> list[trimesh.Trimesh]:
    """A bent tube through `points` (K, 3): a cylinder per segment and a ball at each joint (they overlap)."""
    points = np.asarray(points, float)
    parts = [_cylinder(radius, a, b) for a, b in zip(points[:-1], points[1:]) if np.linalg.norm(b - a) > 1e-6]
    for p in points[1:-1]:
        parts.append(trimesh.creation.icosphere(subdivisions=1, radius=radius).apply_translation(p))
    return parts


def _bend(corners, radius: float, per_corner: int = 5) -> np.ndarray:
    """The polyline `corners` with every inner corner replaced by a circular-ish arc of `radius` (quadratic Bezier)."""
    corners = np.asarray(corners, float)
    out = [corners[0]]
    for a, b, c in zip(corners[:-2], corners[1:-1], corners[2:]):
        r = min(radius, 0.45 * np.linalg.norm(b - a), 0.45 * np.linalg.norm(c - b))
        start = b + (a - b) / np.linalg.norm(a - b) * r
        end = b + (c - b) / np.linalg.norm(c - b) * r
        for t in np.linspace(0, 1, per_corner):
            out.append((1 - t) ** 2 * start + 2 * (1 - t) * t * b + t**2 * end)
    out.append(corners[-1])
    return np.asarray(out)


def _sheet(surface, nu: int, nv: int, thickness: float) -> trimesh.Trimesh:
    """A closed slab of `thickness` around a parametric surface: surface(u, v) -> (nu, nv, 3) points, u, v in [0, 1].

    The two faces are offset by +-thickness/2 along the surface normal; four strips close the rim.
    """
    u, v = np.meshgrid(np.linspace(0, 1, nu), np.linspace(0, 1, nv), indexing="ij")
    mid = surface(u, v)
    du, dv = np.gradient(mid, axis=0), np.gradient(mid, axis=1)
    normal = np.cross(du, dv)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    top, bottom = mid + normal * thickness / 2, mid - normal * thickness / 2
    vertices = np.concatenate([top.reshape(-1, 3), bottom.reshape(-1, 3)])
    index = np.arange(nu * nv).reshape(nu, nv)
    faces = []
    for offset, flip in ((0, False), (nu * nv, True)):
        a, b = index[:-1, :-1] + offset, index[1:, :-1] + offset
        c, d = index[1:, 1:] + offset, index[:-1, 1:] + offset
        quads = np.stack([a, b, c, d], -1).reshape(-1, 4)
        tri = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
        faces.append(tri[:, ::-1] if flip else tri)
    rim = np.concatenate([index[:, 0], index[-1, 1:], index[::-1, -1][1:], index[0, ::-1][1:-1]])
    ring = np.stack([rim, np.roll(rim, -1)], -1)
    faces.append(np.concatenate([np.stack([ring[:, 0], ring[:, 1], ring[:, 1] + nu * nv], -1),
                                 np.stack([ring[:, 0], ring[:, 1] + nu * nv, ring[:, 0] + nu * nv], -1)]))
    mesh = trimesh.Trimesh(vertices, np.concatenate(faces), process=False)
    trimesh.repair.fix_normals(mesh)
    return mesh


def _imperfect(rng, parts: list[trimesh.Trimesh]) -> tuple[list[trimesh.Trimesh], str]:
    """ShapeNet's defects on a share of shapes: one part left open (faces removed) or duplicated in place."""
    roll = rng.random()
    if roll < 0.15 and parts:  # an open part: a strip of its triangles missing
        k = int(rng.integers(len(parts)))
        mesh = parts[k]
        keep = np.ones(len(mesh.faces), bool)
        start = int(rng.integers(len(mesh.faces)))
        keep[start:start + max(1, len(mesh.faces) // 10)] = False
        parts = parts[:k] + [trimesh.Trimesh(mesh.vertices, mesh.faces[keep], process=False)] + parts[k + 1:]
        return parts, "open_part"
    if roll < 0.25 and parts:  # a duplicated part, shifted by under a millimetre
        k = int(rng.integers(len(parts)))
        return parts + [parts[k].copy().apply_translation(rng.uniform(-5e-4, 5e-4, 3))], "duplicated_part"
    return parts, "clean"


def _legs(rng, width, depth, height, top_y, round_legs) -> tuple[list[trimesh.Trimesh], str]:
    """Three to five legs under a rectangle, or a pedestal with a star or disc base; (parts, kind)."""
    kind = str(rng.choice(["four", "three", "five", "pedestal"], p=[0.55, 0.1, 0.1, 0.25]))
    thickness = rng.uniform(0.03, 0.06)
    parts = []
    if kind == "pedestal":
        column = rng.uniform(0.03, 0.06)
        parts.append(_cylinder(column, [0, 0.05, 0], [0, top_y + 0.01, 0]))
        if rng.random() < 0.5:  # disc base
            parts.append(_cylinder(rng.uniform(0.2, 0.3), [0, 0, 0], [0, 0.04, 0]))
            return parts, "pedestal_disc"
        else:  # star base of five feet
            reach = 0.5 * min(width, depth) * rng.uniform(0.9, 1.3)
            for k in range(5):
                a = 2 * np.pi * k / 5
                foot = np.array([np.sin(a), 0, np.cos(a)]) * reach
                parts.append(_cylinder(0.025, [0, 0.05, 0], foot + [0, 0.025, 0]))
                parts.append(_cylinder(0.03, foot, foot + [0, 0.05, 0]))
        return parts, "pedestal_star"
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
        kind = "four_stretchers"
    return parts, kind


CHAIR_STYLES = ("classic", "sled", "cantilever", "shell", "sofa", "bench")
CHAIR_BACKS = ("solid", "slatted", "ladder", "curved", "none")
CHAIR_ARMS = ("none", "bars", "panels")
CHAIR_SEATS = ("box", "rounded", "cushion")


def _curved_back(rng, width, height, thickness, base_y, rear_z, tilt) -> trimesh.Trimesh:
    """A back bent around the sitter: an arc of a vertical cylinder, tilted back, as a closed slab."""
    radius = rng.uniform(0.35, 0.7)
    half_angle = min(np.pi / 2.2, width / (2 * radius))

    def surface(u, v):
        a = (u - 0.5) * 2 * half_angle
        y = base_y + v * height
        z = rear_z + radius * (1 - np.cos(a)) - np.tan(tilt) * v * height
        return np.stack([radius * np.sin(a), y, z], -1)

    return _sheet(surface, 16, 8, thickness)


def _shell_seat(rng, width, depth, seat_y, back_h, thickness) -> trimesh.Trimesh:
    """A moulded one-piece seat and back (a plastic chair's shell): a profile swept across, its sides dished up."""
    lip, recline, dish = rng.uniform(0.0, 0.04), rng.uniform(0.05, 0.2), rng.uniform(0.02, 0.06)
    profile = _bend([[seat_y + lip, depth / 2], [seat_y, -depth / 2 + 0.05],
                     [seat_y + back_h, -depth / 2 - recline]], radius=0.12, per_corner=6)
    lengths = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(profile, axis=0), axis=1))])

    def surface(u, v):
        y = np.interp(v * lengths[-1], lengths, profile[:, 0])  # arc-length parameter along the profile
        z = np.interp(v * lengths[-1], lengths, profile[:, 1])
        x = (u - 0.5) * width
        return np.stack([x, y + dish * (2 * (u - 0.5)) ** 2, z], -1)

    return _sheet(surface, 12, 24, thickness)


def make_chair_parts(rng: np.random.Generator) -> tuple[list[trimesh.Trimesh], dict]:
    """The parts of one chair and the structure chosen: style, seat, legs, back, arms."""
    style = str(rng.choice(CHAIR_STYLES, p=[0.47, 0.1, 0.1, 0.15, 0.09, 0.09]))
    wide = style in ("sofa", "bench")
    width = rng.uniform(1.0, 1.9) if wide else rng.uniform(0.4, 0.6)
    depth = rng.uniform(0.55, 0.85) if style == "sofa" else rng.uniform(0.38, 0.55)
    seat_t = rng.uniform(0.03, 0.08)
    seat_y = rng.uniform(0.38, 0.5)
    parts, s = [], {"style": style}

    # Seat.
    if style == "shell":
        s["seat"] = "shell"
    elif style == "sofa":
        s["seat"] = "cushion"
    else:
        s["seat"] = str(rng.choice(CHAIR_SEATS, p=[0.45, 0.3, 0.25]))
    if s["seat"] == "box":
        parts.append(_box([width, seat_t, depth], [0, seat_y, 0]))
    elif s["seat"] == "rounded":
        parts.append(_rounded_box([width, seat_t, depth], [0, seat_y, 0], rng.uniform(0.15, 0.35)))
    elif s["seat"] == "cushion":  # a thin board and thick rounded cushions on it
        parts.append(_box([width, seat_t * 0.6, depth], [0, seat_y - seat_t / 2, 0]))
        n = int(rng.integers(1, 4)) if wide else 1
        cushion_t = rng.uniform(0.06, 0.14)
        for k in range(n):
            cx = (k + 0.5) / n * width - width / 2
            parts.append(_rounded_box([width / n * 0.98, cushion_t, depth * 0.95], [cx, seat_y + cushion_t / 2 - 0.01, 0],
                                      rng.uniform(0.25, 0.5)))
        seat_t = cushion_t

    # Frame.
    top_y = seat_y - seat_t / 2
    tube = rng.uniform(0.012, 0.022)
    if style in ("classic", "bench"):
        legs, s["legs"] = _legs(rng, width, depth, seat_y, top_y, round_legs=rng.random() < 0.4)
        parts += legs
    elif style == "shell":
        if rng.random() < 0.6:
            legs, s["legs"] = _legs(rng, width * 0.9, depth * 0.9, seat_y, seat_y, round_legs=True)
            parts += legs
        else:
            s["legs"] = "wire_sled"
            for sx in (-1, 1):
                x = sx * width * 0.4
                parts += _tube(_bend([[x, seat_y, depth * 0.35], [x, 0, depth * 0.45], [x, 0, -depth * 0.45],
                                      [x, seat_y, -depth * 0.35]], 0.06), tube * 0.7)
    elif style == "sled":
        s["legs"] = "sled"
        for sx in (-1, 1):
            x = sx * (width / 2 - 0.02)
            parts += _tube(_bend([[x, top_y, depth / 2 - 0.03], [x, 0, depth / 2 + 0.04], [x, 0, -depth / 2],
                                  [x, top_y, -depth / 2 + 0.03]], rng.uniform(0.04, 0.1)), tube)
    elif style == "cantilever":
        s["legs"] = "cantilever"
        back_top = seat_y + rng.uniform(0.3, 0.45)
        for sx in (-1, 1):
            x = sx * (width / 2 - 0.02)
            parts += _tube(_bend([[x, back_top, -depth / 2], [x, top_y, -depth / 2], [x, top_y, depth / 2],
                                  [x, 0, depth / 2 + 0.03], [x, 0, -depth / 2 + 0.05]], rng.uniform(0.05, 0.1)), tube)
    elif style == "sofa":
        s["legs"] = "feet"
        base_h = top_y - rng.uniform(0.05, 0.12)
        parts.append(_box([width, base_h - 0.06, depth], [0, (base_h + 0.06) / 2, 0]))
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(_cylinder(0.025, [sx * (width / 2 - 0.06), 0, sz * (depth / 2 - 0.06)],
                                       [sx * (width / 2 - 0.06), 0.07, sz * (depth / 2 - 0.06)]))

    # Back.
    if style == "shell":
        s["back"] = "shell"
        parts.append(_shell_seat(rng, width, depth, seat_y, rng.uniform(0.3, 0.45), rng.uniform(0.008, 0.02)))
    else:
        if style == "bench":
            choices, p = ("none", "slatted", "solid"), (0.7, 0.15, 0.15)
        elif style == "sofa":
            choices, p = ("solid", "curved"), (0.8, 0.2)
        elif style == "cantilever":
            choices, p = ("solid", "curved", "slatted"), (0.5, 0.3, 0.2)
        else:
            choices, p = CHAIR_BACKS, (0.3, 0.2, 0.15, 0.2, 0.15)
        s["back"] = str(rng.choice(choices, p=p))
        parts += _chair_back(rng, s["back"], width, depth, seat_y + seat_t / 2, wide)

    # Arms.
    if style == "sofa":
        s["arms"] = "panels"
    elif s["back"] in ("none", "shell") or style == "bench":
        s["arms"] = "none"
    else:
        s["arms"] = str(rng.choice(CHAIR_ARMS, p=[0.6, 0.25, 0.15]))
    if s["arms"] != "none":
        arm_y = seat_y + rng.uniform(0.18, 0.28)
        for sx in (-1, 1):
            x = sx * (width / 2 + 0.02)
            if s["arms"] == "bars":  # a rest on a front support per side
                parts.append(_box([0.05, 0.035, depth], [x, arm_y, 0]))
                parts.append(_box([0.035, arm_y - seat_y, 0.035], [x, (arm_y + seat_y) / 2, depth / 2 - 0.04]))
            else:  # solid side panels, from the floor (sofa) or the seat up
                bottom = 0.06 if style == "sofa" else seat_y - seat_t
                panel_t = rng.uniform(0.04, 0.14) if style == "sofa" else rng.uniform(0.025, 0.05)
                parts.append(_rounded_box([panel_t, arm_y - bottom, depth], [x + sx * panel_t / 2, (arm_y + bottom) / 2, 0],
                                          rng.uniform(0.05, 0.3)))
    return parts, s


def _chair_back(rng, kind, width, depth, base_y, wide) -> list[trimesh.Trimesh]:
    """A chair's back (solid, slatted, ladder, curved or none), tilted about the seat's rear edge."""
    if kind == "none":
        return []
    back_h, back_t = rng.uniform(0.3, 0.55), rng.uniform(0.025, 0.05)
    if wide:
        back_t = rng.uniform(0.06, 0.2)
    angle = rng.uniform(0.0, 0.25)
    tilt = _rot_x(-angle)
    base = np.array([0, base_y, -depth / 2 + back_t / 2])
    if kind == "curved":
        return [_curved_back(rng, width, back_h, back_t, base_y, -depth / 2 - 0.02, angle)]

    def back_part(extents, offset):
        return _box(extents, base + tilt @ np.asarray(offset, float), tilt)

    if kind == "solid":
        if rng.random() < 0.5:
            return [_rounded_box([width, back_h, back_t], base + tilt @ np.array([0, back_h / 2, 0]),
                                 rng.uniform(0.1, 0.4), tilt)]
        return [back_part([width, back_h, back_t], [0, back_h / 2, 0])]
    parts = []
    post = rng.uniform(0.03, 0.05)
    for sx in (-1, 1):
        parts.append(back_part([post, back_h, back_t], [sx * (width - post) / 2, back_h / 2, 0]))
    rail = rng.uniform(0.04, 0.1)
    parts.append(back_part([width, rail, back_t], [0, back_h - rail / 2, 0]))
    n = int(rng.integers(2, 6))
    if kind == "slatted":
        for x in np.linspace(-width / 2 + post, width / 2 - post, n + 2)[1:-1]:
            parts.append(back_part([0.6 * post, back_h - rail, 0.7 * back_t], [x, (back_h - rail) / 2, 0]))
    else:
        for y in np.linspace(0, back_h - rail, n + 1)[1:]:
            parts.append(back_part([width - post, 0.6 * rail, 0.7 * back_t], [0, y - 0.3 * rail, 0]))
    return parts


TABLE_TOPS = ("box", "rounded", "round", "glass_apron")
TABLE_BASES = ("legs", "trestle", "panels")


def make_table_parts(rng: np.random.Generator) -> tuple[list[trimesh.Trimesh], dict]:
    """The parts of one table and the structure chosen: top, base (legs, pedestal, trestle, panels), shelf."""
    height, top_t = rng.uniform(0.55, 0.8), rng.uniform(0.03, 0.06)
    s = {"top": str(rng.choice(TABLE_TOPS, p=[0.35, 0.25, 0.25, 0.15]))}
    if s["top"] == "round":
        radius = rng.uniform(0.35, 0.6)
        parts = [_cylinder(radius, [0, height - top_t, 0], [0, height, 0])]
        width = depth = 1.4 * radius
    else:
        width, depth = rng.uniform(0.8, 1.6), rng.uniform(0.5, 0.9)
        if s["top"] == "rounded":
            parts = [_rounded_box([width, top_t, depth], [0, height - top_t / 2, 0], rng.uniform(0.1, 0.3))]
        elif s["top"] == "glass_apron":  # a thin top on a frame of four rails
            top_t = rng.uniform(0.008, 0.015)
            parts = [_box([width, top_t, depth], [0, height - top_t / 2, 0])]
            rail_h = rng.uniform(0.05, 0.1)
            y = height - top_t - rail_h / 2
            parts += [_box([width * 0.96, rail_h, 0.025], [0, y, sz * depth * 0.46]) for sz in (-1, 1)]
            parts += [_box([0.025, rail_h, depth * 0.94], [sx * width * 0.47, y, 0]) for sx in (-1, 1)]
        else:
            parts = [_box([width, top_t, depth], [0, height - top_t / 2, 0])]
    s["base"] = "legs" if s["top"] == "round" else str(rng.choice(TABLE_BASES, p=[0.65, 0.2, 0.15]))
    under = height - top_t
    if s["base"] == "legs":
        legs, s["legs"] = _legs(rng, width, depth, height, under, round_legs=rng.random() < 0.5)
        parts += legs
    elif s["base"] == "trestle":  # an A-frame at each end joined by a stretcher
        for sx in (-1, 1):
            x = sx * width * 0.38
            for sz in (-1, 1):
                parts.append(_cylinder(0.025, [x, 0, sz * depth * 0.4], [x, under, sz * depth * 0.08]))
            parts.append(_box([0.05, 0.04, depth * 0.85], [x, 0.02, 0]))
        parts.append(_box([width * 0.8, 0.05, 0.04], [0, under * 0.45, 0]))
    else:  # solid end panels
        panel_t = rng.uniform(0.03, 0.07)
        for sx in (-1, 1):
            parts.append(_box([panel_t, under, depth * 0.9], [sx * (width / 2 - panel_t), under / 2, 0]))
    s["shelf"] = bool(rng.random() < 0.3)
    if s["shelf"]:
        parts.append(_box([0.8 * width, 0.02, 0.8 * depth], [0, 0.2 * height, 0]))
    return parts, s


CATEGORIES: dict[str, Callable[[np.random.Generator], tuple[list[trimesh.Trimesh], dict]]] = {
    "chair": make_chair_parts,
    "table": make_table_parts,
}


def shape_and_structure(category: str, seed: int, index: int) -> tuple[trimesh.Trimesh, dict]:
    """Shape `index` of `category` for `seed` and the choices that made it; deterministic, independent of others."""
    rng = np.random.default_rng([seed, index, list(CATEGORIES).index(category)])
    parts, structure = CATEGORIES[category](rng)
    parts, structure["defect"] = _imperfect(rng, parts)
    return trimesh.util.concatenate(parts), structure


def make_shape(category: str, seed: int, index: int) -> trimesh.Trimesh:
    """Shape `index` of `category` for `seed`: deterministic, independent of other shapes."""
    return shape_and_structure(category, seed, index)[0]


def write_dataset(out: str, category: str = "chair", num_train: int = 16, num_val: int = 4,
                  num_test: int = 4, seed: int = 0) -> list[layout.ShapeInfo]:
    """Writes `out/shapes/<obj_id>/mesh.obj` and `out/metainfo.csv`; returns the shapes.

    `category` may list several (`chair,table`): shapes take them in turn, in every split,
    for a multi-category set (one latent table, labels from metainfo.csv as for one, the
    category in its category column). Each category numbers its own shapes, so a category's
    shapes in a mixed set of n per split are those of its own set of n / len(categories).
    """
    categories = [c.strip() for c in category.split(",") if c.strip()]
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown or not categories:
        raise ValueError(f"--category={category!r}: expected one or more of {sorted(CATEGORIES)}")
    counts = {"train": num_train, "val": num_val, "test": num_test}
    ids, made, index = {}, {}, dict.fromkeys(categories, 0)
    for split, n in counts.items():
        ids[split] = []
        for k in range(n):
            kind = categories[k % len(categories)]
            obj_id = f"{kind}_{seed:03d}_{index[kind]:04d}"
            ids[split].append(obj_id)
            made[obj_id] = (kind, index[kind])
            index[kind] += 1
    shapes = layout.assign_labels(ids, {o: kind for o, (kind, _) in made.items()} if len(categories) > 1 else None)
    for shape in shapes:
        path = os.path.join(layout.shape_dir(out, shape.obj_id), layout.MESH)
        storage.atomic_export_mesh(path, make_shape(made[shape.obj_id][0], seed, made[shape.obj_id][1]))
    layout.write_metainfo(out, shapes)
    return shapes


def preview(path: str, category: str = "chair", seed: int = 0, count: int = 64, resolution: int = 128) -> str:
    """A grid picture of shapes 0..count-1 (normal maps from azimuth 30, elevation 20), to judge the variety."""
    camera = camera_lib.Camera(30.0, 20.0, 4.0, 2.0 * resolution, resolution, resolution)
    images = []
    for i in range(count):
        mesh = make_shape(category, seed, i)
        mesh = mesh_lib.normalize_mesh(mesh, mesh_lib.compute_normalization(mesh))
        cast = mesh_caster.cast_mesh(mesh.vertices, mesh.faces, camera)
        images.append(mesh_caster.normal_map_uint8(cast["normals"], cast["hit"], camera))
    side = int(np.ceil(np.sqrt(count)))
    storage.write_png(path, pictures.picture_grid([images[r * side:(r + 1) * side] for r in range(side) if images[r * side:]]))
    return path


def main(argv):
    del argv
    f = flags.FLAGS
    shapes = write_dataset(f.out, f.category, f.num_train, f.num_val, f.num_test, f.seed)
    print(f"wrote {len(shapes)} shapes ({f.category}) to {f.out}")
    if f.preview:
        first = f.category.split(",")[0].strip()
        print(f"preview of 64 {first}s: {preview(os.path.join(f.out, 'preview.png'), first, f.seed)}")


if __name__ == "__main__":  # flags live here so that importing this module defines none
    flags.DEFINE_string("out", "data/chair16", "Dataset folder to write.")
    flags.DEFINE_string("category", "chair", f"Shape category, or several comma-separated: {', '.join(CATEGORIES)}.")
    flags.DEFINE_integer("num_train", 16, "Training shapes.")
    flags.DEFINE_integer("num_val", 4, "Validation shapes.")
    flags.DEFINE_integer("num_test", 4, "Test shapes.")
    flags.DEFINE_integer("seed", 0, "Generator seed.")
    flags.DEFINE_bool("preview", False, "Also write <out>/preview.png: a grid of 64 shapes of this seed.")
    app.run(main)
