r"""Meshes along a path between two latent codes (Sketch2Shape's traverse_latent.py).

    python -m sdfjax.launch.traverse --config=configs/chair16.py --workdir=runs/chair16 \
        --config.traverse.start=mean --config.traverse.end=3 --config.traverse.steps=20
    python -m sdfjax.launch.traverse ... --config.traverse.interpolation=slerp \
        --config.traverse.end=runs/chair16/fit/<timestamp>/latents.npz:chair_000_0016

Writes <workdir>/traverse/<timestamp>/step=000.obj ... and latents.npz (sdfjax.fit.traverse).
"""

from sdfjax.fit import traverse
from sdfjax.launch import common


def report(summary: dict) -> None:
    print(f"{len(summary['meshes'])} meshes in {summary['out_dir']}")


if __name__ == "__main__":
    common.run_job(traverse.traverse, report)
