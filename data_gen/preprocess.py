r"""Preprocesses a dataset folder into DeepSDF training and evaluation data (sdfjax.data.pipeline).

    python -m data_gen.preprocess --config=configs/chair16.py:cpu
    python -m data_gen.preprocess --config=configs/chair16.py --skip=surface,tfds --overwrite
    python -m data_gen.preprocess --config=configs/chair16.py:cpu --only=render,tfds   # new views
    python -m data_gen.preprocess --config=configs/chair16.py:cpu --beam_runner=DirectRunner
    python -m data_gen.preprocess --config=... --config.data.root=/shared/chairs --beam_runner=FlinkRunner \
        --beam_options="--flink_master=host:8081 --environment_type=LOOPBACK"

Stages per shape: normalize, sdf, surface, render; then `tfds` packs every finished
shape. A finished stage is skipped unless --overwrite; `render` also runs again for a shape
whose views.json records another view set than config.render's. Failures are listed in
`<root>/failures.csv`; the run exits non-zero only when every shape it tried failed.

With --beam_runner the shape stages run as an Apache Beam pipeline on that runner
(sdfjax.data.beam_pipeline; `--beam_options` are its pipeline options, as one string), and
write the same files; the DirectRunner uses config.data.num_workers processes.
docs/data.md shows a cluster run.
"""

from __future__ import annotations

import os
import shlex
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
    runner = None
    if flags.FLAGS.beam_runner:
        # Imported here: Apache Beam takes seconds to import and logs warnings about cloud clients it lacks.
        from sdfjax.data import beam_pipeline

        args = (beam_pipeline.direct_runner_args(config.data.num_workers) if flags.FLAGS.beam_runner == "DirectRunner"
                else [f"--runner={flags.FLAGS.beam_runner}"]) + shlex.split(flags.FLAGS.beam_options)
        runner = beam_pipeline.BeamRunner(tuple(args))
    elif flags.FLAGS.beam_options:
        sys.exit("error: --beam_options needs --beam_runner")
    try:
        results = pipeline.preprocess_dataset(config, stages, flags.FLAGS.overwrite, flags.FLAGS.obj_ids,
                                              runner=runner)
    except DataError as e:
        sys.exit(f"error: {e}")
    counts = {k: sum(r.status == k for r in results) for k in ("done", "skipped", "failed")}
    where = f" on Beam's {flags.FLAGS.beam_runner}" if flags.FLAGS.beam_runner else ""
    print(f"preprocessed {config.data.root}{where}: {counts['done']} done, {counts['skipped']} already done, "
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
    flags.DEFINE_string("beam_runner", "", "Run the shape stages on this Apache Beam runner (DirectRunner, "
                        "DataflowRunner, FlinkRunner, SparkRunner, ...); default: local processes.")
    flags.DEFINE_string("beam_options", "", "The Beam pipeline options, one string, e.g. "
                        "'--project=p --region=r --temp_location=gs://b/tmp'.")
    common.run(main)
