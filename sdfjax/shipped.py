"""The small trained model shipped with the project: a run's inference weights, with a manifest and checksums.

    export(workdir, out, config, "chairs256:cpu")   # what `make results` does last
    manifest = verify(out)                           # DataError naming a changed or missing file
    model = sdfjax.load_pretrained(out)              # then loaded like any run, from any folder

An exported folder is a run folder cut down to what inference reads: the latest DeepSDF
checkpoint (decoder and latent table), `siamese/` and `encoder/`, each holding the
parameters only (no optimiser state), with the trainer's own `meta`, so `sdfjax.trained`
loads it with the same code as a run. Beside them: `config.json`, the resolved config it
was made with (read as data: no config file is needed to use it), and what the caller's
`extras` writes (sdfjax.launch.export adds `retrieval/`, the Siamese embeddings of every
training view, so sketch to shape retrieves training chairs without the dataset). `MANIFEST.json` names the config,
the command that made it, the source steps and checkpoint digests, and the SHA-256 of
every file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable

import jax
import numpy as np

from sdfjax import checkpoint, config_files, errors, parallel, storage
from sdfjax import trained as trained_lib

MANIFEST = "MANIFEST.json"
PARTS = ("decoder", "siamese", "encoder")
# Each file of the export stays below this (it is committed to git, whose hosts limit file size).
MAX_FILE_BYTES = 1 << 20


def _part_dir(run: str, part: str) -> str:
    return {"decoder": run, "siamese": trained_lib.siamese_dir(run), "encoder": trained_lib.encoder_dir(run)}[part]


def _files(folder: str) -> list[str]:
    """Every file under `folder`, relative to it, sorted (the manifest's own file left out)."""
    found = []
    for root, _, names in os.walk(folder):
        found += [os.path.relpath(os.path.join(root, n), folder) for n in names]
    return sorted(f for f in found if f != MANIFEST)


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_steps(workdir: str) -> dict[str, int]:
    """The latest checkpoint step of each part of a run (ValueError naming the part that has none)."""
    steps = {}
    for part in PARTS:
        latest = checkpoint.manager(_part_dir(workdir, part)).latest_step()
        if latest is None:
            raise ValueError(f"{checkpoint.checkpoint_dir(_part_dir(workdir, part))}: no {part} checkpoint to export")
        steps[part] = int(latest)
    return steps


def source_digests(workdir: str, steps: dict[str, int]) -> dict[str, str]:
    """SHA-256 of each part's checkpoint at `steps` (its files' names and contents): a part trained again to the
    same step count (a results stage rerun) has another digest; one left alone keeps its own."""
    digests = {}
    for part in PARTS:
        folder = os.path.join(checkpoint.checkpoint_dir(_part_dir(workdir, part)), str(steps[part]))
        digest = hashlib.sha256()
        for name in _files(folder):
            digest.update(f"{name}\0{sha256(os.path.join(folder, name))}\n".encode())
        digests[part] = digest.hexdigest()
    return digests


def check_target(workdir: str, out: str) -> None:
    """errors.DataError, before anything is written, when exporting `workdir` to `out` could lose a file: `out` is
    the run folder or holds it, or it exists and is neither empty nor an earlier export (its manifest)."""
    run, target = os.path.realpath(workdir), os.path.realpath(out)
    if run == target or run.startswith(target.rstrip(os.sep) + os.sep):
        raise errors.DataError(f"--out={out}: that folder is or holds the run {workdir}; export to a folder of its own")
    if os.path.exists(target) and not os.path.isfile(os.path.join(target, MANIFEST)):
        if not os.path.isdir(target) or os.listdir(target):
            raise errors.DataError(f"--out={out}: it exists and is not an sdfjax export (no {MANIFEST}); nothing "
                                   "was written, choose another folder")


def export(workdir: str, out: str, config, config_spec: str, command: str = "make results",
           extras: Callable[[str], None] | None = None) -> dict:
    """Writes the inference copy of run `workdir`, trained with `config` (named `config_spec` on the command line),
    to `out` and returns its manifest. `extras(folder)` writes further files into the copy before its manifest.

    Skipped (the existing manifest returned) when `out` already holds a complete export of
    the same source checkpoints (steps and digests) that verifies, so rerunning the results
    command leaves the committed files byte for byte as they are. `out` must be new, empty or
    an earlier export (`check_target`). The copy is written in a fresh folder beside `out`
    and moved into place at the end: an interrupted export never leaves a half folder.
    """
    check_target(workdir, out)
    steps = source_steps(workdir)
    digests = source_digests(workdir, steps)
    if storage.exists(os.path.join(out, MANIFEST)):
        try:
            manifest = verify(out)
        except errors.DataError:
            manifest = None
        if (manifest is not None and manifest.get("source_steps") == steps
                and manifest.get("source_digests") == digests and config_files.CONFIG_JSON in manifest["files"]):
            return manifest
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out))}.partial-", dir=parent)
    sharding = parallel.replicated(parallel.make_mesh())
    for part in PARTS:
        restored = checkpoint.restore_good(_part_dir(workdir, part), sharding=sharding, keys=("params",))
        state, meta, step = restored
        params = jax.device_get(state["params"])
        checkpoint.save(checkpoint.manager(_part_dir(staging, part), max_to_keep=1),
                        {"params": params, "step": np.int64(step)}, meta, max_file_bytes=MAX_FILE_BYTES)
    config_files.save(config, staging)
    if extras is not None:
        extras(staging)
    manifest = write_manifest(staging, {"config": config_spec, "command": command, "source": workdir,
                                        "source_steps": steps, "source_digests": digests})
    if os.path.exists(out):  # an earlier export (check_target): set aside, then removed once the new one is in place
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out))}.old-", dir=parent)
        os.replace(out, os.path.join(old, "export"))
        os.replace(staging, out)
        shutil.rmtree(old)
    else:
        os.replace(staging, out)
    return manifest


def write_manifest(folder: str, fields: dict) -> dict:
    """Writes folder/MANIFEST.json: `fields` (config, command, source, source_steps, source_digests) with the
    SHA-256 and total size of every file now in `folder`; returns it."""
    files = {f: sha256(os.path.join(folder, f)) for f in _files(folder)}
    manifest = {**fields, "bytes": sum(os.path.getsize(os.path.join(folder, f)) for f in files), "files": files}
    storage.atomic_write_text(os.path.join(folder, MANIFEST), json.dumps(manifest, indent=1) + "\n")
    return manifest


def refresh(folder: str, config, config_spec: str, extras: Callable[[str], None] | None = None) -> dict:
    """Rewrites an export's config.json, `extras` and manifest in place, its weights untouched (verified first):
    an export made before it carried these files."""
    manifest = verify(folder)
    config_files.save(config, folder)
    if extras is not None:
        extras(folder)
    return write_manifest(folder, {**{k: manifest[k] for k in ("command", "source", "source_steps",
                                                                "source_digests")}, "config": config_spec})


def is_export(folder: str) -> bool:
    """Whether `folder` is an exported model (it has a manifest), not a training run."""
    return os.path.isfile(os.path.join(folder, MANIFEST))


def verify(folder: str) -> dict:
    """The manifest of an exported folder after checking every file's SHA-256.

    Raises errors.DataError naming the folder's manifest when it is missing, unreadable or
    lists a file outside the folder (`..`, an absolute path, a link out), and naming the file
    when one is missing, changed or not listed.
    """
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        raise errors.DataError(f"{path}: no manifest; this is not an exported model (see sdfjax.shipped)")
    try:
        manifest = json.loads(storage.read_text(path))
        listed = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as e:
        raise errors.DataError(f"{path}: not a readable manifest ({type(e).__name__}: {e})") from None
    root = os.path.realpath(folder)
    for name, digest in sorted(listed.items()):
        file = os.path.join(folder, name)
        if os.path.isabs(name) or not os.path.realpath(file).startswith(root + os.sep):
            raise errors.DataError(f"{path}: lists {name!r}, a file outside the folder; this is not an sdfjax export")
        if not os.path.isfile(file):
            raise errors.DataError(f"{file}: listed in {MANIFEST} but missing")
        if sha256(file) != digest:
            raise errors.DataError(f"{file}: checksum differs from {MANIFEST}; the shipped model is damaged "
                                   "(git checkout it again, or rerun make results)")
    extra = sorted(set(_files(folder)) - set(listed))
    if extra:
        raise errors.DataError(f"{os.path.join(folder, extra[0])}: not listed in {MANIFEST}")
    return manifest
