r"""Fits latent codes of a split's shapes, extracts meshes and scores them.

    python -m sdfjax.launch.fit --config=configs/chair16.py --workdir=runs/chair16 --config.fit.split=val
    python -m sdfjax.launch.fit --config=configs/chair16.py:cpu --workdir=runs/chair16_cpu \
        --config.fit.obj_ids=chair_000_0016,chair_000_0017 --config.fit.init=mean --config.fit.restarts=2
    python -m sdfjax.launch.fit ... --config.fit.partial=True      # shape completion from one depth view

Writes <workdir>/fit/<timestamp>/: metrics.csv, latents.npz, meshes/<obj_id>.obj, fit_loss.png
(sdfjax.fit.reconstruct), and prints the metrics table.
"""

from sdfjax.evaluators import tables
from sdfjax.fit import reconstruct
from sdfjax.launch import common


def report(summary: dict) -> None:
    print(tables.format_table(summary["rows"] + [summary["mean"]]))
    print(f"chamfer is x1000 in the original frame; results in {summary['out_dir']}")


if __name__ == "__main__":
    common.run_job(reconstruct.fit_split, report)
