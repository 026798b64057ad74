"""The sketch-to-latent encoder's errors without meshes: latent error on views, shape error on a split.

    mse = latent_mse_on_views(model, params, source, rows, table, views)        # train shapes' held-out views
    scores = val_shape_errors(config, model, params, deepsdf)                  # the val split, x1000

The val split's shapes have no trained latent, so their error is DeepSDF's fitting loss
of the predicted latent on each shape's own SDF samples (`shape_errors_on_split`),
near the surface and away from it weighed equally, beside the mean trained latent's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sdfjax import errors, trained
from sdfjax.data import tfds_builder
from sdfjax.data.batching import images_and_views
from sdfjax.fit.folded import fold_decoder, folded_sdf, latent_biases
from sdfjax.losses import sdf_loss
from sdfjax.sketch2shape import encoders


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


def shape_errors_on_split(model, params, deepsdf: trained.TrainedModel, source, views: np.ndarray, config,
                          baseline: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(records, views, 2) clamped SDF L1 of the decoder at each sketch's predicted latent on that record's own
    SDF samples: DeepSDF's fitting loss (its Eq. 10 without the prior), a shape error on shapes that have no
    trained latent (the val split) and no mesh to score; DeepSDF's clamp is config.train.clamp_distance. The
    last axis is REGIONS: samples within the clamp distance of the true surface (near), and farther ones
    (far), config.encoder.eval_points / 2 of each (drawn with
    replacement from a region that has fewer). The far error is zero unless the predicted surface comes
    within the clamp distance of where the true shape has none: material in the wrong place, which the
    near samples (most of DeepSDF's samples) do not see. With `baseline` (L,), also that one latent's
    (records, 2) errors on the same samples (the trivial baseline, e.g. the mean trained latent), else None.
    The same samples for every view, drawn with config.seed; each record is read once."""
    clamp_distance, num_points = config.train.clamp_distance, config.encoder.eval_points
    encode = encoders.latent_predictor(model, params)
    decoder = deepsdf.decoder
    folded = fold_decoder(decoder, deepsdf.params)

    @jax.jit
    def sdf_l1(z, samples):  # z (V, L), samples (P, 4) -> (V,)
        xyz = jnp.broadcast_to(samples[:, :3], (len(z), len(samples), 3))
        sdf = folded_sdf(folded, latent_biases(folded, z), xyz, decoder.fourier_frequencies)
        return jax.vmap(lambda pred: sdf_loss(pred, samples[:, 3], clamp_distance))(sdf)

    rng = np.random.default_rng([config.seed, 9])
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
        source = tfds_builder.data_source(config, "val", renders=True)
    except errors.DataError:
        return {}
    if not len(source) or not ec.get("eval_views", 0):
        return {}
    _, _, all_views = images_and_views(source[0])
    views = np.unique(np.round(np.linspace(0, len(all_views) - 1, ec.eval_views)).astype(int))
    encoder_errors, mean_errors = shape_errors_on_split(model, params, deepsdf, source, views, config,
                                                        baseline=deepsdf.latents.mean(0))
    scores = {"val_shapes": len(source), "val_views": views.tolist()}
    for prefix, errs in (("val", encoder_errors), ("val_mean_latent", mean_errors)):
        scores[f"{prefix}_score_x1000"] = float(1e3 * np.median(errs.mean(-1)))
        for region, name in enumerate(REGIONS):
            scores[f"{prefix}_{name}_x1000"] = float(1e3 * np.median(errs[..., region]))
    return scores
