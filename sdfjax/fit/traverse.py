"""Meshes along a path between two latent codes (Sketch2Shape's traverse_latent.py).

    summary = traverse(config, workdir)

writes `workdir/traverse/<timestamp>/step=000.obj ... step=<steps-1>.obj` and
`latents.npz`, for the codes from `config.traverse.start` to `config.traverse.end`.
An endpoint is `mean` (the mean trained latent), a trained latent row (`3`), a train
obj_id, or a fitted latent `<path>/latents.npz:<obj_id>` (what sdfjax.launch.fit writes).
"""

from __future__ import annotations

import datetime
import os
import sys

import numpy as np

from sdfjax import checkpoint
from sdfjax.data import layout
from sdfjax.fit import evaluate, latent

INTERPOLATIONS = ("linear", "slerp")


def resolve_latent(spec: str, trained: checkpoint.TrainedModel) -> np.ndarray:
    """The latent code an endpoint spec names (see the module docstring)."""
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
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such latents file")
        with np.load(path) as f:
            ids = [str(o) for o in f["obj_ids"]]
            if obj_id not in ids:
                raise ValueError(f"{path}: no latent for {obj_id!r} (it has {', '.join(ids[:5])}...)")
            return f["latents"][ids.index(obj_id)]
    raise ValueError(f"latent {spec!r}: expected mean, a latent row, a train obj_id or <latents.npz>:<obj_id>")


def interpolate(start: np.ndarray, end: np.ndarray, steps: int, method: str = "linear") -> np.ndarray:
    """(steps, L) codes from `start` to `end` inclusive, linear or spherical (Shoemake 1985)."""
    if method not in INTERPOLATIONS:
        raise ValueError(f"config.traverse.interpolation={method!r}: expected one of {INTERPOLATIONS}")
    if steps < 2:
        raise ValueError(f"config.traverse.steps={steps}: need at least 2")
    t = np.linspace(0.0, 1.0, steps)[:, None]
    if method == "linear":
        return ((1 - t) * start + t * end).astype(np.float32)
    na, nb = np.linalg.norm(start), np.linalg.norm(end)
    cos = np.clip(np.dot(start, end) / max(na * nb, 1e-12), -1.0, 1.0)
    omega = np.arccos(cos)
    if omega < 1e-4:  # nearly parallel: slerp's weights are 0/0, linear is its limit
        return ((1 - t) * start + t * end).astype(np.float32)
    weights_a, weights_b = np.sin((1 - t) * omega) / np.sin(omega), np.sin(t * omega) / np.sin(omega)
    return (weights_a * start + weights_b * end).astype(np.float32)


def traverse(config, workdir: str, progress: bool = True, out_dir: str | None = None) -> dict:
    """Writes one mesh per step between the two endpoints; returns {"out_dir", "meshes"}."""
    from tqdm import tqdm

    tc = config.traverse
    trained = checkpoint.load_trained(config, workdir)
    codes = interpolate(resolve_latent(tc.start, trained), resolve_latent(tc.end, trained), tc.steps,
                        tc.interpolation)
    out_dir = out_dir or os.path.join(workdir, "traverse", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out_dir, exist_ok=True)
    np.savez(os.path.join(out_dir, "latents.npz"), latents=codes, start=str(tc.start), end=str(tc.end),
             interpolation=tc.interpolation)
    folded = latent.fold_decoder(trained.decoder, trained.params)
    meshes = []
    for i, z in enumerate(tqdm(codes, desc="traverse", unit="mesh", disable=not progress, file=sys.stderr)):
        mesh, _ = evaluate.extract_mesh(
            evaluate.decoder_sdf_fn(folded, z, config.mesh.chunk, config.model.get("fourier_frequencies", 0)),
            config.mesh)
        path = os.path.join(out_dir, f"step={i:03d}.obj")
        if mesh is None:
            print(f"step {i}: the SDF has no zero level set; no mesh written", file=sys.stderr)
            continue
        layout.atomic_export_mesh(path, mesh)
        meshes.append(path)
    return {"out_dir": out_dir, "meshes": meshes, "latents": codes}
