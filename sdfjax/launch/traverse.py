r"""Meshes along a path between two latent codes (Sketch2Shape's traverse_latent.py).

    python -m sdfjax.launch.traverse --config=configs/chair16.py --workdir=runs/chair16 \
        --config.traverse.start=mean --config.traverse.end=3 --config.traverse.steps=20
    python -m sdfjax.launch.traverse ... --config.traverse.interpolation=slerp \
        --config.traverse.end=runs/chair16/fit/<timestamp>/latents.npz:chair_000_0016

Writes <workdir>/traverse/<timestamp>/step=000.obj ... and latents.npz (sdfjax.fit.traverse).
"""

import sys

from absl import flags, logging

from sdfjax.launch import common


def main(argv):
    del argv
    f = flags.FLAGS
    if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
        logging.set_verbosity(logging.ERROR)
    from sdfjax.fit import traverse

    try:
        summary = traverse.traverse(f.config, f.workdir)
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(f"{len(summary['meshes'])} meshes in {summary['out_dir']}")


if __name__ == "__main__":
    common.define_config_flag()
    flags.DEFINE_string("workdir", None, "Training run folder (its latest checkpoint is used).")
    flags.mark_flags_as_required(["workdir"])
    common.run(main)
