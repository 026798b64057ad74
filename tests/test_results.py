"""The results command end to end on the tiny variant: every stage, the tables from the files, and a resume."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _results(tmp_path):
    return subprocess.run([sys.executable, "-m", "sdfjax.launch.results", "--config=configs/chairs256.py:tiny",
                           f"--config.data.root={tmp_path / 'data'}", f"--workdir={tmp_path / 'run'}",
                           f"--readme={tmp_path / 'README.md'}", f"--pictures={tmp_path / 'pictures'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env=dict(os.environ, PYTHONPATH=ROOT))


def test_the_results_command_runs_every_stage_writes_the_tables_and_resumes(tmp_path):
    (tmp_path / "README.md").write_text("# Title\n<!-- results:begin -->\nold\n<!-- results:end -->\nrest\n")
    first = _results(tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    out = tmp_path / "run" / "results"
    timings = [json.loads(line) for line in (out / "timings.jsonl").read_text().splitlines()]
    assert [t["stage"] for t in timings] == ["generate", "preprocess", "train", "fit_train", "fit_val", "fit_test",
                                             "train_siamese", "retrieval", "sketch2shape"]
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# Title\n<!-- results:begin -->\n") and readme.endswith("<!-- results:end -->\nrest\n")
    assert "old" not in readme and readme.count("| test (fitted) | 2 |") == 1 and "Recall@1" in readme
    assert "| sketch2shape |" in readme and "| retrieval |" in readme and "| sdf_fit |" in readme
    assert (out / "results.md").read_text() in readme
    assert (tmp_path / "pictures" / "reconstruction.png").stat().st_size > 0
    assert (tmp_path / "pictures" / "sketch_to_shape.png").stat().st_size > 0
    assert (tmp_path / "data" / "preview.png").is_file() and (tmp_path / "data" / "preprocess_stats.json").is_file()

    again = _results(tmp_path)  # everything done: only the report runs again
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stderr.count("done before, skipped") == 9
    assert len((out / "timings.jsonl").read_text().splitlines()) == 9
