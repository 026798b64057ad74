"""The DeepSDF training loop: data, sharded steps, checkpoints, logs, resume.

    summary = train(config, workdir)

reads the train split of `config.data.root` (preprocessing it first if its TFDS dataset
is missing), trains `config.train.num_epochs` epochs, and writes to `workdir`:

    checkpoints/<step>/   Orbax: state (decoder, latents, optimiser, step) + meta (obj_ids, config)
    metrics.jsonl         one line per epoch: loss, sdf_loss, latent_reg, learning rates, latent norm
    events.out.tfevents*  the same for TensorBoard (written by tensorboardX, no TensorFlow)
    loss.png              the loss curve, at the end

A workdir that holds a checkpoint is resumed from its latest step; batches and dropout
are pure functions of (seed, step), so a resumed run continues to the same result.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import numpy as np

from sdfjax import checkpoint, parallel
from sdfjax.data import layout, tfds_builder
from sdfjax.data.batching import SceneBatcher
from sdfjax.models import decoder as decoder_lib
from sdfjax.train import step as step_lib


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message names the step."""


def ensure_dataset(config) -> None:
    if os.path.isdir(tfds_builder.dataset_path(config)):
        return
    from data_gen import preprocess

    print(f"no TFDS dataset under {config.data.root}: preprocessing it first", file=sys.stderr)
    results = preprocess.preprocess_dataset(config, progress=parallel.is_main_process())
    if results and all(r.status == "failed" for r in results):
        raise layout.DataError(f"{config.data.root}: every shape failed to preprocess; see failures.csv")


def _meta(config, obj_ids, labels) -> dict:
    rows = [""] * (max(labels) + 1)
    for obj_id, label in zip(obj_ids, labels):
        rows[label] = obj_id
    return {"obj_ids": rows, "config": json.loads(config.to_json_best_effort())}


def check_decoder_matches(meta: dict, config) -> None:
    """Raises ValueError when the checkpoint's decoder differs from `config.model`."""
    saved = meta.get("config", {}).get("model", {})
    keys = ("latent_dim", "hidden_dim", "num_layers", "skip_layers", "weight_norm", "fourier_frequencies")
    diff = {k: (saved.get(k), config.model.get(k)) for k in keys
            if k in saved and as_plain(saved.get(k)) != as_plain(config.model.get(k))}
    if diff:
        raise ValueError("the checkpoint's decoder does not match config.model: "
                         + ", ".join(f"{k} saved {a} vs config {b}" for k, (a, b) in diff.items()))


def as_plain(v):
    return list(v) if isinstance(v, (list, tuple)) else v


class _Logs:
    """metrics.jsonl + TensorBoard, process 0 only."""

    def __init__(self, workdir: str, enabled: bool):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.writer = None
        if enabled:
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(workdir)

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for k, v in record.items():
            if k not in ("epoch", "step") and isinstance(v, (int, float)):
                self.writer.add_scalar(f"train/{k}", v, record["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    latest = {}  # a resumed run rewrites steps after its checkpoint: keep the last of each
    for r in records:
        latest[r["step"]] = r
    return [latest[e] for e in sorted(latest)]


def plot_loss(workdir: str, series: dict[str, str] | None = None, x: str = "epoch") -> str:
    """workdir/loss.png: the metrics.jsonl columns of `series` ({key: label}) against `x`, log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(workdir)
    path = os.path.join(workdir, "loss.png")
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (series or {"loss": "loss", "sdf_loss": "clamped L1"}).items():
        ax.plot([r[x] for r in records], [r[key] for r in records], label=label)
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_title(os.path.basename(os.path.normpath(workdir)))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def train(config, workdir: str, progress: bool = True, stop_after_steps: int | None = None) -> dict:
    """Trains (or resumes) DeepSDF; returns a summary of the last epoch.

    `stop_after_steps` ends the run early (after a checkpoint), for tests and benchmarks.
    """
    main = parallel.is_main_process()
    if main:
        ensure_dataset(config)
    if jax.process_count() > 1:  # the others wait for process 0's preprocessing
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("sdfjax: dataset ready")
    obj_ids, labels = tfds_builder.split_index(config, "train")
    source = tfds_builder.data_source(config, "train")
    tc = config.train
    mesh = parallel.make_mesh()
    batcher = SceneBatcher(source, np.asarray(labels), tc.scenes_per_batch, tc.samples_per_scene, config.seed,
                           jax.process_index(), jax.process_count(), tc.cache_shapes)
    steps_per_epoch = batcher.steps_per_epoch
    total_steps = tc.num_epochs * steps_per_epoch
    num_rows = max(labels) + 1
    if tc.shard_latents:  # rows split evenly across devices; padding rows are never looked up
        num_rows = math.ceil(num_rows / jax.device_count()) * jax.device_count()

    decoder = decoder_lib.from_config(config.model)
    optimizer = step_lib.make_optimizer(tc, steps_per_epoch)
    init_key = jax.random.key(config.seed)
    abstract = jax.eval_shape(lambda k: step_lib.init_state(decoder, optimizer, num_rows, k, tc.code_bound), init_key)
    shardings = step_lib.state_shardings(abstract, mesh, tc.shard_latents)
    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(decoder, optimizer, tc, steps_per_epoch, config.seed), shardings, mesh)

    os.makedirs(workdir, exist_ok=True)
    mngr = checkpoint.manager(workdir)
    meta = _meta(config, obj_ids, labels)
    if mngr.latest_step() is not None:
        saved_meta = checkpoint.read_meta(workdir)
        check_decoder_matches(saved_meta, config)
        state, _ = checkpoint.restore(mngr, checkpoint.abstract_with_shardings(abstract, shardings))
        if main:
            print(f"resuming from {workdir} at step {int(state['step'])}", file=sys.stderr)
    else:
        state = jax.jit(lambda k: step_lib.init_state(decoder, optimizer, num_rows, k, tc.code_bound),
                        out_shardings=shardings)(init_key)
    start = int(jax.device_get(state["step"]))
    end = total_steps if stop_after_steps is None else min(total_steps, start + stop_after_steps)
    schedules = {"decoder_lr": step_lib.lr_schedule(tc.decoder_lr, tc, steps_per_epoch),
                 "latent_lr": step_lib.lr_schedule(tc.latent_lr, tc, steps_per_epoch)}

    state, record, last_good = run_steps(
        train_step, state, (parallel.global_batch(local, mesh) for local in batcher.iterate(start, end)),
        start=start, end=end, total_steps=total_steps, steps_per_period=steps_per_epoch,
        checkpoint_every_periods=tc.checkpoint_every_epochs, schedules=schedules,
        items_per_step=tc.scenes_per_batch * tc.samples_per_scene, items_name="points_per_s",
        mngr=mngr, meta=meta, workdir=workdir, desc="train", progress=progress)
    if main and record:
        plot_loss(workdir)
    return {**record, "workdir": workdir, "obj_ids": meta["obj_ids"], "checkpoint_step": last_good}


def run_steps(train_step, state, batches, *, start: int, end: int, total_steps: int, steps_per_period: int,
              checkpoint_every_periods: int, schedules: dict, items_per_step: int, items_name: str, mngr,
              meta: dict, workdir: str, desc: str, progress: bool = True):
    """Runs steps start..end-1 of a training run; returns (state, last record, last checkpointed step).

    Shared by every trainer here. Steps are grouped in periods of `steps_per_period`
    (DeepSDF: an epoch): after each period the metrics are fetched once, checked for
    NaN, averaged into one record of metrics.jsonl / TensorBoard (with the learning
    rates of `schedules` and the throughput `items_name`), and every
    `checkpoint_every_periods` periods, and at `end`, the state is saved. Records and
    files come from process 0 only.
    """
    from tqdm import tqdm

    main = parallel.is_main_process()
    logs = _Logs(workdir, main)
    bar = tqdm(total=total_steps, initial=start, desc=desc, unit="step", disable=not (progress and main),
               file=sys.stderr, dynamic_ncols=True)
    period_metrics, period_start, last_good = [], time.perf_counter(), mngr.latest_step()
    record = {}
    try:
        for batch in batches:
            state, metrics = train_step(state, batch)
            period_metrics.append(metrics)
            bar.update()
            step = start + len(period_metrics)
            if step % steps_per_period and step != end:
                continue
            fetched = jax.device_get(period_metrics)
            for i, m in enumerate(fetched):
                if not np.isfinite(m["loss"]):
                    bad = step - len(fetched) + i
                    raise TrainingDiverged(
                        f"loss is {m['loss']} at step {bad} (epoch {bad // steps_per_period}); training stopped; "
                        f"the last good checkpoint is step {last_good} in {os.path.join(workdir, 'checkpoints')}")
            period = (step - 1) // steps_per_period
            seconds = time.perf_counter() - period_start
            record = {"epoch": period, "step": step,
                      **{k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]},
                      **{k: float(s(step - 1)) for k, s in schedules.items()},
                      "seconds": seconds, items_name: len(fetched) * items_per_step / seconds}
            logs.write(record)
            bar.set_postfix(loss=f"{record['loss']:.4g}", epoch=period)
            if (period + 1) % checkpoint_every_periods == 0 or step == end:
                last_good = checkpoint.save(mngr, state, meta)
            start, period_metrics, period_start = step, [], time.perf_counter()
    finally:
        bar.close()
        logs.close()
    return state, record, last_good
