r"""Sketch to shape: optimises a DeepSDF latent until its render matches a sketch (Sketch2Shape).

    # a drawing of your own, seen from azimuth 40, elevation -30 (degrees)
    python -m sdfjax.launch.sketch2shape --config=configs/chair16.py:cpu --workdir=runs/chair16_cpu \
        --sketch=my_chair.png --config.sketch.azimuth=40 --config.sketch.elevation=-30
    # the val sketches of the dataset (views config.sketch.views), scored against the true shapes
    python -m sdfjax.launch.sketch2shape --config=configs/chair16.py:cpu --workdir=runs/chair16_cpu \
        --config.fit.split=val

Needs the DeepSDF checkpoint and the Siamese encoder (train_siamese) in the workdir.
Writes <workdir>/sketch2shape/<timestamp>/: meshes/, latents.npz, pictures/ and, for
dataset sketches, metrics.csv (sketch2shape beside retrieval alone and SDF fitting).
"""

from absl import flags

from sdfjax.fit import reports
from sdfjax.launch import common
from sdfjax.sketch2shape import optimize


def main(argv):
    del argv
    f = flags.FLAGS
    common.quiet_logging()
    with common.exit_on():
        summary = optimize.sketch_to_shape(f.config, f.workdir, sketch_path=f.sketch or None,
                                            out_dir=f.out_dir or None)
    if summary["means"]:
        print(reports.format_table([{**m, "obj_id": method} for method, m in summary["means"].items()]))
    print(f"meshes, latents and pictures (sketch | start | end | other views) in {summary['out_dir']}")


if __name__ == "__main__":
    flags.DEFINE_string("sketch", "", "A PNG (or any image) of a drawing; empty: the sketches of config.fit.split.")
    common.run_on_trained(main, "Run folder with the DeepSDF checkpoint and siamese/ (train_siamese).")
