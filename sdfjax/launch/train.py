r"""Trains DeepSDF: `python -m sdfjax.launch.train --config=configs/chair16.py --workdir=runs/chair16`.

    python -m sdfjax.launch.train --config=configs/chair16.py:cpu --workdir=runs/chair16_cpu
    python -m sdfjax.launch.train --config=configs/chair16.py --workdir=runs/x --config.train.num_epochs=50

Preprocesses the dataset first if it has no TFDS dataset yet; resumes when the workdir
holds a checkpoint. Multi-host: pass --coordinator_address/--num_processes/--process_id,
or run under a TPU pod / Slurm, whose environment `jax.distributed.initialize()` reads itself.
"""

from absl import flags, logging

from sdfjax import parallel
from sdfjax.launch import common
from sdfjax.train import deepsdf, loop


def main(argv):
    del argv
    f = flags.FLAGS
    common.quiet_logging(logging.WARNING)  # Orbax logs every save at INFO
    common.initialize_from_flags()
    with common.exit_on(loop.TrainingDiverged):
        common.prepare_dataset(f.config)
        summary = deepsdf.train(f.config, f.workdir)
    if parallel.is_main_process() and summary.get("loss") is not None:
        print(f"trained to epoch {summary['epoch']}: loss {summary['loss']:.5f}; "
              f"checkpoint step {summary['checkpoint_step']} in {f.workdir}/checkpoints; "
              f"metrics {f.workdir}/metrics.jsonl, curve {f.workdir}/loss.png")


if __name__ == "__main__":
    common.run_trainer(main, "Run folder: checkpoints, metrics, pictures.")
