"""Training the sketch-to-latent encoder (Sketch2Shape's encoder): sketches of a train shape -> its latent.

    summary = train_encoder(config, workdir)      # after DeepSDF training in the same workdir

The DeepSDF decoder f and its trained latent table Z stay frozen; the encoder E
(sdfjax.models.latent_encoder) learns, for a sketch S of train shape i from any dataset
view,

    L(E) = mean_dims (E(S) - Z_i)^2
           + w_sdf * mean_x | clamp(f(E(S), x)) - clamp(f(Z_i, x)) |

with DeepSDF's clamp (train.clamp_distance). The second term is Sketch2Shape's
observation that two latents far apart in L2 can decode to the same shape: it measures
the error where it matters, in SDF space. Its points x are uniform in [-1, 1]^3, new
every step: most lie where both clamped values agree, yet they are what keeps material
away from where the shape has none (docs/experiments.md compares near-surface points).
The frozen decoder is folded
(sdfjax.fit.folded): weight norm once, and each sketch's latent multiplied into the
layers that see it once, not per point. Sketches are augmented on the device
(sdfjax.train.augment.augment_sketch: rotation, scale, shift, wobble, thickness,
dropped and broken strokes).

`encoder.holdout_views` are never trained on: the summary's `holdout_latent_mse` is the
latent error on those views of the train shapes (and `initial_holdout_latent_mse`
before training), so a run shows whether the encoder reads shapes, not pictures. After
training, sdfjax.evaluators.latent_encoder scores it on the val split's shapes, which have no trained
latent: the fitting loss of the predicted latent on each shape's own SDF samples, near
the surface and away from it weighed equally, beside the mean trained latent's (written
to `<workdir>/encoder/val_scores.json`; a minute, no meshes).

Writes `<workdir>/encoder/`: checkpoints/ (Orbax; resumed automatically),
metrics.jsonl (loss, latent_mse, sdf_l1, learning rate, sketches/s), TensorBoard
events and loss.png.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdfjax import parallel, storage, trained
from sdfjax.data import tfds_builder
from sdfjax.data.batching import ViewBatcher, images_and_views
from sdfjax.fit.folded import fold_decoder, folded_sdf, latent_biases
from sdfjax.models import latent_encoder
from sdfjax.evaluators import latent_encoder as encoder_evaluation
from sdfjax.train import loop
from sdfjax.train.augment import augment_sketch


lr_schedule = loop.warmup_cosine_schedule
make_optimizer = loop.adamw_warmup_cosine


def init_state(model, optimizer, key: jax.Array, resolution: int, view_input: bool = False) -> dict:
    params = latent_encoder.init_params(model, key, resolution, view_input)
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params)}


def encoder_loss(model, params, batch: dict, clamped, sdf_weight: float):
    """(loss, {latent_mse, sdf_l1}) of the module docstring.

    `batch`: float sketches (B, H, W) in [0, 1], `view_angles` (B, 2) they were drawn from (None: an encoder
    without view input), target latents `targets` (B, L), SDF query `points` (B, P, 3) and the clamped SDF of
    the target latents there, `target_sdf` (B, P). `clamped(z, points)` is the frozen decoder's clamped SDF
    (`clamped_sdf` of the folded decoder: each sketch's latent multiplied into layer 0 and the skip layer
    once, not per point).
    """
    predicted = model.apply(params, latent_encoder.encoder_input(batch["sketches"], batch["view_angles"]))
    latent_mse = jnp.mean((predicted - batch["targets"]) ** 2)
    loss = latent_mse
    sdf_l1 = jnp.zeros(())
    if sdf_weight > 0:
        sdf_l1 = jnp.mean(jnp.abs(clamped(predicted, batch["points"]) - batch["target_sdf"]))
        loss = loss + sdf_weight * sdf_l1
    return loss, {"latent_mse": latent_mse, "sdf_l1": sdf_l1}


def clamped_sdf(folded, z, points, clamp_distance: float, fourier_frequencies: int = 0) -> jax.Array:
    """clamp(f(z_b, x_bp), +-clamp_distance) (B, P) for latents z (B, L) and points (B, P, 3)."""
    sdf = folded_sdf(folded, latent_biases(folded, z), points, fourier_frequencies)
    return jnp.clip(sdf, -clamp_distance, clamp_distance)


def make_train_step(model, optimizer, deepsdf: trained.TrainedModel, encoder_config, clamp_distance: float,
                    seed: int):
    """step(state, batch) -> (state, metrics); batch as `ViewBatcher.local_batch` with labels = rows of
    `deepsdf.latents`. The SDF term's points are uniform in [-1, 1]^3, new each step."""
    ec = encoder_config
    base_key = jax.random.key(seed)
    table = jnp.asarray(deepsdf.latents, jnp.float32)
    folded = jax.device_put(fold_decoder(deepsdf.decoder, deepsdf.params))  # frozen: weight norm folded once
    clamped = functools.partial(clamped_sdf, folded, clamp_distance=clamp_distance,
                                fourier_frequencies=deepsdf.decoder.fourier_frequencies)

    def step(state, batch):
        key = jax.random.fold_in(jax.random.fold_in(base_key, 11), state["step"])
        k_aug, k_points = jax.random.split(key)
        sketches = batch["sketches"].astype(jnp.float32) / 255.0
        sketches = jax.vmap(lambda k, s: augment_sketch(k, s, ec))(jax.random.split(k_aug, len(sketches)), sketches)
        targets = table[batch["labels"]]
        inputs = {"sketches": sketches, "targets": targets,
                  "view_angles": batch["view_angles"] if ec.get("view_input", False) else None}
        if ec.sdf_weight > 0:
            points = jax.random.uniform(k_points, (len(targets), ec.sdf_points, 3), minval=-1.0, maxval=1.0)
            inputs.update(points=points, target_sdf=clamped(targets, points))
        loss_fn = lambda params: encoder_loss(model, params, inputs, clamped, ec.sdf_weight)  # noqa: E731
        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = {"loss": loss, **parts, "grad_norm": optax.tree.norm(grads)}
        return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

    return step


BATCH_KEYS = ("sketches", "labels", "view_angles")


def jit_train_step(step_fn, mesh):
    return loop.jit_view_step(step_fn, mesh, keys=BATCH_KEYS)


def latent_rows(config, model: trained.TrainedModel) -> np.ndarray:
    """Row of `model.latents` of each train record, in record order; ValueError naming a shape without one."""
    obj_ids, _ = tfds_builder.split_index(config, "train")
    row_of = {o: i for i, o in enumerate(model.obj_ids)}
    missing = [o for o in obj_ids if o not in row_of]
    if missing:
        raise ValueError(f"train shapes {missing[:3]} have no trained latent in the DeepSDF checkpoint; "
                         "the encoder needs the DeepSDF run trained on this dataset")
    return np.asarray([row_of[o] for o in obj_ids], np.int32)


def holdout_views(encoder_config, num_views: int) -> tuple[np.ndarray, np.ndarray]:
    """(views trained on, views held out) of `num_views` dataset views."""
    held = sorted({int(v) for v in encoder_config.holdout_views})
    if held and (held[0] < 0 or held[-1] >= num_views):
        raise ValueError(f"encoder.holdout_views={tuple(held)}: the dataset has views 0..{num_views - 1}")
    kept = np.asarray([v for v in range(num_views) if v not in held], np.int64)
    if not len(kept):
        raise ValueError("encoder.holdout_views holds out every view: nothing is left to train on")
    return kept, np.asarray(held, np.int64)


def _meta(config, resolution: int) -> dict:
    return {"encoder": json.loads(config.encoder.to_json_best_effort()), "resolution": resolution,
            "latent_dim": config.model.latent_dim, "data_root": config.data.root}


def train_encoder(config, workdir: str, progress: bool = True, stop_after_steps: int | None = None) -> dict:
    """Trains (or resumes) the sketch-to-latent encoder against the DeepSDF run in `workdir`."""
    ec = config.encoder
    deepsdf = trained.load_trained(config, workdir)
    out = trained.encoder_dir(workdir)
    rows = latent_rows(config, deepsdf)
    source = tfds_builder.data_source(config, "train", renders=True)
    _, _, views = images_and_views(source[0])
    kept, held = holdout_views(ec, len(views))
    batcher = ViewBatcher(source, rows, ec, config.seed, (jax.process_index(), jax.process_count()),
                          view_subset=kept, section_name="encoder")
    resolution = batcher.shapes[0][0].shape[-1]
    mesh = parallel.make_mesh()
    storage.makedirs(out)
    per_step = ec.shapes_per_batch * ec.views_per_shape
    if per_step % jax.device_count():
        raise ValueError(f"encoder.shapes_per_batch x views_per_shape = {per_step} sketches per step must divide "
                         f"by the {jax.device_count()} devices")
    model = latent_encoder.from_config(ec, config.model.latent_dim)
    optimizer = make_optimizer(ec)
    init_fn = lambda k: init_state(model, optimizer, k, resolution, ec.get("view_input", False))  # noqa: E731
    init_key = jax.random.fold_in(jax.random.key(config.seed), 3)
    abstract = jax.eval_shape(init_fn, init_key)
    shardings = jax.tree.map(lambda _: parallel.replicated(mesh), abstract)
    train_step = jit_train_step(make_train_step(model, optimizer, deepsdf, ec, config.train.clamp_distance,
                                                config.seed), mesh)

    def check_meta(saved: dict) -> None:
        trained.check_encoder_matches(saved, ec, config.model.latent_dim)
        if saved["resolution"] != resolution:
            raise ValueError(f"the encoder checkpoint in {out} was trained on {saved['resolution']} px sketches; "
                             f"{config.data.root} has {resolution} px")

    spec = loop.RunSpec(
        out, ec.num_steps, ec.steps_per_log, max(1, ec.checkpoint_every_steps // ec.steps_per_log),
        items_per_step=per_step, items_name="sketches_per_s", desc="train encoder", schedules={"lr": lr_schedule(ec)},
        meta=_meta(config, resolution), plot_x="step",
        plot_labels={"loss": "encoder loss", "latent_mse": "latent MSE", "sdf_l1": "SDF L1 (clamped)"})
    held_errors = []  # the held-out views' latent error of a fresh run's initial state

    def on_start(state, start):
        if start == 0:
            held_errors.append(encoder_evaluation.latent_mse_on_views(
                model, jax.device_get(state["params"]), source, rows, deepsdf.latents, held))

    def batches(start, end):
        return (parallel.global_batch({k: b[k] for k in BATCH_KEYS}, mesh) for b in batcher.iterate(start, end))

    state, summary = loop.train(loop.Trainer(spec, init_fn, init_key, abstract, shardings, check_meta, train_step,
                                             batches, on_start), progress, stop_after_steps)
    trained_params = jax.device_get(state["params"])
    summary.update(holdout_views=held.tolist(),
                   holdout_latent_mse=encoder_evaluation.latent_mse_on_views(model, trained_params, source, rows,
                                                                             deepsdf.latents, held))
    if held_errors:
        summary["initial_holdout_latent_mse"] = held_errors[0]
    if parallel.is_main_process():
        val = encoder_evaluation.val_shape_errors(config, model, trained_params, deepsdf)
        if val:
            storage.atomic_write_json(trained.encoder_val_scores_path(workdir),
                                 {**val, "step": int(jax.device_get(state["step"]))})
        summary.update(val)
    return summary
