r"""Renders latent shapes to normal-map pictures with the sphere tracer.

    python -m sdfjax.launch.render --config=configs/chair16.py:cpu --workdir=runs/chair16_cpu \
        --config.render.latents=mean,0,chair_000_0003
    python -m sdfjax.launch.render ... --config.render.latents=runs/chair16_cpu/fit/<ts>/latents.npz:chair_000_0016

Each latent (mean | trained row | train obj_id | <latents.npz>:<obj_id>) becomes one row of
the picture, one column per view in config.render.preview_views; written to
<workdir>/render/<timestamp>.png.
"""

import os
import sys

from absl import flags

from sdfjax import storage, trained as trained_lib
from sdfjax.launch import common
from sdfjax.render import camera as camera_lib
from sdfjax.render import latent_render, tracer


def main(argv):
    del argv
    f = flags.FLAGS
    common.quiet_logging()
    config = f.config
    try:
        trained = trained_lib.load_trained(config, f.workdir)
        specs = [s.strip() for s in str(config.render.latents).split(",") if s.strip()]
        latents = [trained_lib.resolve_latent(s, trained) for s in specs]
        views = camera_lib.views_from_config(config.render)
        bad = [v for v in config.render.preview_views if not 0 <= v < len(views)]
        if bad:
            raise ValueError(f"config.render.preview_views: {bad} not in 0..{len(views) - 1}")
    except ValueError as e:
        sys.exit(f"error: {e}")
    cameras = [views[v].scaled(config.render.preview_resolution) for v in config.render.preview_views]
    grid = latent_render.latents_picture(trained.decoder, trained.params, latents, cameras,
                                         tracer.TraceSettings.from_config(config.render))
    path = os.path.join(f.out_dir, "render.png") if f.out_dir else os.path.join(f.workdir, "render", storage.timestamp() + ".png")
    storage.write_png(path, grid)
    print(f"{len(latents)} latents x {len(cameras)} views: {path}")


if __name__ == "__main__":
    common.run_on_trained(main)
