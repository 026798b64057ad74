"""Training DeepSDF: data, sharded steps, checkpoints, logs, resume.

    summary = train(config, workdir)

reads the train split of `config.data.root`'s TFDS dataset (preprocess it first:
sdfjax.data.pipeline.ensure_dataset, which the launcher calls), trains
`config.train.num_epochs` epochs, and writes to `workdir`:

    checkpoints/<step>/   Orbax: state (decoder, latents, optimiser, step) + meta (obj_ids, config)
    metrics.jsonl         one line per epoch: loss, sdf_loss, latent_reg, learning rates, latent norm
    events.out.tfevents*  the same for TensorBoard (written by tensorboardX, no TensorFlow)
    loss.png              the loss curve, at the end

A workdir that holds a checkpoint is resumed from its latest step; batches and dropout
are pure functions of (seed, step), so a resumed run continues to the same result.
What one step does is `sdfjax.train.step.make_train_step`.
"""

from __future__ import annotations

import json
import math

import jax
import numpy as np

from sdfjax import parallel, trained
from sdfjax.data import tfds_builder
from sdfjax.data.batching import SceneBatcher
from sdfjax.models import decoder as decoder_lib
from sdfjax.train import loop
from sdfjax.train import step as step_lib


def _meta(config, obj_ids, labels) -> dict:
    rows = [""] * (max(labels) + 1)
    for obj_id, label in zip(obj_ids, labels):
        rows[label] = obj_id
    return {"obj_ids": rows, "config": json.loads(config.to_json_best_effort())}


def train(config, workdir: str, progress: bool = True, stop_after_steps: int | None = None) -> dict:
    """Trains (or resumes) DeepSDF; returns a summary of the last epoch.

    `stop_after_steps` ends the run early (after a checkpoint), for tests and benchmarks.
    """
    obj_ids, labels = tfds_builder.split_index(config, "train")
    source = tfds_builder.data_source(config, "train")
    tc = config.train
    mesh = parallel.make_mesh()
    batcher = SceneBatcher(source, np.asarray(labels), tc, config.seed, (jax.process_index(), jax.process_count()))
    steps_per_epoch = batcher.steps_per_epoch
    total_steps = tc.num_epochs * steps_per_epoch
    num_rows = max(labels) + 1
    if tc.shard_latents:  # rows split evenly across devices; padding rows are never looked up
        num_rows = math.ceil(num_rows / jax.device_count()) * jax.device_count()

    decoder = decoder_lib.from_config(config.model)
    optimizer = step_lib.make_optimizer(tc, steps_per_epoch)
    init_fn = lambda k: step_lib.init_state(decoder, optimizer, num_rows, k, tc.code_bound)  # noqa: E731
    init_key = jax.random.key(config.seed)
    abstract = jax.eval_shape(init_fn, init_key)
    shardings = step_lib.state_shardings(abstract, mesh, tc.shard_latents)
    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(decoder, optimizer, tc, steps_per_epoch, config.seed), shardings, mesh)

    meta = _meta(config, obj_ids, labels)
    spec = loop.RunSpec(
        workdir, total_steps, steps_per_epoch, tc.checkpoint_every_epochs,
        items_per_step=tc.scenes_per_batch * tc.samples_per_scene, items_name="points_per_s", desc="train",
        schedules={"decoder_lr": step_lib.lr_schedule(tc.decoder_lr, tc, steps_per_epoch),
                   "latent_lr": step_lib.lr_schedule(tc.latent_lr, tc, steps_per_epoch)}, meta=meta)
    batches = lambda start, end: (parallel.global_batch(b, mesh) for b in batcher.iterate(start, end))  # noqa: E731
    _, summary = loop.train(loop.Trainer(spec, init_fn, init_key, abstract, shardings,
                                         lambda saved: trained.check_decoder_matches(saved, config), train_step,
                                         batches), progress, stop_after_steps)
    return {**summary, "obj_ids": meta["obj_ids"]}
