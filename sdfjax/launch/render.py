r"""Renders latent shapes to normal-map pictures with the sphere tracer.

    python -m sdfjax.launch.render --config=configs/chair16.py:cpu --workdir=runs/chair16_cpu \
        --config.render.latents=mean,0,chair_000_0003
    python -m sdfjax.launch.render ... --config.render.latents=runs/chair16_cpu/fit/<ts>/latents.npz:chair_000_0016

Each latent (mean | trained row | train obj_id | <latents.npz>:<obj_id>) becomes one row of
the picture, one column per view in config.render.preview_views; written to
<workdir>/render/<timestamp>.png.
"""

import datetime
import os
import sys

from absl import flags

from sdfjax.launch import common


def main(argv):
    del argv
    f = flags.FLAGS
    common.quiet_logging()
    import jax.numpy as jnp

    from sdfjax import checkpoint
    from sdfjax.data import layout
    from sdfjax.fit import traverse
    from sdfjax.render import camera as camera_lib
    from sdfjax.render import latent_render, tracer

    config = f.config
    try:
        trained = checkpoint.load_trained(config, f.workdir)
        specs = [s.strip() for s in str(config.render.latents).split(",") if s.strip()]
        latents = [traverse.resolve_latent(s, trained) for s in specs]
        views = camera_lib.views_from_config(config.render)
        bad = [v for v in config.render.preview_views if not 0 <= v < len(views)]
        if bad:
            raise ValueError(f"config.render.preview_views: {bad} not in 0..{len(views) - 1}")
    except ValueError as e:
        sys.exit(f"error: {e}")
    cameras = [views[v].scaled(config.render.preview_resolution) for v in config.render.preview_views]
    settings = tracer.TraceSettings.from_config(config.render)
    sdf_fn = latent_render.decoder_sdf(trained.decoder)
    rows = [list(latent_render.render_normal_maps(sdf_fn, {"decoder": trained.params, "z": jnp.asarray(z)},
                                                   cameras, settings)) for z in latents]
    path = os.path.join(f.workdir, "render", datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".png")
    with layout.atomic_write(path) as out:
        out.write(layout.png_bytes(latent_render.picture_grid(rows)))
    print(f"{len(rows)} latents x {len(cameras)} views: {path}")


if __name__ == "__main__":
    common.run_on_trained(main)
