"""Your own scans: reading them, their geometry against analytic answers, frames, bad input, the launcher."""

import json
import os
import subprocess
import sys

import numpy as np
import point_cloud_utils as pcu
import pytest
import trimesh
from PIL import Image

from sdfjax.fit import scans
from sdfjax.geometry import mesh as mesh_lib
from sdfjax.render import camera as camera_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(ROOT, "pretrained", "chairs256_cpu")
RADIUS = 0.5


def _sphere_depth(camera: camera_lib.Camera) -> np.ndarray:
    """(H, W) depth along the optical axis of a sphere of RADIUS at the origin, 0 where a ray misses it."""
    origins, directions = (a.astype(np.float64) for a in camera.rays())
    b = np.sum(origins * directions, axis=1)
    disc = b**2 - (np.sum(origins**2, axis=1) - RADIUS**2)
    t = np.where(disc > 0, -b - np.sqrt(np.maximum(disc, 0)), 0.0)
    return (t * (directions @ camera.axes()[0])).reshape(camera.height, camera.width)


def _intrinsics(camera):
    return scans.Intrinsics(camera.focal, camera.focal, camera.width / 2 - 0.5, camera.height / 2 - 0.5)


def test_a_depth_image_back_projects_onto_the_surface_it_saw_from_its_view():
    camera = camera_lib.Camera(azimuth=30.0, elevation=20.0, distance=4.0, focal=60.0, width=48, height=40)
    scan = scans.DepthScan(_sphere_depth(camera), _intrinsics(camera), (30.0, 20.0))
    directions, _, hit = scan.rays()
    np.testing.assert_allclose(directions, camera.rays()[1], atol=1e-6)  # the same pixels' rays as our camera's
    seen = scan.seen_points() + camera.position  # the scan frame has the camera's centre at its origin
    assert hit.sum() > 150
    np.testing.assert_allclose(np.linalg.norm(seen, axis=1), RADIUS, atol=1e-5)  # float32 rays made the depth
    assert np.all(seen @ camera_lib.direction_from_angles(30.0, 20.0) > 0)  # the side facing the camera

    rows, frame = scans.observe(scan, seed=0)
    surface, free = rows[rows[:, 4] == 0], rows[rows[:, 4] > 0]
    assert len(surface) == hit.sum() and len(free) > len(surface)
    # In the true frame, every free-space point is outside the sphere, and its interval holds its true distance.
    known = mesh_lib.Normalization(offset=camera.position, scale=1.0)
    rows, _ = scans.observe(scan, frame=known, seed=0)
    free = rows[rows[:, 4] > 0]
    true_sdf = np.linalg.norm(free[:, :3], axis=1) - RADIUS
    assert np.all(true_sdf >= -1e-5) and np.all(true_sdf <= free[:, 4] + 1e-5)
    # An estimated frame does not care about units: millimetres give the same observations as metres.
    in_mm = scans.DepthScan(scan.depth * 1000.0, scan.intrinsics, scan.view)
    np.testing.assert_allclose(scans.observe(in_mm, seed=0)[0], scans.observe(scan, seed=0)[0], atol=1e-4)
    assert scans.observe(in_mm, seed=0)[1].scale == pytest.approx(frame.scale / 1000.0)


def test_a_point_scan_is_read_from_each_format_and_its_frame_is_dataset_normalisation(tmp_path):
    sphere = trimesh.creation.icosphere(3, radius=2.0)
    points = sphere.vertices * 10.0 + [5.0, 0.0, -3.0]
    normals = sphere.vertex_normals
    pcu.save_mesh_vn(str(tmp_path / "scan.ply"), points, normals)
    np.savetxt(tmp_path / "scan.xyz", np.concatenate([points, normals], axis=1))
    np.save(tmp_path / "scan.npy", np.concatenate([points, normals], axis=1))
    np.savez(tmp_path / "scan.npz", points=points, normals=normals)
    for name in ("scan.ply", "scan.xyz", "scan.npy", "scan.npz"):
        scan = scans.read_point_scan(str(tmp_path / name))
        np.testing.assert_allclose(scan.points, points, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(scan.normals, normals, atol=1e-5)
    rows, frame = scans.observe(scans.read_point_scan(str(tmp_path / "scan.npz")))
    np.testing.assert_allclose(frame.offset, [-5.0, 0.0, 3.0], atol=1e-9)
    assert frame.scale == pytest.approx(1.0 / (20.0 * mesh_lib.NORMALIZATION_MARGIN))
    on_surface = rows[rows[:, 3] == 0, :3]
    np.testing.assert_allclose(np.linalg.norm(on_surface, axis=1), 1 / mesh_lib.NORMALIZATION_MARGIN, rtol=1e-6)
    moved = rows[np.abs(rows[:, 3]) > 0][: 2 * len(points)]  # the first offset, outside then inside
    np.testing.assert_allclose(np.linalg.norm(moved[:, :3], axis=1) - 1 / mesh_lib.NORMALIZATION_MARGIN,
                               moved[:, 3], atol=2e-3)


@pytest.mark.parametrize("make,message", [
    (lambda d: pcu.save_mesh_v(str(d / "s.ply"), np.random.default_rng(0).normal(size=(50, 3))), "has no normals"),
    (lambda d: np.savetxt(d / "s.xyz", np.array([[0, 0, 0, 0, 0, 1], [np.nan, 1, 0, 0, 0, 1]])),
     "1 of 2 rows are NaN"),
    (lambda d: (d / "s.xyz").write_text(""), "expected rows x y z|cannot be read"),
    (lambda d: np.savez(d / "s.npz", xyz=np.zeros((3, 3))), "no array 'points'"),
    (lambda d: (d / "s.stl").write_text("solid"), "a point scan must be one of"),
])
def test_a_bad_point_scan_is_one_message_naming_its_file(tmp_path, make, message):
    make(tmp_path)
    path = str(next(p for p in tmp_path.iterdir()))
    with pytest.raises(scans.ScanError, match=message) as e:
        scans.observe(scans.read_point_scan(path), name=path)
    assert path in str(e.value)


def test_wrong_units_a_bad_depth_image_and_bad_intrinsics_are_named(tmp_path):
    points = trimesh.creation.icosphere(2).vertices
    scan = scans.PointScan(points * 1000.0, points)  # millimetres, but the given frame is in metres
    with pytest.raises(scans.ScanError, match="scan.ply: the scan reaches 971 from the centre"):
        scans.observe(scan, frame=mesh_lib.Normalization(np.zeros(3), 1 / 1.03), name="scan.ply")
    with pytest.raises(scans.ScanError, match="spans only 0.00206"):
        scans.observe(scans.PointScan(points * 1e-3, points), frame=mesh_lib.Normalization(np.zeros(3), 1.03))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "colour.png")
    with pytest.raises(scans.ScanError, match="colour.png: a RGB image, not a 16-bit depth PNG"):
        scans.read_depth_image(str(tmp_path / "colour.png"))
    Image.fromarray(np.zeros((8, 8), np.uint16)).save(tmp_path / "empty.png")
    empty = scans.DepthScan(scans.read_depth_image(str(tmp_path / "empty.png")), scans.Intrinsics(8, 8, 4, 4), (0, 0))
    with pytest.raises(scans.ScanError, match="depth.png: 0 pixels have a depth"):
        scans.observe(empty, name="depth.png")
    for text in ("525,525,320", "a,b,c,d", "0,525,320,240"):
        with pytest.raises(scans.ScanError, match="--intrinsics=.*expected fx,fy,cx,cy"):
            scans.Intrinsics.parse(text)
    (tmp_path / "frame.json").write_text('{"offset": [0, 0], "scale": 1}')
    with pytest.raises(scans.ScanError, match="frame.json: the offset must be 3 finite numbers"):
        scans.read_frame(str(tmp_path / "frame.json"))


def _fit(*args):
    return subprocess.run([sys.executable, "-m", "sdfjax.launch.fit", f"--workdir={SHIPPED}",
                           "--config.fit.num_iterations=150", "--config.mesh.resolution=64", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=ROOT))


@pytest.mark.slow
def test_the_launcher_fits_a_point_scan_and_a_depth_image_in_their_own_units(tmp_path):
    import sdfjax

    model = sdfjax.load_pretrained(SHIPPED)
    chair = model.mesh(model.latents[5], resolution=64)  # a chair the model knows, in millimetres elsewhere
    points, faces = trimesh.sample.sample_surface(chair, 5000, seed=1)
    pcu.save_mesh_vn(str(tmp_path / "scan.ply"), points * 800.0 + [100.0, 0.0, 2000.0], chair.face_normals[faces])
    result = _fit(f"--points={tmp_path / 'scan.ply'}", f"--out_dir={tmp_path / 'points'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "from the mesh, in its units" in result.stdout
    metrics = json.loads((tmp_path / "points" / "metrics.json").read_text())
    assert metrics["scan_to_mesh_median"] < 8.0  # millimetres on a chair about 1,300 mm across
    fitted = trimesh.load(tmp_path / "points" / "mesh.obj", force="mesh")
    assert np.allclose(fitted.bounds.mean(axis=0), chair.bounds.mean(axis=0) * 800 + [100, 0, 2000], atol=40)

    camera = camera_lib.Camera(azimuth=30.0, elevation=20.0, distance=4.0, focal=128.0, width=64, height=64)
    from sdfjax.render import mesh_caster
    cast = mesh_caster.cast_mesh(chair.vertices, chair.faces, camera)
    z = np.where(cast["hit"], cast["depth"] * (camera.rays()[1] @ camera.axes()[0]), 0.0)
    Image.fromarray(np.round(z * 1000).reshape(64, 64).astype(np.uint16)).save(tmp_path / "depth.png")
    result = _fit(f"--depth={tmp_path / 'depth.png'}", "--intrinsics=128,128,31.5,31.5", "--view=30,20",
                  f"--out_dir={tmp_path / 'depth'}")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "depth" / "metrics.json").read_text())
    assert metrics["scan_to_mesh_median"] < 20.0  # millimetres
    for bad, message in ((["--depth=x.png"], "--depth needs --intrinsics"),
                         ([f"--points={tmp_path / 'nothing.ply'}"], "nothing.ply: no such scan file"),
                         ([f"--depth={tmp_path / 'depth.png'}", "--intrinsics=1,1,0,0", "--view=north"],
                          "--view=north: expected azimuth,elevation")):
        result = _fit(*bad)
        assert result.returncode != 0 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
