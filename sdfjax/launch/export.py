r"""Writes a run's inference weights as a shippable model folder (`make results` ends with it).

    python -m sdfjax.launch.export --config=chairs256:cpu --workdir=runs/chairs256_cpu \
        --out=pretrained/chairs256_cpu
    # an export onto itself: its config.json, retrieval index and manifest written again, weights untouched
    python -m sdfjax.launch.export --config=chairs256:cpu --workdir=pretrained/chairs256_cpu \
        --out=pretrained/chairs256_cpu

The folder holds the decoder, latents, Siamese and sketch encoders without optimiser
state, config.json, the training views' retrieval index, and MANIFEST.json (config,
command, source steps, SHA-256 of every file); it loads like a run:
`--workdir=pretrained/chairs256_cpu` works wherever a trained run is asked for.
"""

import os
import sys

from absl import flags

from sdfjax import config_files, shipped
from sdfjax.launch import common


def main(argv):
    del argv
    f = flags.FLAGS
    common.quiet_logging()
    spec = config_files.display(common.config_spec(sys.argv) or "")
    with common.exit_on():
        if os.path.realpath(f.workdir) == os.path.realpath(f.out) and os.path.isfile(
                os.path.join(f.out, shipped.MANIFEST)):
            manifest = shipped.refresh(f.out, f.config, spec)
        else:
            manifest = shipped.export(f.workdir, f.out, f.config, spec)
    print(f"{f.out}: {len(manifest['files'])} files, {manifest['bytes'] / 1e6:.1f} MB, "
          f"steps {manifest['source_steps']}, config {manifest['config']}")


if __name__ == "__main__":
    flags.DEFINE_string("out", None, "The folder to write (replaced only when its source steps differ).")
    flags.mark_flags_as_required(["out"])
    common.run_on_trained(main, "The trained run to export (DeepSDF, Siamese and encoder checkpoints).")
