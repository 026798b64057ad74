"""The loss that compares a rendered latent with a sketch (Sketch2Shape).

For a sketch S seen from camera C, with N(z, C) the normal map the sphere tracer renders
of latent z (differentiable through the IDR hit point and the autodiff normals), E the
Siamese encoder's towers, min_sdf the smallest SDF along each pixel's ray and
outline(S) the sketch's filled outline:

    L(z) = w_e * || E_sketch(S) - E_normal(N(z, C)) ||_2
           + w_s * mean_pixels [in outline(S): relu(min_sdf), outside: relu(-min_sdf)]
           + w_r * mean(z^2)
"""

from __future__ import annotations

import jax.numpy as jnp

from sdfjax.render import tracer
from sdfjax.render.silhouette import silhouette_loss


def sketch_loss(sdf_fn, decoder_params, z, encoder, target_embedding, origins, directions, outline, settings,
                resolution: int, sketch_config):
    """(loss, (embedding distance, silhouette)) of the module docstring for one sketch.

    `encoder` maps normal maps (1, R, R, 3) to embeddings (sdfjax.sketch2shape.encoders);
    `target_embedding` is E_sketch(S) (D,); origins and directions (R*R, 3) are the
    sketch camera's rays and `outline` (R*R,) bool its filled outline.
    """
    out = tracer.render(sdf_fn, {"decoder": decoder_params, "z": z}, origins, directions, settings)
    image = tracer.normal_image(out["normals"], out["hit"], resolution, resolution)
    rendered = encoder(image[None])[0]
    embedding = jnp.sqrt(jnp.sum((rendered - target_embedding) ** 2) + 1e-12)
    silhouette = silhouette_loss(out["min_sdf"], outline)
    loss = (sketch_config.embedding_weight * embedding + sketch_config.silhouette_weight * silhouette
            + sketch_config.code_reg_weight * jnp.mean(z**2))
    return loss, (embedding, silhouette)
