r"""Preprocesses a dataset folder into DeepSDF training and evaluation data (sdfjax.data.pipeline).

    python -m data_gen.preprocess --config=configs/chair16.py:cpu
    python -m data_gen.preprocess --config=configs/chair16.py --skip=surface,tfds --overwrite
    python -m data_gen.preprocess --config=configs/chair16.py:cpu --only=render,tfds   # new views

Stages per shape: normalize, sdf, surface, render; then `tfds` packs every finished
shape. A finished stage is skipped unless --overwrite; `render` also runs again for a shape
whose views.json records another view set than config.render's. Failures are listed in
`<root>/failures.csv`; the run exits non-zero only when every shape it tried failed.
"""

from __future__ import annotations

import os
import sys

from absl import flags, logging

from sdfjax.data import pipeline
from sdfjax.errors import DataError
from sdfjax.launch import common


def main(argv):
    del argv
    config, skip, only = flags.FLAGS.config, flags.FLAGS.skip, flags.FLAGS.only
    for flag, named in (("skip", skip), ("only", only)):
        unknown = [s for s in named if s not in pipeline.ALL_STAGES]
        if unknown:
            sys.exit(f"error: --{flag}: unknown stage(s) {unknown}; expected some of {list(pipeline.ALL_STAGES)}")
    stages = [s for s in pipeline.ALL_STAGES if s not in skip and (not only or s in only)]
    try:
        results = pipeline.preprocess_dataset(config, stages, flags.FLAGS.overwrite, flags.FLAGS.obj_ids)
    except DataError as e:
        sys.exit(f"error: {e}")
    counts = {k: sum(r.status == k for r in results) for k in ("done", "skipped", "failed")}
    print(f"preprocessed {config.data.root}: {counts['done']} done, {counts['skipped']} already done, "
          f"{counts['failed']} failed")
    failed = [r for r in results if r.status == "failed"]
    for r in failed:
        print(f"  failed {r.obj_id}: {r.reason}", file=sys.stderr)
    if failed:
        print(f"  (listed in {os.path.join(config.data.root, 'failures.csv')})", file=sys.stderr)
        logging.warning("%d of %d shapes failed", len(failed), len(results))
    if results and len(failed) == len(results):
        sys.exit(1)


if __name__ == "__main__":  # flags live here so that importing this module defines none
    common.define_config_flag()
    flags.DEFINE_bool("overwrite", False, "Recompute stages whose outputs exist.")
    flags.DEFINE_list("skip", [], f"Stages to skip, of {list(pipeline.ALL_STAGES)}.")
    flags.DEFINE_list("only", [], "Only these stages (default: all but --skip).")
    flags.DEFINE_list("obj_ids", [], "Only these shapes (default: all in metainfo.csv).")
    common.run(main)
