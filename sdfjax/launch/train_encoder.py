r"""Trains the sketch-to-latent encoder (Sketch2Shape) against a trained DeepSDF run.

    python -m sdfjax.launch.train_encoder --config=configs/chair16.py:cpu --workdir=runs/chair16_cpu
    python -m sdfjax.launch.train_encoder --config=configs/chairs256.py:cpu --workdir=runs/chairs256_cpu \
        --config.encoder.holdout_views=(11,47)

Needs the DeepSDF checkpoint in the workdir (its decoder and latent table are the targets).
Writes <workdir>/encoder/ (checkpoints, metrics.jsonl, loss.png); resumes when it holds a
checkpoint. Multi-host flags as for sdfjax.launch.train.
"""

import math

from sdfjax.launch import common
from sdfjax.train import latent_encoder


def report(summary: dict) -> None:
    held = summary["holdout_latent_mse"]
    print(f"trained to step {summary['step']}: loss {summary['loss']:.4g}, latent MSE {summary['latent_mse']:.4g}, "
          f"SDF L1 {summary['sdf_l1']:.4g}"
          + ("" if math.isnan(held) else f"; held-out views {summary['holdout_views']}: latent MSE {held:.4g}")
          + f"; checkpoint step {summary['checkpoint_step']} in {summary['workdir']}/checkpoints")
    if "val_score_x1000" in summary:
        print(f"val shapes ({summary['val_shapes']}, never trained on): fitting loss of the predicted latents on "
              f"their own SDF samples x1000, median {summary['val_score_x1000']:.2f} (near the surface "
              f"{summary['val_near_x1000']:.2f}, away from it {summary['val_far_x1000']:.2f}; the mean trained "
              f"latent: {summary['val_mean_latent_score_x1000']:.2f})")


if __name__ == "__main__":
    common.run_training(latent_encoder.train_encoder, report,
                        "Run folder (the DeepSDF run's): the encoder goes to <workdir>/encoder.")
