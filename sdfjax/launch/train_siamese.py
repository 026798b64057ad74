r"""Trains the Siamese sketch / normal-map encoder (Sketch2Shape) on the train split.

    python -m sdfjax.launch.train_siamese --config=configs/chair16.py:cpu --workdir=runs/chair16_cpu
    python -m sdfjax.launch.train_siamese --config=configs/chair16.py --workdir=runs/chair16 \
        --config.siamese.triplet=batch_hard --config.siamese.shared_tower=False

Writes <workdir>/siamese/ (checkpoints, metrics.jsonl, loss.png); resumes when it holds a
checkpoint. The workdir is the DeepSDF run's, so sketch2shape finds both models there.
Multi-host flags as for sdfjax.launch.train.
"""

from sdfjax.launch import common
from sdfjax.train import siamese


def report(summary: dict) -> None:
    print(f"trained to step {summary['step']}: triplet loss {summary['loss']:.4f}, in-batch sketch->normal "
          f"recall@1 {summary['batch_recall_at_1']:.3f}; checkpoint step {summary['checkpoint_step']} in "
          f"{summary['workdir']}/checkpoints; metrics {summary['workdir']}/metrics.jsonl")


if __name__ == "__main__":
    common.run_training(siamese.train_siamese, report,
                        "Run folder (the DeepSDF run's): the encoder goes to <workdir>/siamese.")
