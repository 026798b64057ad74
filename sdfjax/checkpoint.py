"""Orbax checkpoints of a train state: save, restore with shardings, resume.

A checkpoint holds the state pytree (model parameters, optimiser state, step) and a
JSON item `meta` (what the trainer needs to describe its run: obj_ids, config), so a
checkpoint is self-describing. Restoring uses an abstract state that carries the
target shardings, so a run resumes on any device mesh; `restore_good` can also do
without one (it reads the tree's structure from the checkpoint), so code that only
uses a trained model never has to rebuild the trainer's optimiser, and it falls back
to the previous checkpoint when the latest cannot be read.
"""

from __future__ import annotations

import os
import time
import warnings

import jax
import orbax.checkpoint as ocp
from etils import epath

from sdfjax import storage

CHECKPOINTS = "checkpoints"


def checkpoint_dir(workdir: str) -> str:
    """`<workdir>/checkpoints`, absolute when local (Orbax asks for it); a URL (gs://...) stays as it is."""
    path = storage.join(workdir, CHECKPOINTS)
    return path if storage.is_remote(path) else os.path.abspath(path)


def manager(workdir: str, max_to_keep: int = 3) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        checkpoint_dir(workdir),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        item_names=("state", "meta"),
    )


def save(mngr: ocp.CheckpointManager, state, meta: dict, max_file_bytes: int | None = None) -> int:
    """Saves `state` and `meta` at the state's step and returns the step.

    `max_file_bytes` caps the size of each OCDBT data file (Orbax's target size; a file
    holds whole arrays, so it is exceeded only by one array larger than the cap). It keeps
    the files of a checkpoint committed to git under a per-file limit. It is a write-time
    layout only: the checkpoint reads back with the same `restore` as any other.
    """
    step = int(jax.device_get(state["step"]))
    state_args = (ocp.args.StandardSave(state) if max_file_bytes is None
                  else ocp.args.PyTreeSave(state, ocdbt_target_data_file_size=max_file_bytes))
    mngr.save(step, args=ocp.args.Composite(state=state_args, meta=ocp.args.JsonSave(meta)), force=True)
    mngr.wait_until_finished()
    return step


def abstract_with_shardings(state_shape, shardings):
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh), state_shape, shardings)


def restore(mngr: ocp.CheckpointManager, abstract_state, step: int | None = None, partial: bool = False):
    """(state, meta) of `step` (default: the latest), placed by `abstract_state`'s shardings.

    `partial` reads only the entries `abstract_state` names (e.g. the parameters without
    the optimiser's moments); otherwise its tree must be the saved one.
    """
    step = mngr.latest_step() if step is None else step
    state_args = (ocp.args.PyTreeRestore(abstract_state, ocp.checkpoint_utils.construct_restore_args(abstract_state),
                                         partial_restore=True) if partial
                  else ocp.args.StandardRestore(abstract_state))
    restored = mngr.restore(step, args=ocp.args.Composite(state=state_args, meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"]


class CheckpointFallbackWarning(UserWarning):
    """The latest checkpoint could not be read; an earlier one was used (the message names both)."""


def read_meta(workdir: str) -> dict | None:
    """The `meta` item of the latest readable checkpoint, or None when there is none."""
    restored = restore_good(workdir, meta_only=True)
    return None if restored is None else restored[1]


def read_state(workdir: str, step: int | None = None):
    """The state of `step` (default: latest) as saved, on the devices it was saved from (inspection)."""
    mngr = manager(workdir)
    step = mngr.latest_step() if step is None else step
    return mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]


def set_aside_after(workdir: str, step: int) -> list[str]:
    """Moves the checkpoints later than `step` (ones that could not be read) to `<workdir>/checkpoints_unreadable/`.

    A run resumed from `step` saves those steps again; the unreadable copies are kept
    for inspection rather than deleted. Returns the folders they went to.
    """
    moved = []
    for later in sorted(s for s in manager(workdir).all_steps() if s > step):
        target = storage.join(checkpoint_dir(workdir) + "_unreadable", f"{later}-{time.time_ns()}")
        storage.makedirs(os.path.dirname(target))
        epath.Path(storage.join(checkpoint_dir(workdir), str(later))).rename(target)
        moved.append(target)
    return moved


def _abstract_as_saved(workdir: str, step: int, sharding: jax.sharding.Sharding):
    """The saved state tree of `step` as ShapeDtypeStructs placed with `sharding` (from its metadata)."""
    metadata = ocp.StandardCheckpointer().metadata(storage.join(checkpoint_dir(workdir), str(step), "state"))
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                        metadata.item_metadata.tree)


# Errors of the machine or the moment, not of a checkpoint's files: raised, never a reason to fall back.
NOT_THE_DATA = (MemoryError, TimeoutError, ConnectionError, PermissionError, InterruptedError)


def restore_good(workdir: str, abstract_state=None, sharding: jax.sharding.Sharding | None = None,
                 meta_only: bool = False, keys: tuple[str, ...] | None = None):
    """(state, meta, step) of the latest checkpoint that reads back, or None when there is none.

    The state is placed by `abstract_state`'s shardings, or, without one, with the tree
    structure, shapes and dtypes the checkpoint's metadata gives, every array placed with
    `sharding` (optimiser states then come back as plain dicts and lists); `keys` then reads
    only those top-level entries of the state (`("params",)` for inference: the optimiser's
    moments are never read). `meta_only` restores only the meta item (state None). A
    checkpoint whose data cannot be read (a file cut short or overwritten) is skipped for the
    one before it, with a CheckpointFallbackWarning naming both; ValueError when none reads.
    An error that says nothing about the data (`NOT_THE_DATA`: memory, a timeout, a lost
    connection, permissions) is raised as it is: a good checkpoint is never passed over for it.
    """
    mngr = manager(workdir)
    steps = sorted(mngr.all_steps(), reverse=True)
    failures = []
    for step in steps:
        try:
            if meta_only:
                state, meta = None, mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            elif abstract_state is not None:
                state, meta = restore(mngr, abstract_state, step)
            else:
                abstract = _abstract_as_saved(workdir, step, sharding)
                if keys is not None:
                    abstract = {k: abstract[k] for k in keys}
                state, meta = restore(mngr, abstract, step, partial=keys is not None)
        except NOT_THE_DATA:
            raise
        except Exception as e:  # noqa: BLE001 (the data cannot be read: fall back to an earlier step)
            failures.append(f"step {step} ({type(e).__name__}: {str(e)[:200]})")
            continue
        if failures:
            warnings.warn(f"{checkpoint_dir(workdir)}: checkpoint {', '.join(failures)} cannot be read; "
                          f"using step {step}", CheckpointFallbackWarning, stacklevel=2)
        return state, meta, step
    if failures:
        raise ValueError(f"{checkpoint_dir(workdir)}: no checkpoint can be read: {'; '.join(failures)}")
    return None
