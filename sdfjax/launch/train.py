r"""Trains DeepSDF: `python -m sdfjax.launch.train --config=configs/chair16.py --workdir=runs/chair16`.

    python -m sdfjax.launch.train --config=configs/chair16.py:cpu --workdir=runs/chair16_cpu
    python -m sdfjax.launch.train --config=configs/chair16.py --workdir=runs/x --config.train.num_epochs=50

Preprocesses the dataset first if it has no TFDS dataset yet; resumes when the workdir
holds a checkpoint. Multi-host: pass --coordinator_address/--num_processes/--process_id,
or run under a TPU pod / Slurm, whose environment `jax.distributed.initialize()` reads itself.
"""

from sdfjax.launch import common
from sdfjax.train import deepsdf


def report(summary: dict) -> None:
    workdir = summary["workdir"]
    print(f"trained to epoch {summary['epoch']}: loss {summary['loss']:.5f}; "
          f"checkpoint step {summary['checkpoint_step']} in {workdir}/checkpoints; "
          f"metrics {workdir}/metrics.jsonl, curve {workdir}/loss.png")


if __name__ == "__main__":
    common.run_training(deepsdf.train, report, "Run folder: checkpoints, metrics, pictures.")
