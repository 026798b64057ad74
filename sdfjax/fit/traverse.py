"""Meshes along a path between two latent codes (Sketch2Shape's traverse_latent.py).

    summary = traverse(config, workdir)

writes `workdir/traverse/<timestamp>/step=000.obj ... step=<steps-1>.obj` and
`latents.npz`, for the codes from `config.traverse.start` to `config.traverse.end`.
An endpoint is `mean` (the mean trained latent), a trained latent row (`3`), a train
obj_id, or a fitted latent `<path>/latents.npz:<obj_id>` (sdfjax.trained.resolve_latent).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from tqdm import tqdm

from sdfjax import storage, trained as trained_lib
from sdfjax.fit import meshing
from sdfjax.fit.folded import fold_decoder

INTERPOLATIONS = ("linear", "slerp")


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
    """Writes one mesh per step between the two endpoints; returns {"out_dir", "meshes", "latents"}."""
    tc = config.traverse
    trained = trained_lib.load_trained(config, workdir)
    codes = interpolate(trained_lib.resolve_latent(tc.start, trained), trained_lib.resolve_latent(tc.end, trained),
                        tc.steps, tc.interpolation)
    out_dir = storage.run_dir(workdir, "traverse", out_dir)
    storage.save_npz(storage.join(out_dir, "latents.npz"), latents=codes, start=str(tc.start), end=str(tc.end),
             interpolation=tc.interpolation)
    folded = fold_decoder(trained.decoder, trained.params)
    meshes = []
    for i, z in enumerate(tqdm(codes, desc="traverse", unit="mesh", disable=not progress, file=sys.stderr)):
        mesh = meshing.mesh_of_latent(config, folded, z)
        if mesh is None:
            print(f"step {i}: the SDF has no zero level set; no mesh written", file=sys.stderr)
            continue
        path = os.path.join(out_dir, f"step={i:03d}.obj")
        storage.atomic_export_mesh(path, mesh)
        meshes.append(path)
    return {"out_dir": out_dir, "meshes": meshes, "latents": codes}
