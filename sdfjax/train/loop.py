"""The training loop every trainer shares: resume or start, run steps, log, check, checkpoint.

    state, summary = train(Trainer(spec, init_fn, init_key, abstract, shardings, check_meta, step, batches))

A trainer (sdfjax.train.deepsdf, sdfjax.train.siamese, sdfjax.train.latent_encoder) builds its
state, step function and batches into a `Trainer`; `train` does the rest the same way for
all of them: `resume_or_init`, `run_steps`, the loss plot and the summary.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
import optax
from tqdm import tqdm

from sdfjax import checkpoint, locks, parallel, storage
from sdfjax.train import logs as logs_lib
from sdfjax.train.logs import MetricsLog


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the message names the step."""


def resume_or_init(mngr, abstract_state, shardings, init_fn: Callable, check_meta: Callable[[dict], None],
                   init_key: jax.Array, workdir: str):
    """The latest readable checkpoint's state placed by `shardings`, or `init_fn(init_key)` when there is none.

    `check_meta(saved_meta)` raises ValueError when the checkpoint cannot be resumed
    with this config (another model, another image size).
    """
    if mngr.latest_step() is None:
        return jax.jit(init_fn, out_shardings=shardings)(init_key)
    meta = checkpoint.read_meta(workdir)
    if meta is not None:
        check_meta(meta)  # before reading the state: a different model cannot be restored into this one
    state, _, step = checkpoint.restore_good(workdir, checkpoint.abstract_with_shardings(abstract_state, shardings))
    if step != mngr.latest_step():  # later checkpoints could not be read: this run writes those steps again
        if parallel.is_main_process():
            for moved in checkpoint.set_aside_after(workdir, step):
                print(f"unreadable checkpoint moved to {moved}", file=sys.stderr)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils  # only multi-host runs need it

            multihost_utils.sync_global_devices("sdfjax: unreadable checkpoints set aside")
        mngr.reload()
    if parallel.is_main_process():
        print(f"resuming from {workdir} at step {step}", file=sys.stderr)
    return state


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """How a run is counted, logged and saved (`run_steps`)."""

    workdir: str  # checkpoints/, metrics.jsonl, TensorBoard events and loss.png go here
    total_steps: int
    steps_per_period: int  # steps per metrics record (DeepSDF: an epoch)
    checkpoint_every_periods: int
    items_per_step: int  # for the throughput column
    items_name: str  # its name in metrics.jsonl, e.g. "points_per_s"
    desc: str  # the progress bar's label
    schedules: dict = dataclasses.field(default_factory=dict)  # name -> optax schedule, logged per record
    meta: dict = dataclasses.field(default_factory=dict)  # saved beside each checkpoint
    plot_labels: dict | None = None  # metric -> label of loss.png (None: logs.plot_loss's default)
    plot_x: str = "epoch"


@dataclasses.dataclass(frozen=True)
class Trainer:
    """A trainer's parts, for `train`."""

    spec: RunSpec
    init_fn: Callable  # key -> a fresh state
    init_key: jax.Array
    abstract: Any  # jax.eval_shape(init_fn, init_key)
    shardings: Any  # the state's placement, a pytree like `abstract`
    check_meta: Callable[[dict], None]  # raises ValueError when a saved run cannot be resumed with this config
    train_step: Callable  # (state, global batch) -> (state, metrics)
    batches: Callable[[int, int], Iterator]  # (start, end) -> global batches of steps start..end-1
    on_start: Callable[[Any, int], None] | None = None  # (state, start step) once the run is resumed or started


def train(trainer: Trainer, progress: bool = True, stop_after_steps: int | None = None) -> tuple[Any, dict]:
    """Resumes or starts `trainer`'s run and trains it to its last step (or `stop_after_steps` more); returns
    (state, summary: the last record, `workdir` and `checkpoint_step`). Writes loss.png on process 0, which holds
    the run folder's lock (sdfjax.locks) meanwhile: a second trainer on it refuses in one line."""
    spec = trainer.spec
    with locks.hold(spec.workdir, "training", enabled=parallel.is_main_process()):
        storage.makedirs(spec.workdir)
        mngr = checkpoint.manager(spec.workdir)
        state = resume_or_init(mngr, trainer.abstract, trainer.shardings, trainer.init_fn, trainer.check_meta,
                               trainer.init_key, spec.workdir)
        start = int(jax.device_get(state["step"]))
        if trainer.on_start is not None:
            trainer.on_start(state, start)
        end = spec.total_steps if stop_after_steps is None else min(spec.total_steps, start + stop_after_steps)
        state, record, last_good = run_steps(trainer.train_step, state, trainer.batches(start, end), spec, start, end,
                                             mngr, progress)
        if parallel.is_main_process() and record:
            if spec.plot_labels is None:
                logs_lib.plot_loss(spec.workdir)
            else:
                logs_lib.plot_loss(spec.workdir, spec.plot_labels, x=spec.plot_x)
        if not record:  # nothing left to train: the last record of an earlier run
            record = (logs_lib.read_metrics(spec.workdir) or [{}])[-1]
        return state, {**record, "workdir": spec.workdir, "checkpoint_step": last_good}


def run_steps(train_step, state, batches, spec: RunSpec, start: int, end: int, mngr, progress: bool = True):
    """Runs steps start..end-1 of a training run; returns (state, last record, last checkpointed step).

    Steps are grouped in periods of `spec.steps_per_period` (DeepSDF: an epoch): after each
    period the metrics are fetched once, checked for NaN, averaged into one record of
    metrics.jsonl / TensorBoard (with the learning rates of `spec.schedules` and the
    throughput `spec.items_name`), and every `spec.checkpoint_every_periods` periods, and at
    `end`, the state is saved. Records and files come from process 0 only.
    """
    workdir, steps_per_period = spec.workdir, spec.steps_per_period
    main = parallel.is_main_process()
    logs = MetricsLog(workdir, main)
    bar = tqdm(total=spec.total_steps, initial=start, desc=spec.desc, unit="step", disable=not (progress and main),
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
                      **{k: float(s(step - 1)) for k, s in spec.schedules.items()},
                      "seconds": seconds, spec.items_name: len(fetched) * spec.items_per_step / seconds}
            logs.write(record)
            bar.set_postfix(loss=f"{record['loss']:.4g}", epoch=period)
            if (period + 1) % spec.checkpoint_every_periods == 0 or step == end:
                last_good = checkpoint.save(mngr, state, spec.meta)
            start, period_metrics, period_start = step, [], time.perf_counter()
    finally:
        bar.close()
        logs.close()
    return state, record, last_good


def warmup_cosine_schedule(section) -> optax.Schedule:
    """Linear warm-up to `section.lr` over `warmup_steps`, then cosine decay to 1% of it at `num_steps`
    (the image encoders' schedule: config.siamese, config.encoder)."""
    warmup = min(section.warmup_steps, max(section.num_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(0.0, section.lr, warmup, max(section.num_steps, warmup + 1),
                                              section.lr * 0.01)


def adamw_warmup_cosine(section) -> optax.GradientTransformation:
    """AdamW with `warmup_cosine_schedule(section)` and `section.weight_decay`."""
    return optax.adamw(warmup_cosine_schedule(section), weight_decay=section.weight_decay)


def jit_view_step(step_fn, mesh, keys=("sketches", "normal_maps", "labels", "rights", "view_angles")):
    """`step_fn(state, batch)` jitted with the state replicated and a batch (ViewBatcher's `keys`) sharded."""
    replicated, sharded = parallel.replicated(mesh), parallel.data_sharded(mesh)
    batch_sharding = {k: sharded for k in keys}
    return jax.jit(step_fn, in_shardings=(replicated, batch_sharding), out_shardings=(replicated, replicated),
                   donate_argnums=0)
