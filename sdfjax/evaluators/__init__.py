"""Evaluators: each turns a trained model and a split into metrics rows.

  reconstruction   meshes of latents scored against their true shapes (Chamfer, EMD, ...)
  retrieval        Recall@k of sketches against normal maps (the Siamese encoder)
  latent_encoder   the sketch-to-latent encoder's shape error without meshes
  sketch_to_shape  the baselines beside each sketch-to-shape row (retrieval, SDF fitting)

Tables and pictures of these rows are formatted by sdfjax.report.
"""
