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
every step (`encoder.sdf_point_source = "uniform"`, the default), or drawn from a pool of
shape i's own SDF samples (`"samples"`: DeepSDF's distribution, mostly near the surface,
with clamp(f(Z_i, x)) computed once; `sdf_point_pool`, `encoder.sdf_uniform_share` of it
uniform). Most uniform points lie where both clamped values agree, yet they are what
keeps material away from where the shape has none: on chairs256 cpu, near-surface
points lowered the val error near the surface and doubled it away from it (the mean
latent's level), and the test Chamfer of the encoder's shapes rose from 2.200 to 2.946;
half uniform did not recover it. The frozen decoder is folded
(sdfjax.fit.folded): weight norm once, and each sketch's latent multiplied into the
layers that see it once, not per point. Sketches are augmented on the device
(sdfjax.train.augment.augment_sketch: rotation, scale, shift, wobble, thickness,
dropped and broken strokes).

With `encoder.sampled_shapes` > 0, each batch also holds `encoder.sampled_per_batch`
sketches of latents sampled from the trained table (interpolations and Gaussian draws)
and rendered through the sphere tracer from `encoder.sampled_views` dataset views
(sdfjax.train.sampled_shapes; made once, kept in the encoder's folder), each with the
latent it was rendered from as its target: shapes beyond the training meshes.

`encoder.holdout_views` are never trained on: the summary's `holdout_latent_mse` is the
latent error on those views of the train shapes (and `initial_holdout_latent_mse`
before training), so a run shows whether the encoder reads shapes, not pictures. After
training, `val_shape_errors` scores it on the val split's shapes, which have no trained
latent: the fitting loss of the predicted latent on each shape's own SDF samples, near
the surface and away from it weighed equally, beside the mean trained latent's (written
to `<workdir>/encoder/val_scores.json`; a minute, no meshes).

Writes `<workdir>/encoder/`: checkpoints/ (Orbax; resumed automatically),
metrics.jsonl (loss, latent_mse, sdf_l1, learning rate, sketches/s), TensorBoard
events and loss.png.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdfjax import checkpoint, errors, io, parallel, trained
from sdfjax.data import tfds_builder
from sdfjax.data.batching import ViewBatcher, images_and_views
from sdfjax.fit.folded import fold_decoder, folded_sdf, latent_biases
from sdfjax.geometry.isosurface import chunked
from sdfjax.models import latent_encoder
from sdfjax.render import camera as camera_lib
from sdfjax.render import tracer
from sdfjax.sketch2shape import encoders
from sdfjax.train import logs, loop, sampled_shapes
from sdfjax.train.augment import augment_sketch
from sdfjax.train.losses import sdf_loss


lr_schedule = loop.warmup_cosine_schedule
make_optimizer = loop.adamw_warmup_cosine


def init_state(model, optimizer, key: jax.Array, resolution: int, view_input: bool = False) -> dict:
    params = latent_encoder.init_params(model, key, resolution, view_input)
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params)}


def encoder_loss(model, params, sketches, view_angles, targets, folded, points, target_sdf, encoder_config,
                 clamp_distance: float, fourier_frequencies: int = 0):
    """(loss, {latent_mse, sdf_l1}) of the module docstring for float sketches (B, H, W) in [0, 1] drawn
    from `view_angles` (B, 2) (None: an encoder without view input), target latents (B, L), SDF query
    points (B, P, 3) and the clamped SDF of the target latents there (B, P); `folded` is the frozen decoder
    as `sdfjax.fit.folded.fold_decoder` gives it (the same function, with each sketch's latent multiplied
    into layer 0 and the skip layer once, not per point)."""
    predicted = model.apply(params, latent_encoder.encoder_input(sketches, view_angles))
    latent_mse = jnp.mean((predicted - targets) ** 2)
    loss = latent_mse
    sdf_l1 = jnp.zeros(())
    if encoder_config.sdf_weight > 0:
        sdf_l1 = jnp.mean(jnp.abs(clamped_sdf(folded, predicted, points, clamp_distance, fourier_frequencies)
                                  - target_sdf))
        loss = loss + encoder_config.sdf_weight * sdf_l1
    return loss, {"latent_mse": latent_mse, "sdf_l1": sdf_l1}


def clamped_sdf(folded, z, points, clamp_distance: float, fourier_frequencies: int = 0) -> jax.Array:
    """clamp(f(z_b, x_bp), +-clamp_distance) (B, P) for latents z (B, L) and points (B, P, 3)."""
    sdf = folded_sdf(folded, latent_biases(folded, z), points, fourier_frequencies)
    return jnp.clip(sdf, -clamp_distance, clamp_distance)


def make_train_step(model, optimizer, decoder, decoder_params, latent_table: np.ndarray, encoder_config,
                    clamp_distance: float, seed: int, point_pool: tuple[np.ndarray, np.ndarray] | None = None):
    """step(state, batch) -> (state, metrics); batch as `ViewBatcher.local_batch` with labels = latent rows.

    The SDF term's points: with `point_pool` (`sdf_point_pool`: points (R, K, 3) and the clamped SDF of
    each row's latent there (R, K)), `encoder.sdf_points` of row's K per sketch; without, uniform in
    [-1, 1]^3 with the target computed each step."""
    base_key = jax.random.key(seed)
    table = jnp.asarray(latent_table, jnp.float32)
    folded = jax.device_put(fold_decoder(decoder, decoder_params))  # frozen: weight norm folded once
    ff = decoder.fourier_frequencies
    pool = None if point_pool is None else tuple(jnp.asarray(a, jnp.float32) for a in point_pool)

    def sdf_points(key, labels, targets):
        count = encoder_config.sdf_points
        if pool is None:
            points = jax.random.uniform(key, (len(labels), count, 3), minval=-1.0, maxval=1.0)
            return points, clamped_sdf(folded, targets, points, clamp_distance, ff)
        picked = jax.random.randint(key, (len(labels), count), 0, pool[1].shape[1])
        return (jnp.take_along_axis(pool[0][labels], picked[..., None], axis=1),
                jnp.take_along_axis(pool[1][labels], picked, axis=1))

    def step(state, batch):
        key = jax.random.fold_in(jax.random.fold_in(base_key, 11), state["step"])
        k_aug, k_points = jax.random.split(key)
        sketches = batch["sketches"].astype(jnp.float32) / 255.0
        sketches = jax.vmap(lambda k, s: augment_sketch(k, s, encoder_config))(
            jax.random.split(k_aug, len(sketches)), sketches)
        targets = table[batch["labels"]]
        view_angles = batch["view_angles"] if encoder_config.get("view_input", False) else None
        points, target_sdf = (sdf_points(k_points, batch["labels"], targets) if encoder_config.sdf_weight > 0
                              else (None, None))

        def loss_fn(params):
            return encoder_loss(model, params, sketches, view_angles, targets, folded, points, target_sdf,
                                encoder_config, clamp_distance, ff)

        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = {"loss": loss, **parts, "grad_norm": optax.tree.norm(grads)}
        return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

    return step


def sdf_point_pool(source, rows: np.ndarray, decoder, decoder_params, table: np.ndarray, pool_size: int,
                   clamp_distance: float, seed: int, uniform_share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Points (R, K, 3) for the SDF term of each of the R latent `table` rows and the clamped SDF of that
    row's latent there (R, K), K = `pool_size`, drawn with `seed`.

    A row with a record in `source` (`rows[i]` is record i's row) takes K * (1 - `uniform_share`) of that
    shape's own SDF samples (DeepSDF's distribution, mostly within a few hundredths of the surface) and the
    rest uniform in [-1, 1]^3; a row without one (a sampled latent) takes K uniform points. The module
    docstring says what this did to the encoder (worse shapes than uniform points)."""
    rng = np.random.default_rng([seed, 13])
    points = rng.uniform(-1.0, 1.0, (len(table), pool_size, 3)).astype(np.float32)
    own = pool_size - int(round(uniform_share * pool_size))  # the rest of the row stays uniform
    for index, row in enumerate(rows):
        samples = np.asarray(source[index]["sdf_samples"], np.float32)
        points[row, :own] = samples[rng.choice(len(samples), own, replace=len(samples) < own), :3]
    folded = fold_decoder(decoder, decoder_params)
    latents, on_device = jnp.asarray(table, jnp.float32), jnp.asarray(points)
    target = jax.jit(lambda rows: clamped_sdf(folded, latents[rows], on_device[rows], clamp_distance,
                                              decoder.fourier_frequencies))
    return points, chunked(target, 64)(np.arange(len(table)))


BATCH_KEYS = ("sketches", "labels", "view_angles")


def jit_train_step(step_fn, mesh):
    return loop.jit_view_step(step_fn, mesh, keys=BATCH_KEYS)


def sampled_set(config, workdir_encoder: str, deepsdf: trained.TrainedModel, views: np.ndarray, kept: np.ndarray,
                resolution: int, progress: bool) -> sampled_shapes.SampledSketches | None:
    """The sampled shapes' sketches of `encoder.sampled_shapes` (None when 0), from evenly spread kept views."""
    ec = config.encoder
    count = int(ec.get("sampled_shapes", 0))
    if count <= 0:
        return None
    picked = kept[np.unique(np.round(np.linspace(0, len(kept) - 1, ec.sampled_views)).astype(int))]
    cameras = {int(v): camera_lib.Camera(float(views[v, 0]), float(views[v, 1]), float(views[v, 2]),
                                         float(views[v, 3]), resolution, resolution) for v in picked}
    return sampled_shapes.SampledSketches.load_or_make(
        workdir_encoder, deepsdf.latents, count, picked, cameras, deepsdf.decoder, deepsdf.params,
        tracer.TraceSettings.from_config(config.render), config.seed, ec.sampled_interpolation_share, progress)


def with_sampled(batches, sampled: sampled_shapes.SampledSketches | None, first_step: int, per_batch: int,
                 table_rows: int, seed: int, dataset_views: np.ndarray):
    """ViewBatcher batches cut to BATCH_KEYS, each with `per_batch` sampled sketches appended (labels past the
    trained table's `table_rows` rows: the sampled latents follow it; view angles from `dataset_views` (V, 4),
    the dataset's views that the sampled set's view indices name)."""
    for step, batch in enumerate(batches, start=first_step):
        batch = {k: batch[k] for k in BATCH_KEYS}
        if sampled is not None and per_batch > 0:
            sketches, rows, views = sampled.batch(step, per_batch, seed, jax.process_index())
            batch = {"sketches": np.concatenate([batch["sketches"], sketches]),
                     "labels": np.concatenate([batch["labels"], rows + table_rows]),
                     "view_angles": np.concatenate([batch["view_angles"], dataset_views[views, :2]])}
        yield batch


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


def latent_mse_on_views(model, params, source, rows: np.ndarray, table: np.ndarray, views: np.ndarray) -> float:
    """Mean squared latent error of the encoder on `views` of every record of `source` (no augmentation)."""
    if not len(views):
        return float("nan")
    fn = encoders.latent_predictor(model, params)
    errors = []
    for index in range(len(source)):
        sketches, _, all_views = images_and_views(source[index])
        errors.append(np.mean((fn(sketches[views], all_views[views, :2]) - table[rows[index]]) ** 2))
    return float(np.mean(errors))


REGIONS = ("near", "far")  # shape_errors_on_split's last axis


def shape_errors_on_split(model, params, decoder, decoder_params, source, views: np.ndarray, clamp_distance: float,
                          num_points: int, seed: int, baseline: np.ndarray | None = None
                          ) -> tuple[np.ndarray, np.ndarray | None]:
    """(records, views, 2) clamped SDF L1 of the decoder at each sketch's predicted latent on that record's own
    SDF samples: DeepSDF's fitting loss (its Eq. 10 without the prior), a shape error on shapes that have no
    trained latent (the val split) and no mesh to score. The last axis is REGIONS: samples within the clamp
    distance of the true surface (near), and farther ones (far), `num_points` / 2 of each (drawn with
    replacement from a region that has fewer). The far error is zero unless the predicted surface comes
    within the clamp distance of where the true shape has none: material in the wrong place, which the
    near samples (most of DeepSDF's samples) do not see. With `baseline` (L,), also that one latent's
    (records, 2) errors on the same samples (the trivial baseline, e.g. the mean trained latent), else None.
    The same samples for every view, drawn with `seed`; each record is read once."""
    encode = encoders.latent_predictor(model, params)
    folded = fold_decoder(decoder, decoder_params)

    @jax.jit
    def sdf_l1(z, samples):  # z (V, L), samples (P, 4) -> (V,)
        xyz = jnp.broadcast_to(samples[:, :3], (len(z), len(samples), 3))
        sdf = folded_sdf(folded, latent_biases(folded, z), xyz, decoder.fourier_frequencies)
        return jax.vmap(lambda pred: sdf_loss(pred, samples[:, 3], clamp_distance))(sdf)

    rng = np.random.default_rng([seed, 9])
    out = np.empty((len(source), len(views), len(REGIONS)), np.float32)
    at_baseline = None if baseline is None else np.empty((len(source), len(REGIONS)), np.float32)
    for index in range(len(source)):
        record = source[index]
        samples = np.asarray(record["sdf_samples"], np.float32)
        sketches, _, all_views = images_and_views(record)
        z = jnp.asarray(encode(sketches[views], all_views[views, :2]), jnp.float32)
        for region, in_region in enumerate((np.abs(samples[:, 3]) < clamp_distance,
                                            np.abs(samples[:, 3]) >= clamp_distance)):
            pool = samples[in_region]
            if not len(pool):  # a region with no sample has no error to report
                out[index, :, region] = 0.0
                if baseline is not None:
                    at_baseline[index, region] = 0.0
                continue
            # a fixed count (with replacement in a smaller region), so the scorer compiles once
            count = num_points // 2
            picked = jnp.asarray(pool[rng.choice(len(pool), count, replace=len(pool) < count)])
            out[index, :, region] = np.asarray(sdf_l1(z, picked))
            if baseline is not None:
                at_baseline[index, region] = np.asarray(sdf_l1(jnp.asarray(baseline, jnp.float32)[None], picked))[0]
    return out, at_baseline


def val_shape_errors(config, model, params, deepsdf: trained.TrainedModel) -> dict:
    """The encoder's shape errors (`shape_errors_on_split`, x1000, median over sketches) on the val split's
    sketches at `encoder.eval_views` evenly spread views, beside the mean trained latent's; {} without a val
    split. `val_score_x1000` is the median of (near + far) / 2, the two regions weighed equally."""
    ec = config.encoder
    try:
        source = tfds_builder.data_source(config, "val")
    except errors.DataError:
        return {}
    if not len(source) or not ec.get("eval_views", 0):
        return {}
    _, _, all_views = images_and_views(source[0])
    views = np.unique(np.round(np.linspace(0, len(all_views) - 1, ec.eval_views)).astype(int))
    encoder_errors, mean_errors = shape_errors_on_split(
        model, params, deepsdf.decoder, deepsdf.params, source, views, config.train.clamp_distance, ec.eval_points,
        config.seed, baseline=deepsdf.latents.mean(0))
    scores = {"val_shapes": len(source), "val_views": views.tolist()}
    for prefix, errs in (("val", encoder_errors), ("val_mean_latent", mean_errors)):
        scores[f"{prefix}_score_x1000"] = float(1e3 * np.median(errs.mean(-1)))
        for region, name in enumerate(REGIONS):
            scores[f"{prefix}_{name}_x1000"] = float(1e3 * np.median(errs[..., region]))
    return scores


def _meta(config, resolution: int) -> dict:
    return {"encoder": json.loads(config.encoder.to_json_best_effort()), "resolution": resolution,
            "latent_dim": config.model.latent_dim, "data_root": config.data.root}


def train_encoder(config, workdir: str, progress: bool = True, stop_after_steps: int | None = None) -> dict:
    """Trains (or resumes) the sketch-to-latent encoder against the DeepSDF run in `workdir`."""
    ec = config.encoder
    deepsdf = trained.load_trained(config, workdir)
    out = trained.encoder_dir(workdir)
    rows = latent_rows(config, deepsdf)
    source = tfds_builder.data_source(config, "train")
    _, _, views = images_and_views(source[0])
    kept, held = holdout_views(ec, len(views))
    batcher = ViewBatcher(source, rows, ec.shapes_per_batch, ec.views_per_shape, config.seed, jax.process_index(),
                          jax.process_count(), ec.cache_shapes, view_subset=kept, field="encoder.shapes_per_batch")
    resolution = batcher.shapes[0][0].shape[-1]
    mesh = parallel.make_mesh()
    io.makedirs(out)
    sampled = sampled_set(config, out, deepsdf, views, kept, resolution, progress and parallel.is_main_process())
    per_batch = int(ec.get("sampled_per_batch", 0)) if sampled is not None else 0
    per_step = (ec.shapes_per_batch * ec.views_per_shape + per_batch * jax.process_count())
    if per_step % jax.device_count():
        raise ValueError(f"encoder.shapes_per_batch x views_per_shape + sampled_per_batch = {per_step} sketches "
                         f"per step must divide by the {jax.device_count()} devices")
    table = deepsdf.latents if sampled is None else np.concatenate([deepsdf.latents, sampled.latents])
    model = latent_encoder.from_config(ec, config.model.latent_dim)
    optimizer = make_optimizer(ec)
    init_fn = lambda k: init_state(model, optimizer, k, resolution, ec.get("view_input", False))  # noqa: E731
    init_key = jax.random.fold_in(jax.random.key(config.seed), 3)
    abstract = jax.eval_shape(init_fn, init_key)
    shardings = jax.tree.map(lambda _: parallel.replicated(mesh), abstract)
    point_source = ec.get("sdf_point_source", "uniform")
    if point_source not in ("samples", "uniform"):
        raise ValueError(f"encoder.sdf_point_source is {point_source!r}; expected samples | uniform")
    point_pool = None
    if ec.sdf_weight > 0 and point_source == "samples":
        point_pool = sdf_point_pool(source, rows, deepsdf.decoder, deepsdf.params, table, ec.sdf_point_pool,
                                    config.train.clamp_distance, config.seed, ec.get("sdf_uniform_share", 0.0))
    train_step = jit_train_step(make_train_step(model, optimizer, deepsdf.decoder, deepsdf.params, table,
                                                ec, config.train.clamp_distance, config.seed, point_pool), mesh)

    def check_meta(saved: dict) -> None:
        trained.check_encoder_matches(saved, ec, config.model.latent_dim)
        if saved["resolution"] != resolution:
            raise ValueError(f"the encoder checkpoint in {out} was trained on {saved['resolution']} px sketches; "
                             f"{config.data.root} has {resolution} px")

    mngr = checkpoint.manager(out)
    state = loop.resume_or_init(mngr, abstract, shardings, init_fn, check_meta, init_key, out)
    start = int(jax.device_get(state["step"]))
    initial_holdout = (latent_mse_on_views(model, jax.device_get(state["params"]), source, rows, deepsdf.latents,
                                           held) if start == 0 else None)
    end = ec.num_steps if stop_after_steps is None else min(ec.num_steps, start + stop_after_steps)
    state, record, last_good = loop.run_steps(
        train_step, state, (parallel.global_batch(b, mesh) for b in with_sampled(
            batcher.iterate(start, end), sampled, start, per_batch, len(deepsdf.latents), config.seed,
            dataset_views=views)),
        start=start, end=end, total_steps=ec.num_steps, steps_per_period=ec.steps_per_log,
        checkpoint_every_periods=max(1, ec.checkpoint_every_steps // ec.steps_per_log),
        schedules={"lr": lr_schedule(ec)}, items_per_step=per_step,
        items_name="sketches_per_s", mngr=mngr, meta=_meta(config, resolution), workdir=out, desc="train encoder",
        progress=progress)
    if parallel.is_main_process() and record:
        logs.plot_loss(out, {"loss": "encoder loss", "latent_mse": "latent MSE", "sdf_l1": "SDF L1 (clamped)"},
                       x="step")
    if not record:  # nothing left to train: the last record of an earlier run
        record = (logs.read_metrics(out) or [{}])[-1]
    summary = {**record, "workdir": out, "checkpoint_step": last_good,
               "holdout_views": held.tolist(),
               "holdout_latent_mse": latent_mse_on_views(model, jax.device_get(state["params"]), source, rows,
                                                         deepsdf.latents, held)}
    if initial_holdout is not None:
        summary["initial_holdout_latent_mse"] = initial_holdout
    if parallel.is_main_process():
        val = val_shape_errors(config, model, jax.device_get(state["params"]), deepsdf)
        if val:
            io.atomic_write_json(trained.encoder_val_scores_path(workdir),
                                 {**val, "step": int(jax.device_get(state["step"]))})
        summary.update(val)
    return summary
