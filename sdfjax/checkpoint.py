"""Orbax checkpoints of a train state: save, restore with shardings, resume.

A checkpoint holds the state pytree (decoder, latents, optimiser state, step) and a
JSON item `meta` with the obj_ids in latent-row order and the config, so a checkpoint
is self-describing. Restoring uses an abstract state that carries the target
shardings, so a run resumes on any device mesh.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
import orbax.checkpoint as ocp


def manager(workdir: str, max_to_keep: int = 3) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, "checkpoints")),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_names=("state", "meta"),
    )


def save(mngr: ocp.CheckpointManager, state, meta: dict) -> int:
    step = int(jax.device_get(state["step"]))
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
              force=True)
    mngr.wait_until_finished()
    return step


def abstract_with_shardings(state_shape, shardings):
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), state_shape, shardings)


def restore(mngr: ocp.CheckpointManager, abstract_state, step: int | None = None):
    """(state, meta) of `step` (default: the latest), placed by `abstract_state`'s shardings."""
    step = mngr.latest_step() if step is None else step
    restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                                          meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"]


def read_meta(workdir: str) -> dict | None:
    """The `meta` item of the latest checkpoint, or None when there is none."""
    mngr = manager(workdir)
    step = mngr.latest_step()
    if step is None:
        return None
    return mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def read_state(workdir: str, step: int | None = None):
    """The state of `step` (default: latest) as saved, on the devices it was saved from (inspection)."""
    mngr = manager(workdir)
    step = mngr.latest_step() if step is None else step
    return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]


@dataclasses.dataclass
class TrainedModel:
    """What inference needs from a training run: the decoder and the trained latents."""

    decoder: object  # sdfjax.models.decoder.Decoder built from the caller's config.model
    params: dict  # the decoder's Flax parameters
    latents: np.ndarray  # (T, L): trained codes, row = label of a train shape
    obj_ids: list[str]  # train obj_id of each row
    step: int


def load_trained(config, workdir: str) -> TrainedModel:
    """The latest checkpoint of `workdir`, restored onto this process's devices.

    Raises ValueError (one line) when the workdir holds no checkpoint or its decoder does
    not match `config.model`; the caller's `config.model.compute_dtype` is kept, since
    parameters are stored in float32 either way.
    """
    import ml_collections

    from sdfjax import parallel
    from sdfjax.models import decoder as decoder_lib
    from sdfjax.train import loop, step as step_lib

    mngr = manager(workdir)
    step = mngr.latest_step()
    if step is None:
        raise ValueError(f"{os.path.join(workdir, 'checkpoints')}: no checkpoint; train first with "
                         f"python -m sdfjax.launch.train --workdir={workdir}")
    meta = read_meta(workdir)
    loop.check_decoder_matches(meta, config)
    saved_train = ml_collections.ConfigDict(meta["config"]["train"])
    state_dir = os.path.join(os.path.abspath(workdir), "checkpoints", str(step), "state")
    num_rows = ocp.StandardCheckpointer().metadata(state_dir).item_metadata["params"]["latents"].shape[0]
    decoder = decoder_lib.from_config(config.model)
    optimizer = step_lib.make_optimizer(saved_train, 1)
    abstract = jax.eval_shape(lambda k: step_lib.init_state(decoder, optimizer, num_rows, k, 0.0), jax.random.key(0))
    mesh = parallel.make_mesh()
    shardings = jax.tree.map(lambda _: parallel.replicated(mesh), abstract)
    state, _ = restore(mngr, abstract_with_shardings(abstract, shardings), step)
    obj_ids = list(meta["obj_ids"])
    latents = np.asarray(jax.device_get(state["params"]["latents"]))[:len(obj_ids)]
    return TrainedModel(decoder=decoder, params=jax.device_get(state["params"]["decoder"]), latents=latents,
                        obj_ids=obj_ids, step=step)
