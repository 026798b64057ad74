"""Training the Siamese sketch / normal-map encoder with a triplet loss.

    summary = train_siamese(config, workdir)

A batch holds P shapes x K views; each view gives a sketch and its normal map, so 2PK
embeddings whose label is their shape. The triplet loss (Hermans et al. 2017;
sdfjax.losses.triplet_loss) pulls together embeddings of one shape, whatever the
modality or view, and pushes other shapes at least `margin` further away.

Augmentation, on the device inside the step: the sketch's lines are drawn as a hand draws
them (sdfjax.train.augment.hand_strokes), it is rotated by a small random angle and its
lines thickened by 0..`max_dilation` pixels; half the pairs are flipped
left-right together, the normal map's normals reflected across the camera's vertical
plane so that it stays the normal map of the mirrored shape.

Writes to `<workdir>/siamese/`: checkpoints/ (Orbax; resumed automatically),
metrics.jsonl (loss, active triplet share, distances, in-batch sketch->normal
recall@1, learning rate, images/s), TensorBoard events and loss.png.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdfjax import parallel, trained
from sdfjax.data import tfds_builder
from sdfjax.data.batching import ViewBatcher
from sdfjax.models import siamese as siamese_lib
from sdfjax.train import loop
from sdfjax.train.augment import flip_pair, hand_strokes_from_config, rotate_image, thicken_lines
from sdfjax.losses import pairwise_distances, triplet_loss

# --- augmentation -------------------------------------------------------------------------

def augment_pair(key: jax.Array, sketch: jax.Array, normal_map: jax.Array, right: jax.Array, siamese_config):
    """One training pair augmented (see the module docstring); float images in [0, 1]."""
    k_flip, k_angle, k_thick, k_hand = jax.random.split(key, 4)
    sketch = hand_strokes_from_config(k_hand, sketch, siamese_config)
    if siamese_config.flip:
        flipped = flip_pair(sketch, normal_map, right)
        do = jax.random.bernoulli(k_flip)
        sketch, normal_map = jnp.where(do, flipped[0], sketch), jnp.where(do, flipped[1], normal_map)
    if siamese_config.rotation_degrees > 0:
        limit = np.radians(siamese_config.rotation_degrees)
        sketch = rotate_image(sketch, jax.random.uniform(k_angle, (), minval=-limit, maxval=limit))
    if siamese_config.max_dilation > 0:
        pixels = jax.random.randint(k_thick, (), 0, siamese_config.max_dilation + 1)
        sketch = thicken_lines(sketch, pixels, siamese_config.max_dilation)
    return sketch, normal_map


# --- state and step -------------------------------------------------------------------------

lr_schedule = loop.warmup_cosine_schedule
make_optimizer = loop.adamw_warmup_cosine


def init_state(model: siamese_lib.Siamese, optimizer, key: jax.Array, resolution: int) -> dict:
    params = siamese_lib.init_params(model, key, resolution)
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params)}


def batch_recall_at_1(sketch_embeddings: jax.Array, normal_embeddings: jax.Array, labels: jax.Array) -> jax.Array:
    """Share of sketches whose nearest normal map in the batch shows the same shape."""
    d = pairwise_distances(jnp.concatenate([sketch_embeddings, normal_embeddings]))
    n = len(labels)
    nearest = jnp.argmin(d[:n, n:], axis=1)
    return jnp.mean(labels[nearest] == labels)


def make_train_step(model: siamese_lib.Siamese, optimizer, siamese_config, seed: int):
    """step(state, batch) -> (state, metrics); batch as `ViewBatcher.local_batch` (uint8 images)."""
    base_key = jax.random.key(seed)

    def step(state, batch):
        key = jax.random.fold_in(jax.random.fold_in(base_key, 7), state["step"])
        keys = jax.random.split(key, len(batch["labels"]))
        sketches = batch["sketches"].astype(jnp.float32) / 255.0
        normal_maps = batch["normal_maps"].astype(jnp.float32) / 255.0
        sketches, normal_maps = jax.vmap(lambda k, s, n, r: augment_pair(k, s, n, r, siamese_config))(
            keys, sketches, normal_maps, batch["rights"])
        labels = batch["labels"]

        def loss_fn(params):
            e_sketch, e_normal = model.apply(params, siamese_lib.sketch_input(sketches),
                                             siamese_lib.normal_input(normal_maps), method=siamese_lib.Siamese.embed_both)
            loss, stats = triplet_loss(jnp.concatenate([e_sketch, e_normal]), jnp.concatenate([labels, labels]),
                                       siamese_config.margin, siamese_config.triplet)
            return loss, (stats, e_sketch, e_normal)

        (loss, (stats, e_sketch, e_normal)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        metrics = {"loss": loss, **stats, "batch_recall_at_1": batch_recall_at_1(e_sketch, e_normal, labels),
                   "grad_norm": optax.tree.norm(grads)}
        return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

    return step


jit_train_step = loop.jit_view_step


# --- loop -------------------------------------------------------------------------------------

def _meta(config, resolution: int) -> dict:
    return {"siamese": json.loads(config.siamese.to_json_best_effort()), "resolution": resolution,
            "data_root": config.data.root}


def train_siamese(config, workdir: str, progress: bool = True, stop_after_steps: int | None = None) -> dict:
    """Trains (or resumes) the encoder on the train split's sketches and normal maps."""
    sc = config.siamese
    out = trained.siamese_dir(workdir)
    _, labels = tfds_builder.split_index(config, "train")
    source = tfds_builder.data_source(config, "train", renders=True)
    batcher = ViewBatcher(source, np.asarray(labels), sc, config.seed, (jax.process_index(), jax.process_count()))
    resolution = batcher.shapes[0][0].shape[-1]
    mesh = parallel.make_mesh()
    if (sc.shapes_per_batch * sc.views_per_shape) % jax.device_count():
        raise ValueError(f"siamese.shapes_per_batch x views_per_shape = {sc.shapes_per_batch * sc.views_per_shape} "
                         f"must divide by the {jax.device_count()} devices")
    model = siamese_lib.from_config(sc)
    optimizer = make_optimizer(sc)
    init_fn = lambda k: init_state(model, optimizer, k, resolution)  # noqa: E731
    init_key = jax.random.fold_in(jax.random.key(config.seed), 1)
    abstract = jax.eval_shape(init_fn, init_key)
    shardings = jax.tree.map(lambda _: parallel.replicated(mesh), abstract)
    train_step = jit_train_step(make_train_step(model, optimizer, sc, config.seed), mesh)

    def check_meta(saved: dict) -> None:
        trained.check_siamese_matches(saved, sc)
        if saved["resolution"] != resolution:
            raise ValueError(f"the Siamese checkpoint in {out} was trained on {saved['resolution']} px images; "
                             f"{config.data.root} has {resolution} px")

    spec = loop.RunSpec(
        out, sc.num_steps, sc.steps_per_log, max(1, sc.checkpoint_every_steps // sc.steps_per_log),
        items_per_step=2 * sc.shapes_per_batch * sc.views_per_shape, items_name="images_per_s", desc="train siamese",
        schedules={"lr": lr_schedule(sc)}, meta=_meta(config, resolution),
        plot_labels={"loss": f"triplet loss ({sc.triplet})", "active_triplets": "active triplets"}, plot_x="step")
    batches = lambda start, end: (parallel.global_batch(b, mesh) for b in batcher.iterate(start, end))  # noqa: E731
    _, summary = loop.train(loop.Trainer(spec, init_fn, init_key, abstract, shardings, check_meta, train_step,
                                         batches), progress, stop_after_steps)
    return summary
