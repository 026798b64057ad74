"""The per-shape preprocessing stages as an Apache Beam pipeline, for any Beam runner.

    runner = BeamRunner(("--runner=DataflowRunner", "--project=...", ...))
    results = pipeline.preprocess_dataset(config, runner=runner)   # or run_shapes(root, obj_ids, ...)

Each shape is one element: `sdfjax.data.pipeline.preprocess_shape` runs on a Beam worker
and writes the shape's files into `<root>/shapes/<obj_id>/` itself, so `root` must be a
folder every worker can write (a shared file system on a cluster). The same function, on
the same shape, with the same seeds per (shape, stage) as the local process pool, writes
the same bytes. The workers' ShapeResults come back through text files under
`<root>/.beam/` (JSON lines, read and then deleted by the launching process), which writes
failures.csv and packs the TFDS dataset as after a local run.

A shape whose input is bad fails alone (preprocess_shape never raises for it). A worker
that dies is the runner's business: Dataflow, Flink and Spark retry its bundle; the
DirectRunner fails the run, and a rerun skips every shape already done.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import json
import logging
import os
import shutil
from collections.abc import Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from sdfjax.data import pipeline as pipeline_lib

RESULTS_DIR = ".beam"


def direct_runner_args(workers: int) -> list[str]:
    """Beam options that run the DirectRunner's local engine on `workers` processes.

    The engine (FnApiRunner) is named directly: Beam's DirectRunner would first try its Prism
    runner, which downloads a binary at run time. Its default mode, threads in one process,
    would hold the shapes to one core."""
    return ["--runner=FnApiRunner", f"--direct_num_workers={max(1, workers)}",
            "--direct_running_mode=multi_processing"]


@contextlib.contextmanager
def _quiet_beam():
    """Beam's own logs at ERROR while the pipeline runs: its workers log each start-up at INFO and WARNING."""
    logger = logging.getLogger("apache_beam")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _result_json(result: pipeline_lib.ShapeResult) -> str:
    return json.dumps(dataclasses.asdict(result), sort_keys=True)


def _result_from_json(line: str) -> pipeline_lib.ShapeResult:
    d = json.loads(line)
    return pipeline_lib.ShapeResult(d["obj_id"], d["status"], tuple(d["stages"]), d["reason"])


def build(root_pipeline: beam.Pipeline, root: str, obj_ids: Sequence[str], settings: pipeline_lib.Settings,
          stages: Sequence[str], overwrite: bool, results_prefix: str) -> None:
    """Adds the per-shape stages of `obj_ids` to a Beam pipeline, writing results under `results_prefix`."""
    _ = (root_pipeline
         | "shapes" >> beam.Create(list(obj_ids))
         | "spread" >> beam.Reshuffle()  # one shape per element, spread over the workers
         | "preprocess" >> beam.Map(functools.partial(pipeline_lib.preprocess_shape, root, settings=settings,
                                                       stages=tuple(stages), overwrite=overwrite))
         | "as json" >> beam.Map(_result_json)
         | "results" >> beam.io.WriteToText(results_prefix, file_name_suffix=".jsonl"))


def run_shapes(root: str, obj_ids: Sequence[str], settings: pipeline_lib.Settings, stages: Sequence[str],
               overwrite: bool, beam_args: Sequence[str]) -> list[pipeline_lib.ShapeResult]:
    """Runs the per-shape stages of `obj_ids` on Beam (`beam_args`: its pipeline options, runner included) and
    returns one ShapeResult per shape, in the order of `obj_ids`."""
    results_dir = os.path.join(root, RESULTS_DIR)
    shutil.rmtree(results_dir, ignore_errors=True)  # left by an interrupted run
    with _quiet_beam(), beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
        build(p, root, obj_ids, settings, stages, overwrite, os.path.join(results_dir, "results"))
    found = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "results*.jsonl"))):
        with open(path) as f:
            for line in f:
                if line.strip():
                    result = _result_from_json(line)
                    found[result.obj_id] = result
    shutil.rmtree(results_dir, ignore_errors=True)
    missing = [pipeline_lib.ShapeResult(o, "failed", tuple(stages), "the Beam pipeline returned no result for it")
               for o in obj_ids if o not in found]
    return [found[o] for o in obj_ids if o in found] + missing


@dataclasses.dataclass(frozen=True)
class BeamRunner:
    """`sdfjax.data.pipeline.preprocess_dataset`'s `runner` that runs the shapes on Beam with `beam_args`."""

    beam_args: tuple[str, ...]

    @property
    def engine(self) -> str:
        """What preprocess_stats.json records: "Apache Beam" and its runner."""
        named = [a.split("=", 1)[1] for a in self.beam_args if a.startswith("--runner=")]
        return f"Apache Beam {named[-1] if named else 'DirectRunner'}"

    def __call__(self, root: str, obj_ids: Sequence[str], settings: pipeline_lib.Settings, stages: Sequence[str],
                 overwrite: bool) -> list[pipeline_lib.ShapeResult]:
        return run_shapes(root, obj_ids, settings, stages, overwrite, self.beam_args)
