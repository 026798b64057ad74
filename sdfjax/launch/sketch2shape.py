r"""Sketch to shape: encoder start, then a DeepSDF latent refined until its renders match the sketches.

    # a drawing of your own, seen from azimuth 40, elevation 20 (degrees), with the shipped model (no dataset)
    python -m sdfjax.launch.sketch2shape --workdir=pretrained/chairs256_cpu --sketch=my_chair.png \
        --azimuths=40 --elevations=20
    # drawings of known shapes (data_gen.user_sketches: PNGs, views and meshes), scored against those shapes
    python -m sdfjax.launch.sketch2shape --workdir=pretrained/chairs256_cpu \
        --user_set=tests/data/user_sketches/sketches.json
    # one chair drawn from the front and from the side: one latent for both
    python -m sdfjax.launch.sketch2shape --workdir=runs/chair16_cpu \
        --sketch=front.png,side.png --azimuths=0,90 --elevations=10,10
    # the val sketches of the dataset (views config.sketch.views), scored against the true shapes
    python -m sdfjax.launch.sketch2shape --config=chair16:cpu --workdir=runs/chair16_cpu --config.fit.split=val

Needs the DeepSDF checkpoint, the Siamese encoder (train_siamese) and, for the default
--config.sketch.init=encoder, the sketch-to-latent encoder (train_encoder) in the workdir;
without --config, the workdir's own config. Retrieval (a baseline, or --config.sketch.init=
retrieval) searches the workdir's saved index (an export's retrieval/) or the dataset's
training shapes; with neither, it is left out. Writes <workdir>/sketch2shape/<timestamp>/:
meshes/, latents.npz, pictures/ and, for sketches of known shapes, metrics.csv
(sketch2shape beside the encoder alone, retrieval alone and SDF fitting where the dataset
has the shape's samples).
"""

import os

from absl import flags

from sdfjax.evaluators import tables

from sdfjax.launch import common
from sdfjax.sketch2shape import optimize


def main(argv):
    del argv
    f = flags.FLAGS
    common.quiet_logging()
    with common.exit_on():
        views = None
        if f.azimuths or f.elevations:
            if len(f.azimuths) != len(f.elevations):
                raise ValueError(f"--azimuths has {len(f.azimuths)} values and --elevations {len(f.elevations)}")
            views = [(float(a), float(e)) for a, e in zip(f.azimuths, f.elevations)]
        summary = optimize.sketch_to_shape(f.config, f.workdir, sketch_paths=f.sketch or None, views=views,
                                            out_dir=f.out_dir or None, user_set=f.user_set or None)
    if summary["means"]:
        print(f"mean over {len(summary['names'])} sketches (refined: sketch2shape; encoder: its start; retrieval: "
              "the nearest training shape)")
        print(tables.format_table([{**m, "obj_id": method} for method, m in summary["means"].items()], "method"))
    print(f"meshes, latents and pictures in {summary['out_dir']}")
    for name in summary["names"][:4]:
        print(f"picture: {os.path.join(summary['out_dir'], 'pictures', name + '.png')}")


if __name__ == "__main__":
    flags.DEFINE_list("sketch", [], "PNGs (or any images) of drawings of one object, comma-separated; empty: the "
                      "sketches of config.fit.split.")
    flags.DEFINE_list("azimuths", [], "Per --sketch: the azimuth it was drawn from (degrees); default "
                      "config.sketch.azimuth.")
    flags.DEFINE_string("user_set", "", "A sketches.json of user-style PNGs of dataset shapes (data_gen.user_sketches): "
                        "each shaped and scored against its shape.")
    flags.DEFINE_list("elevations", [], "Per --sketch: the elevation (degrees); default config.sketch.elevation.")
    common.run_on_trained(main, "Run folder with the DeepSDF checkpoint and siamese/ (train_siamese).")
