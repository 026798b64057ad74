r"""Preprocessing throughput: Apache Beam's DirectRunner against the local process pool; last line is one JSON object.

    python -m benchmarks.preprocess_beam                    # 24 procedural chairs, 2 workers each side
    python -m benchmarks.preprocess_beam --shapes=48 --stages=normalize,sdf,surface,render

The same shapes are preprocessed twice in one run, into two fresh dataset folders: by the
local pool (sdfjax.data.pipeline) and by Beam (sdfjax.data.beam_pipeline, DirectRunner in
multi-processing mode), each with `--workers` processes and the configs/chairs256.py:cpu
data settings. Reported: shapes per minute of each side, wall clock from start to the last
shape's files (start-up included), their ratio, and whether every file of the two folders
(per-shape files and the packed TFDS dataset) is byte-identical.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

from absl import app, flags

from benchmarks import machine
from configs import chairs256
from data_gen import synthetic
from sdfjax.data import beam_pipeline, pipeline

_SHAPES = flags.DEFINE_integer("shapes", 24, "Procedural chairs to preprocess on each side.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Worker processes on each side.")
_STAGES = flags.DEFINE_list("stages", ["normalize", "sdf", "surface", "render", "tfds"], "Stages to run.")


def _tree(root: str) -> dict[str, bytes]:
    out = {}
    for directory, _, files in os.walk(root):
        for name in files:
            if name != "preprocess_stats.json":
                with open(os.path.join(directory, name), "rb") as f:
                    out[os.path.relpath(os.path.join(directory, name), root)] = f.read().replace(root.encode(), b"")
    return out


def _timed(config, runner) -> float:
    start = time.perf_counter()
    results = pipeline.preprocess_dataset(config, _STAGES.value, progress=False, runner=runner)
    seconds = time.perf_counter() - start
    assert all(r.status == "done" for r in results), [r for r in results if r.status != "done"]
    return seconds


def main(argv):
    del argv
    n = _SHAPES.value
    with tempfile.TemporaryDirectory() as tmp:
        roots = {side: os.path.join(tmp, side) for side in ("pool", "beam")}
        configs = {}
        for side, root in roots.items():
            synthetic.write_dataset(root, "chair", num_train=n - 2, num_val=1, num_test=1)
            configs[side] = chairs256.get_config("cpu")
            configs[side].data.root = root
            configs[side].data.num_workers = _WORKERS.value
        beam_args = beam_pipeline.direct_runner_args(_WORKERS.value)
        seconds = {"pool": _timed(configs["pool"], None),
                   "beam": _timed(configs["beam"], beam_pipeline.BeamRunner(tuple(beam_args)))}
        pool_files, beam_files = _tree(roots["pool"]), _tree(roots["beam"])
        identical = sorted(pool_files) == sorted(beam_files) and all(pool_files[p] == beam_files[p] for p in pool_files)
    per_minute = {side: round(60 * n / s, 2) for side, s in seconds.items()}
    print(f"{n} shapes, stages {','.join(_STAGES.value)}: pool {seconds['pool']:.1f} s, beam {seconds['beam']:.1f} s")
    print(json.dumps({"benchmark": "preprocess_beam", "machine": machine.describe(), "shapes": n,
                      "workers": _WORKERS.value, "stages": _STAGES.value,
                      "pool_shapes_per_minute": per_minute["pool"], "beam_shapes_per_minute": per_minute["beam"],
                      "beam_over_pool": round(seconds["pool"] / seconds["beam"], 3),
                      "files": len(pool_files), "byte_identical": identical}))


if __name__ == "__main__":
    app.run(main)
