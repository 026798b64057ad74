r"""User-style sketch PNGs of dataset shapes, drawn stroke by stroke outside the dataset's sketch pipeline.

    python -m data_gen.user_sketches --data=data/chairs256 --out=tests/data/user_sketches \
        --obj_ids=chair_000_0288,chair_000_0290,chair_000_0293 --views=30:20,320:25,90:5

The dataset's sketches are Canny edges of rendered normal and depth maps at the render
resolution. These are drawn the way a drawing program would: the mesh's visible feature
edges (sharp creases over `--crease_degrees`, open borders, and the silhouette, where a
face towards the camera meets one away from it) are projected through the camera, cut
where the surface hides them (a ray-cast depth test), joined into polylines and drawn
as anti-aliased strokes `--line_width` pixels wide on a `--width` x `--height` canvas,
with the drawing off-centre and smaller than the dataset's framing. Each PNG comes with
its shape and view in `sketches.json`, and the shape's mesh as imported (`shapes/<obj_id>.obj`),
so sketch-to-shape scores it against the true shape with or without the dataset
(`python -m sdfjax.launch.sketch2shape --user_set=<out>/sketches.json`).
"""

from __future__ import annotations

import json
import os

import numpy as np
import trimesh
from absl import app, flags
from PIL import Image, ImageDraw

from sdfjax import storage
from sdfjax.data import layout
from sdfjax.render import camera as camera_lib
from sdfjax.render.mesh_caster import cast_mesh

FLAGS = flags.FLAGS


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


def draw_user_sketch(mesh: trimesh.Trimesh, azimuth: float, elevation: float, width: int = 300, height: int = 240,
                     line_width: int = 3, fill: float = 0.6, offset=(0.12, -0.08), crease_degrees: float = 35.0,
                     render_size: int = 256) -> np.ndarray:
    """(height, width) uint8 drawing of `mesh` (normalised frame) seen from (azimuth, elevation), dark on white."""
    camera = camera_lib.Camera(azimuth, elevation, 4.0, 2.0 * render_size, render_size, render_size)
    cast = cast_mesh(mesh.vertices, mesh.faces, camera)
    depth = cast["depth"].reshape(render_size, render_size)
    hit = cast["hit"].reshape(render_size, render_size)
    lines = visible_polylines(feature_edges(mesh, camera.position, crease_degrees), camera, depth, hit)
    if not lines:
        raise ValueError("no visible edges: the mesh is empty or outside the view")
    everything = np.concatenate(lines)
    lo, hi = everything.min(0), everything.max(0)
    scale = fill * min(width, height) / max(hi - lo)
    centre = np.array([width, height]) * (0.5 + np.asarray(offset))
    image = Image.new("L", (width, height), 255)
    pen = ImageDraw.Draw(image)
    for line in lines:
        xy = (line - (lo + hi) / 2) * scale + centre
        pen.line([tuple(p) for p in xy], fill=20, width=line_width, joint="curve")
    return np.asarray(image)


def main(argv):
    del argv
    ids = FLAGS.obj_ids
    views = [tuple(float(x) for x in v.split(":")) for v in FLAGS.views]
    if len(ids) != len(views):
        raise app.UsageError(f"{len(ids)} obj_ids but {len(views)} views")
    os.makedirs(FLAGS.out, exist_ok=True)
    manifest = []
    for obj_id, (azimuth, elevation) in zip(ids, views):
        path = storage.join(layout.shape_dir(FLAGS.data, obj_id), layout.NORMALIZED_MESH)
        mesh = trimesh.load(path, force="mesh", process=False)
        drawing = draw_user_sketch(mesh, azimuth, elevation, line_width=FLAGS.line_width)
        name = f"{obj_id}_az{azimuth:g}_el{elevation:g}.png"
        Image.fromarray(drawing).save(os.path.join(FLAGS.out, name))
        shape = os.path.join("shapes", f"{obj_id}.obj")
        storage.atomic_write_bytes(os.path.join(FLAGS.out, shape),
                                   storage.read_bytes(storage.join(layout.shape_dir(FLAGS.data, obj_id), layout.MESH)))
        manifest.append({"file": name, "obj_id": obj_id, "azimuth": azimuth, "elevation": elevation, "mesh": shape})
        print(os.path.join(FLAGS.out, name))
    storage.atomic_write_text(os.path.join(FLAGS.out, "sketches.json"), json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    flags.DEFINE_string("data", "data/chairs256", "Preprocessed dataset root (normalised meshes).")
    flags.DEFINE_string("out", "tests/data/user_sketches", "Folder for the PNGs and sketches.json.")
    flags.DEFINE_list("obj_ids", ["chair_000_0288", "chair_000_0290", "chair_000_0293"], "Shapes to draw.")
    flags.DEFINE_list("views", ["40:25", "320:15", "90:5"], "azimuth:elevation per shape (degrees, positive above).")
    flags.DEFINE_integer("line_width", 3, "Stroke width in pixels.")
    app.run(main)
