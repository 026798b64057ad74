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

from sdfjax import config_files, errors, shipped
from sdfjax import trained as trained_lib
from sdfjax.launch import common
from sdfjax.sketch2shape import retrieval


def retrieval_index(config, source: str | None):
    """`extras` for sdfjax.shipped: the export's retrieval/ index, the training views embedded by its own Siamese
    encoder (run `source`'s saved index, else the dataset's; `source` None: the dataset's); left as it is, with a
    warning, when there is none."""
    def write(folder: str) -> None:
        model, params, _ = trained_lib.load_siamese(folder)
        if source is None:
            try:
                index = retrieval.dataset_train_index(config, model, params)
            except errors.DataError:
                index = None
        else:
            index = retrieval.train_index(config, source, model, params)
        if index is None:
            print(f"warning: {config.data.root} has no dataset: the export has no retrieval index", file=sys.stderr)
            return
        retrieval.save_index(index, folder)

    return write


def main(argv):
    del argv
    f = flags.FLAGS
    common.quiet_logging()
    spec = config_files.display(common.config_spec(sys.argv) or "")
    with common.exit_on():
        if os.path.realpath(f.workdir) == os.path.realpath(f.out) and os.path.isfile(
                os.path.join(f.out, shipped.MANIFEST)):
            manifest = shipped.refresh(f.out, f.config, spec, retrieval_index(f.config, None))
        else:
            manifest = shipped.export(f.workdir, f.out, f.config, spec, extras=retrieval_index(f.config, f.workdir))
    print(f"{f.out}: {len(manifest['files'])} files, {manifest['bytes'] / 1e6:.1f} MB, "
          f"steps {manifest['source_steps']}, config {manifest['config']}")


if __name__ == "__main__":
    flags.DEFINE_string("out", None, "The folder to write (replaced only when its source steps differ).")
    flags.mark_flags_as_required(["out"])
    common.run_on_trained(main, "The trained run to export (DeepSDF, Siamese and encoder checkpoints).")
