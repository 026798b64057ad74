r"""Drawings of known chairs made the way people draw them: the evaluation set of sketch to shape.

    python -m data_gen.user_sketches --data=data/chairs256 --out=tests/data/user_sketches   # 16 chairs x 4 views

The dataset's sketches are Canny edges of rendered normal and depth maps. These are drawn
stroke by stroke, as a person with a pen would, from the mesh itself:

1. The lines a person draws: the mesh's visible feature edges (creases sharper than
   `crease_degrees`, open borders, and the silhouette, where a face towards the eye meets
   one away from it), projected through the camera and cut where the surface hides them
   (a ray-cast depth test). Hidden lines are never drawn.
2. Strokes: the visible pieces joined end to end into long strokes where they continue one
   another, simplified, and the shortest left out.
3. A hand (`Hand`): each stroke drifts slowly sideways, runs past its ends, is sometimes
   lifted midway (a gap) or drawn twice a little apart, with a pen width of its own.
4. A page: a canvas of another size than the dataset's, the drawing smaller than the
   dataset's framing and off centre.

Views are the ones people draw chairs from (sdfjax.render.camera: azimuth 0 is the chair's
front, positive elevations from above): three-quarter front left and front right 15-35
degrees above, the front 15-25 degrees above, and the side nearly level. Everything is
seeded by the chair's id and the view, so the same command writes the same bytes. Each PNG
comes with its shape and view in `sketches.json` and the shape's mesh as imported
(`shapes/<obj_id>.obj`), so sketch to shape scores it against the true shape with or
without the dataset (`python -m sdfjax.launch.sketch2shape --user_set=<out>/sketches.json`).

This generator shares no code and no parameter with the encoders' training augmentation
(sdfjax.train.augment), so the set measures drawings the models never saw the like of
(tests/test_sketches.py checks that it does not import it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import zlib

import numpy as np
import trimesh
from absl import app, flags
from PIL import Image, ImageDraw
from scipy import spatial
from skimage import measure

from sdfjax import storage
from sdfjax.data import layout
from sdfjax.geometry import mesh as mesh_lib
from sdfjax.render import camera as camera_lib
from sdfjax.render.mesh_caster import cast_mesh

FLAGS = flags.FLAGS

# (name, azimuth range, elevation range) in degrees: the views people draw chairs from
VIEW_KINDS = (("front_left", (305.0, 330.0), (15.0, 35.0)), ("front_right", (30.0, 55.0), (15.0, 35.0)),
              ("front", (-8.0, 8.0), (15.0, 25.0)), ("side", (80.0, 100.0), (0.0, 10.0)))


@dataclasses.dataclass(frozen=True)
class Hand:
    """How a person's strokes differ from the mesh's edges; lengths in canvas pixels."""

    width: tuple[float, float] = (1.6, 3.6)  # a stroke's pen width
    drift: tuple[float, float] = (0.4, 1.8)  # amplitude of a stroke's slow sideways drift
    drift_period: tuple[float, float] = (35.0, 110.0)  # its wavelength along the stroke
    overshoot: tuple[float, float] = (0.0, 6.0)  # how far a stroke runs past each of its ends
    lift_chance: float = 0.2  # a stroke is lifted once along its length, leaving a gap
    lift: tuple[float, float] = (3.0, 8.0)  # the gap's length
    twice_chance: float = 0.12  # a stroke drawn a second time beside the first
    twice_apart: tuple[float, float] = (0.8, 2.2)
    shortest: float = 5.0  # strokes shorter than this are left out
    join: float = 2.5  # pieces whose ends meet within this (and continue one another) are one stroke
    supersample: int = 3  # the canvas is drawn this many times larger, then reduced (anti-aliasing)


def feature_edges(mesh: trimesh.Trimesh, eye: np.ndarray, crease_degrees: float) -> np.ndarray:
    """(E, 2, 3) segments: creases sharper than `crease_degrees`, silhouette edges seen from `eye`, open borders."""
    pairs = mesh.face_adjacency
    edges = mesh.face_adjacency_edges
    centres = mesh.triangles_center
    facing = np.sum(mesh.face_normals * (eye - centres), axis=1) > 0
    crease = mesh.face_adjacency_angles > np.radians(crease_degrees)
    silhouette = facing[pairs[:, 0]] != facing[pairs[:, 1]]
    keep = edges[crease | silhouette]
    counts = np.bincount(trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1).ravel(),
                         minlength=len(mesh.edges_sorted)) if len(mesh.edges_sorted) else np.zeros(0, int)
    border = mesh.edges_sorted[counts > 0] if counts.any() else np.zeros((0, 2), int)
    return mesh.vertices[np.concatenate([keep, border])]


def project(points: np.ndarray, camera: camera_lib.Camera) -> tuple[np.ndarray, np.ndarray]:
    """(pixel (n, 2) as (column, row), distance from the eye (n,)) of object points under `camera`."""
    forward, right, up = camera.axes()
    d = points - camera.position
    depth = d @ forward
    x, y = (d @ right) / depth, (d @ up) / depth
    return np.stack([x * camera.focal + camera.width / 2, -y * camera.focal + camera.height / 2], -1), \
        np.linalg.norm(d, axis=-1)


def visible_polylines(segments: np.ndarray, camera: camera_lib.Camera, depth: np.ndarray, hit: np.ndarray,
                      tolerance: float = 0.02) -> list[np.ndarray]:
    """Pixel polylines of the parts of `segments` the surface does not hide (depth test on the cast depth map)."""
    h, w = depth.shape
    lines = []
    for a, b in segments:
        (pa, pb), _ = project(np.stack([a, b]), camera)
        steps = int(np.ceil(np.linalg.norm(pb - pa))) + 1
        t = np.linspace(0.0, 1.0, max(steps, 2))
        points = a[None] * (1 - t[:, None]) + b[None] * t[:, None]
        pixels, distance = project(points, camera)
        col = np.clip(pixels[:, 0].astype(int), 0, w - 1)
        row = np.clip(pixels[:, 1].astype(int), 0, h - 1)
        window = [(np.clip(row + di, 0, h - 1), np.clip(col + dj, 0, w - 1)) for di in (-1, 0, 1) for dj in (-1, 0, 1)]
        # a point is seen when nothing in front of it covers its pixel (or a neighbour: silhouettes sit on an edge)
        front = np.max([np.where(hit[r, c], depth[r, c], np.inf) for r, c in window], axis=0)
        seen = distance <= front + tolerance
        start = None
        for k, ok in enumerate(np.append(seen, False)):
            if ok and start is None:
                start = k
            elif not ok and start is not None:
                if k - start >= 2:
                    lines.append(pixels[start:k])
                start = None
    return lines


def _direction(line: np.ndarray, at_end: bool) -> np.ndarray:
    """Unit direction in which a polyline leaves its end (`at_end`) or its start (pointing outwards)."""
    a, b = (line[-1], line[max(len(line) - 4, 0)]) if at_end else (line[0], line[min(3, len(line) - 1)])
    d = a - b
    return d / max(np.linalg.norm(d), 1e-9)


def join_strokes(pieces: list[np.ndarray], join: float, max_turn_degrees: float = 40.0) -> list[np.ndarray]:
    """Pieces joined end to end where one continues another (ends within `join` px, turning less than
    `max_turn_degrees`): the long strokes a person draws instead of one per mesh edge."""
    strokes = [np.asarray(p, np.float64) for p in pieces if len(p) >= 2]
    if not strokes:
        return []
    cos_turn = np.cos(np.radians(max_turn_degrees))
    used = np.zeros(len(strokes), bool)
    trees = ((spatial.cKDTree(np.stack([s[0] for s in strokes])), False),  # a piece leaving the tip as it runs
             (spatial.cKDTree(np.stack([s[-1] for s in strokes])), True))  # or reversed
    joined = []
    for k in range(len(strokes)):
        if used[k]:
            continue
        used[k] = True
        line = strokes[k]
        for forward in (True, False):  # grow past the end, then before the start
            while True:
                tip, out = (line[-1], _direction(line, True)) if forward else (line[0], _direction(line, False))
                found = None
                for tree, reverse in trees:
                    for j in tree.query_ball_point(tip, join):
                        away = strokes[j][::-1] if reverse else strokes[j]  # away[0] at the tip
                        if not used[j] and float(-_direction(away, False) @ out) >= cos_turn:
                            found = j, away
                            break
                    if found:
                        break
                if found is None:
                    break
                used[found[0]] = True
                away = found[1]
                line = np.concatenate([line, away[1:]]) if forward else np.concatenate([away[:0:-1], line])
        joined.append(line)
    return joined


def _resample(line: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """(points every `spacing` px along a polyline, their arc length)."""
    lengths = np.linalg.norm(np.diff(line, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(lengths)])
    at = np.linspace(0.0, s[-1], max(int(s[-1] / spacing) + 1, 2))
    return np.stack([np.interp(at, s, line[:, 0]), np.interp(at, s, line[:, 1])], -1), at


def hand_stroke(line: np.ndarray, hand: Hand, rng: np.random.Generator) -> list[tuple[np.ndarray, float]]:
    """The (polyline, pen width) pieces a hand draws for one stroke: overshoot, drift, a lift, a second pass."""
    line = np.concatenate([line[:1] + _direction(line, False) * rng.uniform(*hand.overshoot), line,
                           line[-1:] + _direction(line, True) * rng.uniform(*hand.overshoot)])
    points, s = _resample(line, 1.5)
    tangent = np.gradient(points, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], -1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    passes = [0.0] + ([rng.choice([-1.0, 1.0]) * rng.uniform(*hand.twice_apart)] if rng.random() < hand.twice_chance
                      else [])
    width = rng.uniform(*hand.width)
    drawn = []
    for apart in passes:
        drift = rng.uniform(*hand.drift) * np.sin(2 * np.pi * s / rng.uniform(*hand.drift_period)
                                                  + rng.uniform(0, 2 * np.pi))
        path = points + normal * (drift + apart)[:, None]
        keep = np.ones(len(path), bool)
        if rng.random() < hand.lift_chance and s[-1] > 4 * hand.lift[1]:
            centre = rng.uniform(0.25, 0.75) * s[-1]
            keep &= np.abs(s - centre) > rng.uniform(*hand.lift) / 2
        for run in np.split(np.arange(len(path)), np.flatnonzero(np.diff(keep.astype(int))) + 1):
            if keep[run[0]] and len(run) >= 2:
                drawn.append((path[run], width * (0.8 if apart else 1.0)))
    return drawn


def draw_user_sketch(mesh: trimesh.Trimesh, azimuth: float, elevation: float, seed: int = 0, width: int = 360,
                     height: int = 300, fill: float | None = None, offset=None, hand: Hand = Hand(),
                     crease_degrees: float = 35.0, render_size: int = 256) -> np.ndarray:
    """(height, width) uint8 drawing of `mesh` (normalised frame) seen from (azimuth, elevation), dark on white;
    `fill` (the drawing's longer side over the canvas's shorter) and `offset` (of its centre, as shares of the
    canvas) drawn from `seed` when None, as is every stroke."""
    rng = np.random.default_rng(seed)
    fill = rng.uniform(0.55, 0.8) if fill is None else fill
    offset = rng.uniform(-0.1, 0.1, size=2) if offset is None else np.asarray(offset)
    camera = camera_lib.Camera(azimuth, elevation, 4.0, 2.0 * render_size, render_size, render_size)
    cast = cast_mesh(mesh.vertices, mesh.faces, camera)
    depth = cast["depth"].reshape(render_size, render_size)
    hit = cast["hit"].reshape(render_size, render_size)
    pieces = visible_polylines(feature_edges(mesh, camera.position, crease_degrees), camera, depth, hit)
    if not pieces:
        raise ValueError("no visible edges: the mesh is empty or outside the view")
    everything = np.concatenate(pieces)
    lo, hi = everything.min(0), everything.max(0)
    k = hand.supersample
    scale = fill * min(width, height) / max(hi - lo)
    centre = np.array([width, height]) * (0.5 + offset)
    canvas = Image.new("L", (width * k, height * k), 255)
    pen = ImageDraw.Draw(canvas)
    for line in join_strokes([(p - (lo + hi) / 2) * scale + centre for p in pieces], hand.join):
        line = measure.approximate_polygon(line, tolerance=0.6)
        if np.linalg.norm(np.diff(line, axis=0), axis=1).sum() < hand.shortest:
            continue
        for path, pen_width in hand_stroke(line, hand, rng):
            pen.line([tuple(p) for p in path * k], fill=25, width=max(1, int(round(pen_width * k))), joint="curve")
    return np.asarray(canvas.resize((width, height), Image.Resampling.LANCZOS))


def normalized_mesh(mesh_path: str) -> trimesh.Trimesh:
    """A mesh file in DeepSDF's unit-sphere frame, as preprocessing normalises it."""
    mesh = mesh_lib.load_mesh(mesh_path)
    return mesh_lib.normalize_mesh(mesh, mesh_lib.compute_normalization(mesh))


def view_of(obj_id: str, kind: int) -> tuple[str, float, float]:
    """(name, azimuth, elevation) of view kind `kind` (VIEW_KINDS) of a chair, drawn from its id."""
    name, azimuths, elevations = VIEW_KINDS[kind]
    rng = np.random.default_rng([zlib.crc32(obj_id.encode()), kind])
    return name, round(float(rng.uniform(*azimuths)) % 360.0, 1), round(float(rng.uniform(*elevations)), 1)


def drawing_plan(obj_ids: list[str], views_per_chair: int) -> list[tuple[str, int]]:
    """(obj_id, view kind) of every drawing, chairs varying fastest, so the first few are of different chairs
    and views."""
    return [(obj_ids[i % len(obj_ids)], (i // len(obj_ids) + i) % len(VIEW_KINDS))
            for i in range(len(obj_ids) * views_per_chair)]


def write_set(data: str, out: str, obj_ids: list[str], views_per_chair: int) -> list[dict]:
    """The drawings of `obj_ids` (meshes under `data`), sketches.json and shapes/ in `out`; returns the entries."""
    os.makedirs(os.path.join(out, "shapes"), exist_ok=True)
    manifest = []
    meshes = {}
    for obj_id, kind in drawing_plan(obj_ids, views_per_chair):
        source = storage.join(layout.shape_dir(data, obj_id), layout.MESH)
        shape = os.path.join("shapes", f"{obj_id}.obj")
        if obj_id not in meshes:
            storage.atomic_write_bytes(os.path.join(out, shape), storage.read_bytes(source))
            meshes[obj_id] = normalized_mesh(os.path.join(out, shape))
        view, azimuth, elevation = view_of(obj_id, kind)
        drawing = draw_user_sketch(meshes[obj_id], azimuth, elevation, seed=zlib.crc32(f"{obj_id}_{view}".encode()))
        name = f"{obj_id}_{view}.png"
        Image.fromarray(drawing).save(os.path.join(out, name), optimize=True)
        manifest.append({"file": name, "obj_id": obj_id, "azimuth": azimuth, "elevation": elevation, "mesh": shape})
        print(os.path.join(out, name))
    storage.atomic_write_text(os.path.join(out, "sketches.json"), json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv):
    del argv
    ids = FLAGS.obj_ids or [s.obj_id for s in layout.read_metainfo(FLAGS.data) if s.split == "test"][:FLAGS.chairs]
    write_set(FLAGS.data, FLAGS.out, ids, FLAGS.views_per_chair)


if __name__ == "__main__":
    flags.DEFINE_string("data", "data/chairs256", "Dataset root whose shapes/<obj_id>/ hold the meshes.")
    flags.DEFINE_string("out", "tests/data/user_sketches", "Folder for the PNGs, sketches.json and shapes/.")
    flags.DEFINE_list("obj_ids", [], "Chairs to draw (default: the first --chairs of the test split).")
    flags.DEFINE_integer("chairs", 16, "Test chairs drawn when --obj_ids is empty.")
    flags.DEFINE_integer("views_per_chair", 4, f"Drawings per chair, of the {len(VIEW_KINDS)} view kinds.")
    app.run(main)
