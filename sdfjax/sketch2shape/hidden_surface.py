"""The start shape's surface that no sketch of the object shows: points the refinement should leave alone.

    points, weights = hidden_anchors(render, params_z0, sketch_cameras, num_points, rng)

The silhouette and Siamese terms say nothing about the parts a drawing does not show, but
the latent moves them anyway (a DeepSDF latent's coordinates are shared by the whole
shape), so a refinement that fits the visible outline may change what the encoder guessed
for the rest. The anchors are points on the start's surface (found by tracing it from
`PROBE_VIEWS` around the object) that every sketch camera sees occluded by the start
itself. The refinement's optional hidden-surface term (sdfjax.sketch2shape.losses,
`sketch.hidden_weight`) keeps the SDF at them where the start had it, so the surface there
stays put while the visible part follows the drawing.

Measured on chairs256 (README, "What limits it"): the refinement moves hidden surface no
more than visible surface, and views from behind hide less of a chair than a three-quarter
view from above does. The term's results are mixed, so it is off by default.

Frames: the normalised object frame of the decoder; cameras are sdfjax.render.camera's.
"""

from __future__ import annotations

import numpy as np

from sdfjax.render import camera as camera_lib

# Cameras the start's surface is collected from: 8 azimuths x 2 elevations, so every side (the seat
# under a backrest, the legs' inner faces) is seen from at least one of them.
PROBE_VIEWS = camera_lib.view_set(azimuths=tuple(range(0, 360, 45)), elevations=(-35.0, 25.0), resolution=32,
                                  focal=64.0)
# A surface point counts as hidden from a camera when the start's surface along the ray to it comes
# at least this much nearer (normalised units; the object spans about 2). Points closer than this to
# being seen are visible: the outline decides them.
OCCLUSION_MARGIN = 0.03


def surface_points(render, params, cameras=PROBE_VIEWS) -> np.ndarray:
    """(P, 3) points where the rays of `cameras` hit the surface of `params`' shape (a `views_renderer`)."""
    origins, directions = camera_lib.stack_rays(cameras)
    out = render(params, origins, directions)
    return out["points"][out["hit"]]


def hidden_from(render, params, points: np.ndarray, cameras: list[camera_lib.Camera],
                margin: float = OCCLUSION_MARGIN) -> np.ndarray:
    """(V, P) bool: the shape of `params` occludes each of `points` (on or near its surface) from each of the
    V `cameras`' centres, all traced by one call of `render` (a `views_renderer`).

    A ray from the camera's centre to the point is traced; the point is hidden when the ray hits the
    surface more than `margin` before it. A ray that misses (it grazed the point's thin hit band) sees it.
    """
    origins = np.stack([c.position for c in cameras]).astype(np.float32)[:, None, :]  # (V, 1, 3)
    offsets = points[None] - origins
    distance = np.linalg.norm(offsets, axis=-1)
    directions = (offsets / distance[..., None]).astype(np.float32)
    out = render(params, np.broadcast_to(origins, offsets.shape), directions)
    return out["hit"] & (out["depth"] < distance - margin)


def hidden_anchors(render, params, cameras: list[camera_lib.Camera], num_points: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(points (num_points, 3) float32, weights (num_points,) float32): surface points of the start
    (`params` = {"decoder", "z": start}) drawn at random, weighted 1 where every one of `cameras` (the
    object's sketches) has them hidden, else 0. Fewer surface points than `num_points` are repeated
    (weights unchanged in share); no surface at all gives weights 0.
    """
    found = surface_points(render, params)
    if len(found) == 0:
        return np.zeros((num_points, 3), np.float32), np.zeros(num_points, np.float32)
    points = found[rng.choice(len(found), num_points, replace=len(found) < num_points)].astype(np.float32)
    return points, hidden_from(render, params, points, cameras).all(axis=0).astype(np.float32)
