"""Loading what a training run left behind, for inference: no training code is imported.

    trained = load_trained(config, workdir)          # DeepSDF decoder + trained latents
    model, params, meta = load_siamese(workdir)      # the Siamese sketch / normal-map encoder
    z = resolve_latent("mean", trained)              # a latent named on a command line

`check_decoder_matches` and `check_siamese_matches` are the checks that a checkpoint's
model is the one a config describes; the trainers use them too before resuming.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections
import numpy as np

from sdfjax import checkpoint, parallel, storage
from sdfjax.models import decoder as decoder_lib
from sdfjax.models import latent_encoder
from sdfjax.models import siamese as siamese_lib

DECODER_KEYS = ("latent_dim", "hidden_dim", "num_layers", "skip_layers", "weight_norm", "fourier_frequencies")
SIAMESE_KEYS = ("width", "stage_blocks", "embedding_dim", "normalize", "shared_tower")
SIAMESE_SUBDIR = "siamese"
ENCODER_KEYS = ("width", "stage_blocks", "view_input")
ENCODER_SUBDIR = "encoder"


@dataclasses.dataclass
class TrainedModel:
    """What inference needs from a training run: the decoder and the trained latents."""

    decoder: decoder_lib.Decoder  # built from the caller's config.model
    params: dict  # the decoder's Flax parameters
    latents: np.ndarray  # (T, L): the trained codes of the T train shapes that were trained, in label order
    obj_ids: list[str]  # train obj_id of each row
    step: int


def as_plain(value):
    """Lists for tuples (a JSON round trip turns tuples into lists), anything else unchanged."""
    return list(value) if isinstance(value, (list, tuple)) else value


def _differences(saved: dict, wanted, keys) -> dict:
    return {k: (saved.get(k), wanted.get(k)) for k in keys
            if k in saved and as_plain(saved.get(k)) != as_plain(wanted.get(k))}


def check_decoder_matches(meta: dict, config) -> None:
    """Raises ValueError when the checkpoint's decoder differs from `config.model`."""
    diff = _differences(meta.get("config", {}).get("model", {}), config.model, DECODER_KEYS)
    if diff:
        raise ValueError("the checkpoint's decoder does not match config.model: "
                         + ", ".join(f"{k} saved {a} vs config {b}" for k, (a, b) in diff.items()))


def check_siamese_matches(meta: dict, siamese_config) -> None:
    """Raises ValueError when a Siamese checkpoint's encoder differs from `siamese_config`."""
    diff = _differences(meta["siamese"], siamese_config, SIAMESE_KEYS)
    if diff:
        raise ValueError("the Siamese checkpoint's encoder does not match config.siamese: "
                         + ", ".join(f"{k} saved {a} vs config {b}" for k, (a, b) in diff.items()))


def check_encoder_matches(meta: dict, encoder_config, latent_dim: int) -> None:
    """Raises ValueError when a sketch-to-latent checkpoint differs from `encoder_config` or the latent size."""
    # a checkpoint's meta without `view_input` is an encoder that reads sketches only
    diff = _differences({"view_input": False, **meta["encoder"]}, encoder_config, ENCODER_KEYS)
    if meta.get("latent_dim") != latent_dim:
        diff["latent_dim"] = (meta.get("latent_dim"), latent_dim)
    if diff:
        raise ValueError("the encoder checkpoint does not match config.encoder / config.model: "
                         + ", ".join(f"{k} saved {a} vs config {b}" for k, (a, b) in diff.items()))


def _restore_replicated(workdir: str):
    """(state holding only "params", meta, step) of the latest readable checkpoint, replicated on this
    process's devices, or None. The optimiser's moments (twice the parameters) are not read."""
    return checkpoint.restore_good(workdir, sharding=parallel.replicated(parallel.make_mesh()), keys=("params",))


def load_trained(config, workdir: str) -> TrainedModel:
    """The latest DeepSDF checkpoint of `workdir`, restored onto this process's devices.

    Raises ValueError (one line) when the workdir holds no checkpoint or its decoder does
    not match `config.model`; the caller's `config.model.compute_dtype` is kept, since
    parameters are stored in float32 either way.
    """
    restored = _restore_replicated(workdir)
    if restored is None:
        raise ValueError(f"{checkpoint.checkpoint_dir(workdir)}: no checkpoint; train first with "
                         f"python -m sdfjax.launch.train --workdir={workdir}")
    state, meta, step = restored
    check_decoder_matches(meta, config)
    # A train shape whose preprocessing failed keeps its label, so its row of the table was
    # never trained: rows without an obj_id are left out (of the mean latent too).
    rows = [i for i, obj_id in enumerate(meta["obj_ids"]) if obj_id]
    table = np.asarray(jax.device_get(state["params"]["latents"]))
    return TrainedModel(decoder=decoder_lib.from_config(config.model),
                        params=jax.device_get(state["params"]["decoder"]), latents=table[rows],
                        obj_ids=[meta["obj_ids"][i] for i in rows], step=step)


def _trained_params(out: str, what: str, launcher: str, workdir: str) -> tuple[dict, dict]:
    """(params on the host, meta) of the latest readable checkpoint in `out`; ValueError naming `launcher` if none."""
    restored = _restore_replicated(out)
    if restored is None:
        raise ValueError(f"{checkpoint.checkpoint_dir(out)}: no {what} checkpoint; train one with "
                         f"python -m sdfjax.launch.{launcher} --workdir={workdir}")
    state, meta, _ = restored
    return jax.device_get(state["params"]), meta


def siamese_dir(workdir: str) -> str:
    """Where a run keeps its Siamese encoder: `<workdir>/siamese`."""
    return os.path.join(workdir, SIAMESE_SUBDIR)


def load_siamese(workdir: str) -> tuple[siamese_lib.Siamese, dict, dict]:
    """(model, params, meta) of the latest Siamese checkpoint of `workdir`, as it was trained.

    The encoder is built from the checkpoint's own settings, so retrieval and
    sketch-to-shape need no matching flags. ValueError (one line) when there is none.
    """
    params, meta = _trained_params(siamese_dir(workdir), "Siamese", "train_siamese", workdir)
    return siamese_lib.from_config(ml_collections.ConfigDict(meta["siamese"])), params, meta


def encoder_dir(workdir: str) -> str:
    """Where a run keeps its sketch-to-latent encoder: `<workdir>/encoder`."""
    return os.path.join(workdir, ENCODER_SUBDIR)


def encoder_val_scores_path(workdir: str) -> str:
    """The val split's shape errors that train_encoder writes after training
    (sdfjax.evaluators.latent_encoder.val_shape_errors)."""
    return os.path.join(encoder_dir(workdir), "val_scores.json")


def load_encoder(workdir: str) -> tuple[siamese_lib.Tower, dict, dict]:
    """(model, params, meta) of the latest sketch-to-latent checkpoint of `workdir`, as it was trained.

    ValueError (one line) when there is none.
    """
    params, meta = _trained_params(encoder_dir(workdir), "sketch-to-latent encoder", "train_encoder", workdir)
    return latent_encoder.from_config(ml_collections.ConfigDict(meta["encoder"]), int(meta["latent_dim"])), params, meta


def resolve_latent(spec: str, trained: TrainedModel) -> np.ndarray:
    """The latent code a command-line spec names.

    `mean` (the mean trained latent), a row of `trained.latents` (`3`: the fourth train
    shape in label order), a train obj_id, or a fitted latent `<path>/latents.npz:<obj_id>` (what sdfjax.launch.fit writes).
    """
    spec = str(spec).strip()
    if spec == "mean":
        return trained.latents.mean(axis=0)
    if spec.lstrip("-").isdigit():
        row = int(spec)
        if not 0 <= row < len(trained.latents):
            raise ValueError(f"latent row {row}: the checkpoint has rows 0..{len(trained.latents) - 1}")
        return trained.latents[row]
    if spec in trained.obj_ids:
        return trained.latents[trained.obj_ids.index(spec)]
    path, _, obj_id = spec.rpartition(":")
    if path.endswith(".npz"):
        if not storage.exists(path):
            raise ValueError(f"{path}: no such latents file")
        saved = storage.load_npz(path)
        ids = [str(o) for o in saved["obj_ids"]]
        if obj_id not in ids:
            raise ValueError(f"{path}: no latent for {obj_id!r} (it has {', '.join(ids[:5])}...)")
        return saved["latents"][ids.index(obj_id)]
    raise ValueError(f"latent {spec!r}: expected mean, a latent row, a train obj_id or <latents.npz>:<obj_id>")
