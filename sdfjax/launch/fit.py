r"""Fits latent codes of a split's shapes, extracts meshes and scores them; or fits one scan of your own.

    python -m sdfjax.launch.fit --config=configs/chair16.py --workdir=runs/chair16 --config.fit.split=val
    python -m sdfjax.launch.fit --config=configs/chair16.py:cpu --workdir=runs/chair16_cpu \
        --config.fit.obj_ids=chair_000_0016,chair_000_0017 --config.fit.init=mean --config.fit.restarts=2
    python -m sdfjax.launch.fit ... --config.fit.partial=True      # shape completion from one depth view
    # your own scan (no dataset): surface points with normals, or one depth image and its camera
    python -m sdfjax.launch.fit --config=chairs256:cpu --workdir=pretrained/chairs256_cpu --points=scan.ply
    python -m sdfjax.launch.fit --config=chairs256:cpu --workdir=pretrained/chairs256_cpu --depth=depth.png \
        --intrinsics=525,525,319.5,239.5 --view=40,25 [--depth_scale=1000]

A split writes <workdir>/fit/<timestamp>/: metrics.csv, latents.npz, meshes/<obj_id>.obj,
fit_loss.png (sdfjax.fit.reconstruct), and prints the metrics table. A scan writes
<workdir>/fit_scan/<timestamp>/: mesh.obj in the scan's frame and units, mesh_normalized.obj,
latent.npz, metrics.json (sdfjax.fit.reconstruct.fit_scan; frames in sdfjax.fit.scans).
"""

import sys

from absl import flags

from sdfjax.evaluators import tables
from sdfjax.fit import reconstruct, scans
from sdfjax.launch import common


def report(summary: dict) -> None:
    by_category = [{**mean, "obj_id": f"mean of {category}"} for category, mean in summary.get("category_means", {}).items()]
    print(tables.format_table(summary["rows"] + by_category + [summary["mean"]]))
    print(f"chamfer is x1000 in the original frame; results in {summary['out_dir']}")


def read_scan(f):
    """The scan the flags name (scans.PointScan or scans.DepthScan), and its frame (None: estimated)."""
    frame = scans.read_frame(f.normalization) if f.normalization else None
    if f.points:
        return scans.read_point_scan(f.points), frame
    if not f.intrinsics:
        raise scans.ScanError("--depth needs --intrinsics=fx,fy,cx,cy (pixels) of its camera")
    try:
        view = tuple(float(v) for v in f.view)
    except ValueError:
        view = ()
    if len(view) != 2:
        raise scans.ScanError(f"--view={','.join(f.view)}: expected azimuth,elevation in degrees")
    return scans.DepthScan(scans.read_depth_image(f.depth, f.depth_scale), scans.Intrinsics.parse(f.intrinsics),
                           view), frame


def report_scan(summary: dict) -> None:
    m = summary["metrics"]
    if summary["mesh"] is None:
        print(f"the fitted latent has no surface (fit loss {m['fit_loss']:.4g}); files in {summary['out_dir']}")
        return
    print(f"fitted {m['observations']:,} observations (fit loss {m['fit_loss']:.4g}); the scan's points lie "
          f"{m['scan_to_mesh_median']:.4g} (median) / {m['scan_to_mesh_p90']:.4g} (90%) from the mesh, in its "
          f"units; mesh in {summary['out_dir']}/mesh.obj")


def main(argv):
    del argv
    f = flags.FLAGS
    common.quiet_logging()
    if f.points and f.depth:
        sys.exit("error: give --points or --depth, not both")
    with common.exit_on():
        if f.points or f.depth:
            scan, frame = read_scan(f)
            summary = reconstruct.fit_scan(f.config, f.workdir, scan, frame, out_dir=f.out_dir or None)
        else:
            summary = reconstruct.fit_split(f.config, f.workdir, out_dir=f.out_dir or None)
    (report_scan if f.points or f.depth else report)(summary)


if __name__ == "__main__":  # flags live here so that importing this module defines none
    flags.DEFINE_string("points", "", "A scan's surface points with outward normals: .ply/.obj/.off (vertex normals), "
                        ".xyz/.txt (x y z nx ny nz rows), .npy (N, 6) or .npz (points, normals).")
    flags.DEFINE_string("depth", "", "A depth image: a 16-bit PNG (value / --depth_scale) or an .npy of floats; "
                        "0 where nothing was seen.")
    flags.DEFINE_string("intrinsics", "", "The depth camera's fx,fy,cx,cy in pixels (OpenCV's convention).")
    flags.DEFINE_float("depth_scale", 1000.0, "A depth PNG's units per depth unit (1000: millimetres).")
    flags.DEFINE_list("view", ["0", "20"], "azimuth,elevation (degrees) the depth camera looked from "
                      "(sdfjax.render.camera: 0 = the front, positive elevation = from above).")
    flags.DEFINE_string("normalization", "", "JSON {offset, scale} from the scan's frame to the model's "
                        "(default: estimated from the scan).")
    common.run_on_trained(main)
