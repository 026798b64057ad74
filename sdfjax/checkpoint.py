"""Orbax checkpoints of a train state: save, restore with shardings, resume.

A checkpoint holds the state pytree (model parameters, optimiser state, step) and a
JSON item `meta` (what the trainer needs to describe its run: obj_ids, config), so a
checkpoint is self-describing. Restoring uses an abstract state that carries the
target shardings, so a run resumes on any device mesh; `restore_as_saved` needs no
abstract state at all (it reads the tree's structure from the checkpoint), so code
that only uses a trained model never has to rebuild the trainer's optimiser.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

CHECKPOINTS = "checkpoints"


def checkpoint_dir(workdir: str) -> str:
    return os.path.abspath(os.path.join(workdir, CHECKPOINTS))


def manager(workdir: str, max_to_keep: int = 3) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        checkpoint_dir(workdir),
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


def restore_as_saved(workdir: str, sharding: jax.sharding.Sharding, step: int | None = None):
    """(state, meta, step) of `step` (default: latest), every array placed with `sharding`.

    The tree's structure, shapes and dtypes come from the checkpoint's own metadata
    (optimiser states come back as plain dicts and lists). Returns None when the
    workdir holds no checkpoint.
    """
    mngr = manager(workdir)
    step = mngr.latest_step() if step is None else step
    if step is None:
        return None
    metadata = ocp.StandardCheckpointer().metadata(os.path.join(checkpoint_dir(workdir), str(step), "state"))
    abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                            metadata.item_metadata.tree)
    state, meta = restore(mngr, abstract, step)
    return state, meta, step
