r"""Fits latent codes to ground-truth normal maps through the differentiable sphere tracer.

    python -m sdfjax.launch.optimize_normals --config=configs/chair16.py:cpu --workdir=runs/chair16_cpu \
        --config.fit.split=val --config.fit.init=mean

Writes <workdir>/optimize_normals/<timestamp>/: metrics.csv, latents.npz, meshes/,
pictures/<obj_id>.png (ground truth | first render | final render per view).
"""

from sdfjax.evaluators import tables
from sdfjax.fit import normals
from sdfjax.launch import common


def report(summary: dict) -> None:
    print(tables.format_table(summary["rows"] + [summary["mean"]]))
    print(f"results and pictures in {summary['out_dir']}")


if __name__ == "__main__":
    common.run_job(normals.fit_normals_split, report)
