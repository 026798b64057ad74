"""DeepSDF's auto-decoder objective, optimiser and one sharded training step.

The train state is a plain pytree:

    {"step": int32 scalar,
     "params": {"decoder": <Flax params>, "latents": (num_rows, latent_dim) float32},
     "opt_state": <optax state of both>}

Loss (Park et al. 2019, Eq. 9 with the released code's regulariser warm-up):

    L = mean_i |clamp(f(z_s, x_i), +-delta) - clamp(s_i, +-delta)|
        + lambda * min(1, epoch / warmup) * mean_s ||z_s||

optionally with Curriculum DeepSDF's (Duan et al. 2020, Eq. 4-5) tolerance eps and
hard-sample weight gamma: |.| becomes max(|.| - eps, 0) * (1 + gamma sgn(s) sgn(s - f)).
Latents are kept inside the ball of radius `code_bound` (DeepSDF's CodeBound / the
`max_norm` of its embedding) by projection after each update.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sdfjax import chunking, parallel
from sdfjax.losses import sdf_loss
from sdfjax.models import decoder as decoder_lib


def lr_schedule(base_lr: float, train_config, steps_per_epoch: int) -> optax.Schedule:
    """Step decay: x `lr_decay_factor` every `lr_decay_every_epochs` epochs (DeepSDF)."""
    return optax.exponential_decay(base_lr, transition_steps=train_config.lr_decay_every_epochs * steps_per_epoch,
                                   decay_rate=train_config.lr_decay_factor, staircase=True)


def make_optimizer(train_config, steps_per_epoch: int) -> optax.GradientTransformation:
    """Adam with separate step-decayed learning rates for the decoder and the latents."""
    decoder_tx = optax.adam(lr_schedule(train_config.decoder_lr, train_config, steps_per_epoch))
    if train_config.grad_clip_norm > 0:
        decoder_tx = optax.chain(optax.clip_by_global_norm(train_config.grad_clip_norm), decoder_tx)
    latent_tx = optax.adam(lr_schedule(train_config.latent_lr, train_config, steps_per_epoch))
    return optax.multi_transform({"decoder": decoder_tx, "latents": latent_tx},
                                 lambda params: {"decoder": "decoder", "latents": "latents"})


def project_latents(latents: jax.Array, bound: float) -> jax.Array:
    """Rows with norm > bound scaled back onto the ball (no-op for bound <= 0)."""
    if bound <= 0:
        return latents
    norm = jnp.linalg.norm(latents, axis=-1, keepdims=True)
    return latents * jnp.minimum(1.0, bound / jnp.maximum(norm, 1e-12))


def init_state(decoder: decoder_lib.Decoder, optimizer, num_rows: int, key: jax.Array, code_bound: float):
    """Decoder parameters, latents ~ N(0, 1/sqrt(L)) (DeepSDF), optimiser state, step 0."""
    decoder_key, latent_key = jax.random.split(key)
    params = {
        "decoder": decoder_lib.init_params(decoder, decoder_key),
        "latents": project_latents(
            jax.random.normal(latent_key, (num_rows, decoder.latent_dim)) / np.sqrt(decoder.latent_dim),
            code_bound),
    }
    return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": optimizer.init(params)}


def curriculum_at(train_config, epoch) -> tuple[jax.Array, jax.Array]:
    """(eps, gamma) of Curriculum DeepSDF at `epoch`: the last stage started by then."""
    c = train_config.curriculum
    if not c.enabled:
        return jnp.float32(0), jnp.float32(0)
    stage = jnp.sum(epoch >= jnp.asarray(c.epochs)) - 1
    stage = jnp.clip(stage, 0, len(c.epochs) - 1)
    return jnp.asarray(c.eps, jnp.float32)[stage], jnp.asarray(c.gamma, jnp.float32)[stage]


def state_shardings(abstract_state, mesh, shard_latents: bool):
    """Replicated everywhere, except the latent table (and its Adam moments) if sharded."""
    def choose(path, leaf):
        keys = {getattr(k, "key", getattr(k, "name", None)) for k in path}
        if shard_latents and "latents" in keys and getattr(leaf, "ndim", 0) >= 1:
            return parallel.data_sharded(mesh)
        return parallel.replicated(mesh)
    return jax.tree_util.tree_map_with_path(choose, abstract_state)


def make_train_step(decoder: decoder_lib.Decoder, optimizer, train_config, steps_per_epoch: int, seed: int,
                    platform: str | None = None):
    """step(state, batch) -> (state, metrics); batch = {labels (B,), xyz (B,S,3), sdf (B,S)}.

    The batch's points pass through the decoder in chunks of about `train.points_per_chunk`
    (sdfjax.chunking: -1 is its CPU size on a CPU, one pass on a GPU or TPU; `platform`, default
    this backend, says which), every scene in every chunk, each chunk with its own dropout
    masks; the loss is the same mean.
    """
    base_key = jax.random.key(seed)
    plain = decoder.clone(weight_norm=False)  # applied to fold_weight_norm's params
    points_per_chunk = chunking.resolve(train_config.get("points_per_chunk", chunking.AUTO), "train", platform)

    def step(state, batch):
        epoch = state["step"] // steps_per_epoch
        key = jax.random.fold_in(base_key, state["step"])
        eps, gamma = curriculum_at(train_config, epoch)
        reg_weight = train_config.code_reg_weight * jnp.minimum(
            1.0, epoch / max(train_config.code_reg_warmup_epochs, 1))

        # The latents are gathered once; the decoder sees each scene's code, and the
        # gradient reaches the table through the gather's VJP after the chunks are summed.
        z, gather_vjp = jax.vjp(lambda latents: latents[batch["labels"]], state["params"]["latents"])  # (B, L)
        # Weight norm once per step, not once per chunk: the chunks see w, and w's summed
        # gradient goes back to v and g once.
        weights, unfold_vjp = jax.vjp(decoder_lib.fold_weight_norm, state["params"]["decoder"])
        rows, per_row = batch["sdf"].shape
        chunks = chunking.divisor_layout(rows, per_row, points_per_chunk)

        def chunk_loss(trainable, chunk, index):
            xyz, sdf = chunk
            pred = plain.apply(trainable["decoder"], trainable["z"][:, None, :], xyz, train=True,
                               rngs={"dropout": key if chunks == 1 else jax.random.fold_in(key, index)})
            return sdf_loss(pred, sdf, train_config.clamp_distance, eps, gamma) / chunks  # equal chunks

        def split(a):  # (B, S, ...) -> (chunks, B, S / chunks, ...): every scene in every chunk
            return jnp.moveaxis(a.reshape(rows, chunks, per_row // chunks, *a.shape[2:]), 1, 0)

        data, chunk_grads = chunking.scan_value_and_grad(
            chunk_loss, {"decoder": weights, "z": z}, (split(batch["xyz"]), split(batch["sdf"])))
        reg, reg_grad = jax.value_and_grad(lambda z: jnp.mean(jnp.linalg.norm(z, axis=-1)))(z)
        loss = data + reg_weight * reg
        grads = {"decoder": unfold_vjp(chunk_grads["decoder"])[0],
                 "latents": gather_vjp(chunk_grads["z"] + reg_weight * reg_grad)[0]}
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        params["latents"] = project_latents(params["latents"], train_config.code_bound)
        metrics = {"loss": loss, "sdf_loss": data, "latent_reg": reg,
                   "latent_norm": jnp.mean(jnp.linalg.norm(params["latents"], axis=-1))}
        return {"step": state["step"] + 1, "params": params, "opt_state": opt_state}, metrics

    return step


def jit_train_step(step_fn, state_sharding, mesh):
    """The step jitted once with explicit shardings and the state donated."""
    batch_sharding = {"labels": parallel.data_sharded(mesh), "xyz": parallel.data_sharded(mesh),
                      "sdf": parallel.data_sharded(mesh)}
    return jax.jit(step_fn, in_shardings=(state_sharding, batch_sharding),
                   out_shardings=(state_sharding, parallel.replicated(mesh)), donate_argnums=0)
