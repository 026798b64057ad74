"""A person's own scan as DeepSDF observations: surface points with normals, or one depth image.

    scan = read_point_scan("chair.ply")                      # PointScan: points (N, 3), normals (N, 3)
    scan = DepthScan(read_depth_image("depth.png"), Intrinsics.parse("525,525,319.5,239.5"), view=(40.0, 25.0))
    observed, frame = observe(scan)    # (M, 4) x, y, z, sdf rows, or (N, 5) x, y, z, lo, hi; normalised frame

Frames. A scan comes in its own units and place; the decoder knows shapes in DeepSDF's
normalised frame (bounding-box centre at the origin, farthest point at 1/1.03, y up, the
front towards +z). `frame` (a geometry.mesh.Normalization) maps the scan's frame into it:
given (e.g. a dataset shape's normalization.json), or estimated from the scan itself as
preprocessing normalises a mesh (`estimate_frame`); estimated from one depth view, it sees
only the visible side, so its centre sits nearer the camera than the shape's.

A depth image is a pinhole camera's depth along its optical axis (OpenCV's axes: x right,
y down, z forward; pixel (u, v) has its centre at (u, v)); `view` = (azimuth, elevation) in
degrees, sdfjax.render.camera's convention, says where the camera looked at the object
from. Its pixels become rays from the camera's centre; DeepSDF's partial-view protocol
(Sec. 6.3) observes their hits at sdf = 0 and the free space in front of them
(sdfjax.fit.partial.ray_observations). Scaling every depth scales the whole scene, so with
an estimated frame the depth units do not matter.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import point_cloud_utils as pcu
from PIL import Image

from sdfjax import errors
from sdfjax.fit import partial
from sdfjax.geometry import mesh as mesh_lib
from sdfjax.render import camera as camera_lib

POINT_FORMATS = (".ply", ".obj", ".off", ".xyz", ".txt", ".npy", ".npz")
DEPTH_FORMATS = (".png", ".npy")
# A scan mapped into the normalised frame must lie in the unit sphere (with some room for an imprecise frame) and
# span more than a sliver of it; past either, its units or its frame are wrong.
MAX_RADIUS = 1.5
MIN_EXTENT = 0.05


class ScanError(errors.DataError):
    """A scan that cannot be used, with the file or input named."""


@dataclasses.dataclass(frozen=True)
class PointScan:
    points: np.ndarray  # (N, 3) float64, the scan's frame
    normals: np.ndarray | None  # (N, 3) outward, or None when the file has none


@dataclasses.dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera's focal lengths and principal point, in pixels (OpenCV's convention)."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def parse(cls, text: str) -> "Intrinsics":
        """From "fx,fy,cx,cy"; ScanError naming --intrinsics when it is not four numbers with positive focals."""
        try:
            values = [float(v) for v in str(text).split(",")]
        except ValueError:
            values = []
        if len(values) != 4 or not np.all(np.isfinite(values)) or values[0] <= 0 or values[1] <= 0:
            raise ScanError(f"--intrinsics={text!r}: expected fx,fy,cx,cy in pixels, focal lengths above 0")
        return cls(*values)

    def directions(self, height: int, width: int) -> np.ndarray:
        """(H*W, 3) each pixel's ray direction in the camera frame, scaled to z = 1 (row-major over pixels)."""
        v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
        return np.stack([(u.reshape(-1) - self.cx) / self.fx, (v.reshape(-1) - self.cy) / self.fy,
                         np.ones(height * width)], axis=1)


@dataclasses.dataclass(frozen=True)
class DepthScan:
    depth: np.ndarray  # (H, W) along the optical axis, any unit; 0 where the pixel saw nothing
    intrinsics: Intrinsics
    view: tuple[float, float]  # (azimuth, elevation) degrees the camera looked from (module docstring)

    def rays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(directions (H*W, 3) unit, distances (H*W,) along them, hit (H*W,) bool) from the camera's centre, in
        the scan's frame: the camera's centre at the origin, the object's axes."""
        rays = self.intrinsics.directions(*self.depth.shape) @ camera_rotation(*self.view).T
        length = np.linalg.norm(rays, axis=1)
        return rays / length[:, None], self.depth.reshape(-1) * length, self.depth.reshape(-1) > 0

    def seen_points(self) -> np.ndarray:
        """(P, 3) the seen surface points, scan frame."""
        directions, distance, hit = self.rays()
        return directions[hit] * distance[hit, None]


def _check_rows(name: str, a: np.ndarray) -> None:
    if a.ndim != 2 or a.shape[1] != 3 or not len(a):
        raise ScanError(f"{name}: expected (N, 3) with N > 0, got shape {a.shape}")
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise ScanError(f"{name}: {int(bad.sum())} of {len(a)} rows are NaN or infinite")


def read_point_scan(path: str) -> PointScan:
    """Points and normals of a scan file: PLY/OBJ/OFF (vertices and their normals), XYZ/TXT (rows x y z [nx ny
    nz]), NPY ((N, 3) or (N, 6)) or NPZ (arrays `points` and `normals`). ScanError naming the file."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise ScanError(f"{path}: no such scan file")
    if ext not in POINT_FORMATS:
        raise ScanError(f"{path}: a point scan must be one of {', '.join(POINT_FORMATS)}")
    try:
        if ext in (".ply", ".obj", ".off"):
            points, _, normals = pcu.load_mesh_vfn(path)
            normals = normals if normals is not None and len(normals) == len(points) and len(normals) else None
        elif ext == ".npz":
            with np.load(path) as f:
                if "points" not in f:
                    raise ScanError(f"{path}: no array 'points' (found {', '.join(f.files) or 'none'})")
                points, normals = f["points"], (f["normals"] if "normals" in f else None)
        else:
            rows = np.load(path) if ext == ".npy" else np.loadtxt(path, ndmin=2)
            if rows.ndim != 2 or rows.shape[1] not in (3, 6):
                raise ScanError(f"{path}: expected rows x y z or x y z nx ny nz, got shape {rows.shape}")
            points, normals = rows[:, :3], (rows[:, 3:] if rows.shape[1] == 6 else None)
    except ScanError:
        raise
    except (OSError, ValueError, RuntimeError) as e:
        raise ScanError(f"{path}: cannot be read as a point scan ({e})") from None
    points = np.asarray(points, np.float64)
    _check_rows(f"{path}: points", points)
    if normals is not None:
        normals = np.asarray(normals, np.float64)
        _check_rows(f"{path}: normals", normals)
    return PointScan(points, normals)


def read_depth_image(path: str, depth_scale: float = 1000.0) -> np.ndarray:
    """(H, W) float64 depth along the optical axis: a 16-bit PNG's value / `depth_scale` (1000: millimetres to
    metres, as depth sensors write them), or an NPY of floats as they are; 0 or NaN where a pixel saw nothing."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise ScanError(f"{path}: no such depth image")
    if ext not in DEPTH_FORMATS:
        raise ScanError(f"{path}: a depth image must be a 16-bit PNG or an NPY array")
    if not depth_scale > 0:
        raise ScanError(f"--depth_scale={depth_scale}: must be above 0")
    try:
        if ext == ".png":
            with Image.open(path) as im:
                if im.mode not in ("I;16", "I;16B", "I"):
                    raise ScanError(f"{path}: a {im.mode} image, not a 16-bit depth PNG (one channel, uint16)")
                depth = np.asarray(im, np.float64) / depth_scale
        else:
            depth = np.load(path).astype(np.float64)
    except ScanError:
        raise
    except (OSError, ValueError) as e:
        raise ScanError(f"{path}: cannot be read as a depth image ({e})") from None
    if depth.ndim != 2:
        raise ScanError(f"{path}: expected one channel (H, W), got shape {depth.shape}")
    if np.any(depth[np.isfinite(depth)] < 0):
        raise ScanError(f"{path}: negative depths")
    return np.where(np.isfinite(depth), depth, 0.0)


def read_frame(path: str) -> mesh_lib.Normalization:
    """A frame from a JSON file {"offset": [x, y, z], "scale": s} (a dataset shape's normalization.json);
    ScanError naming the file."""
    try:
        with open(path) as f:
            frame = mesh_lib.Normalization.from_json(json.load(f))
    except OSError as e:
        raise ScanError(f"{path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise ScanError(f"{path}: expected {{\"offset\": [x, y, z], \"scale\": s}} ({type(e).__name__}: {e})") from None
    if frame.offset.shape != (3,) or not np.all(np.isfinite(frame.offset)) or not frame.scale > 0:
        raise ScanError(f"{path}: the offset must be 3 finite numbers and the scale above 0")
    return frame


def estimate_frame(points: np.ndarray) -> mesh_lib.Normalization:
    """DeepSDF's normalisation of the scanned points themselves (as preprocessing normalises a mesh)."""
    try:
        return mesh_lib.points_normalization(points, "the scan")
    except mesh_lib.MeshError as e:
        raise ScanError(str(e)) from None


def check_in_frame(normalized: np.ndarray, name: str) -> None:
    """ScanError naming `name` when scan points in the normalised frame are outside the unit sphere or tiny:
    their units or frame are wrong."""
    reach = float(np.max(np.linalg.norm(normalized, axis=1)))
    extent = float(np.max(normalized.max(axis=0) - normalized.min(axis=0)))
    if reach > MAX_RADIUS:
        raise ScanError(f"{name}: the scan reaches {reach:.3g} from the centre of the normalised frame (the unit "
                        "sphere): are its units and frame those of the given normalisation?")
    if extent < MIN_EXTENT:
        raise ScanError(f"{name}: the scan spans only {extent:.3g} of the unit sphere: are its units and frame "
                        "those of the given normalisation?")


def point_scan_observations(scan: PointScan, frame: mesh_lib.Normalization | None = None, name: str = "scan",
                            seed: int = 0) -> tuple[np.ndarray, mesh_lib.Normalization]:
    """((M, 4) SDF samples in the normalised frame, the frame used) of a point scan: DeepSDF's samples along the
    normals (sdfjax.fit.partial.oriented_point_samples); `frame` None: estimated from the points."""
    if scan.normals is None:
        raise ScanError(f"{name}: the scan has no normals; surface points need their outward normals to say "
                        "which side is outside (estimate them first, e.g. point-cloud-utils' "
                        "estimate_point_cloud_normals_knn, oriented away from the scanner)")
    frame = frame or estimate_frame(scan.points)
    normalized = frame.to_normalized(scan.points)
    check_in_frame(normalized, name)
    try:
        return partial.oriented_point_samples(normalized, scan.normals, seed=seed), frame
    except ValueError as e:
        raise ScanError(f"{name}: {e}") from None


def camera_rotation(azimuth: float, elevation: float) -> np.ndarray:
    """(3, 3) from OpenCV camera axes (x right, y down, z forward) to the object frame, for a camera at
    (azimuth, elevation) degrees in sdfjax.render.camera's convention."""
    forward, right, up = camera_lib.Camera(float(azimuth), float(elevation)).axes()
    return np.stack([right, -up, forward], axis=1)


def depth_scan_observations(scan: DepthScan, rng: np.random.Generator, frame: mesh_lib.Normalization | None = None,
                            name: str = "depth") -> tuple[np.ndarray, mesh_lib.Normalization]:
    """((N, 5) rows x, y, z, lo, hi in the normalised frame, the frame used) of one depth image; `frame` None:
    estimated from the seen points."""
    directions, distance, hit = scan.rays()
    if hit.sum() < 3:
        raise ScanError(f"{name}: {int(hit.sum())} pixels have a depth; nothing to fit")
    points = directions[hit] * distance[hit, None]
    frame = frame or estimate_frame(points)
    check_in_frame(frame.to_normalized(points), name)
    origin = frame.to_normalized(np.zeros((1, 3)))
    return partial.ray_observations(np.broadcast_to(origin, directions.shape), directions,
                                    distance * frame.scale, hit, rng), frame


def observe(scan: PointScan | DepthScan, frame: mesh_lib.Normalization | None = None, name: str = "scan",
            seed: int = 0) -> tuple[np.ndarray, mesh_lib.Normalization]:
    """(DeepSDF observations in the normalised frame, the frame used) of either kind of scan."""
    if isinstance(scan, DepthScan):
        return depth_scan_observations(scan, np.random.default_rng(seed), frame, name)
    return point_scan_observations(scan, frame, name, seed)


def scan_points(scan: PointScan | DepthScan) -> np.ndarray:
    """(P, 3) the surface points a scan saw, in its own frame."""
    return scan.seen_points() if isinstance(scan, DepthScan) else scan.points
