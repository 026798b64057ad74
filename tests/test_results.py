"""The results command end to end on the tiny variant: every stage, the tables from the files, and a resume."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _results(tmp_path):
    return subprocess.run([sys.executable, "-m", "sdfjax.launch.results", "--config=configs/chairs256.py:tiny",
                           f"--config.data.root={tmp_path / 'data'}", f"--workdir={tmp_path / 'run'}",
                           f"--readme={tmp_path / 'README.md'}", f"--pictures={tmp_path / 'pictures'}",
                           f"--pretrained={tmp_path / 'shipped'}", f"--headline={tmp_path / 'HEADLINE.md'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, env=dict(os.environ, PYTHONPATH=ROOT))


@pytest.mark.slow
def test_the_results_command_runs_every_stage_writes_the_tables_and_resumes(tmp_path):
    (tmp_path / "README.md").write_text("# Title\n<!-- results:begin -->\nold\n<!-- results:end -->\nrest\n")
    (tmp_path / "HEADLINE.md").write_text("# Results\n<!-- headline:begin -->\n<!-- headline:end -->\n")
    first = _results(tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    out = tmp_path / "run" / "results"
    timings = [json.loads(line) for line in (out / "timings.jsonl").read_text().splitlines()]
    assert [t["stage"] for t in timings] == ["generate", "preprocess", "train", "fit_train", "fit_val", "fit_test",
                                             "train_siamese", "train_encoder", "retrieval", "sketch2shape",
                                             "sketch2shape_hand", "sketch2shape_views"]
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# Title\n<!-- results:begin -->\n") and readme.endswith("<!-- results:end -->\nrest\n")
    assert "old" not in readme and readme.count("| test (fitted) | 2 |") == 1 and "Recall@1" in readme
    # both styles, and the chairs as objects drawn from all the views (tiny: one view, so the same sketches)
    assert readme.count("| sketch2shape | 2 |") == 3 and readme.count("| encoder | 2 |") == 3
    assert "each chair one object drawn from all the views" in readme
    assert "| retrieval |" in readme and "| sdf_fit |" in readme
    # the same tables, the picture links made relative to the README's folder
    assert (out / "results.md").read_text().replace(str(tmp_path / "pictures"), "pictures") in readme
    assert "![reconstruction.png](pictures/reconstruction.png)" in readme
    assert (tmp_path / "pictures" / "reconstruction.png").stat().st_size > 0
    assert (tmp_path / "pictures" / "sketch_to_shape.png").stat().st_size > 0
    assert (tmp_path / "data" / "preview.png").is_file() and (tmp_path / "data" / "preprocess_stats.json").is_file()

    from sdfjax import shipped

    manifest = shipped.verify(str(tmp_path / "shipped"))  # the inference copy, with checksums
    assert manifest["config"] == "chairs256:tiny" and set(manifest["source_steps"]) == set(shipped.PARTS)
    assert "config.json" in manifest["files"] and "retrieval/index.json" in manifest["files"]
    headline = (tmp_path / "HEADLINE.md").read_text()
    assert "| DeepSDF reconstruction from SDF samples | | | | " in headline
    assert headline.count("| sketch to shape, dataset sketches | ") == 1
    assert not list(tmp_path.glob(".shipped.partial*"))

    again = _results(tmp_path)  # everything done: only the report and the (unchanged) export run again
    assert again.returncode == 0, again.stderr[-4000:]
    assert shipped.verify(str(tmp_path / "shipped")) == manifest
    assert again.stderr.count("done before with these settings, skipped") == 12
    assert len((out / "timings.jsonl").read_text().splitlines()) == 12


def test_sketch_table_counts_refinements_that_beat_their_start_and_the_ratios(tmp_path):
    from sdfjax import report
    from sdfjax.evaluators import tables

    chamfers = {"sketch2shape": [1.0, 2.0, 6.0], "encoder": [2.0, 3.0, 5.0], "retrieval": [4.0, 4.0, 8.0],
                "sdf_fit": [0.5, 0.5, 1.0]}
    rows = [{"obj_id": f"s{i}", "method": m, "chamfer": c[i], "emd": 0.1} for m, c in chamfers.items()
            for i in range(3)]
    out = tmp_path / "results" / "sketch2shape"
    out.mkdir(parents=True)
    tables.write_metrics_csv(str(out / "metrics.csv"), rows, group_by="method")
    table = report.sketch_table(str(tmp_path))
    assert "| sketch2shape | 3 | 3.000 | 2.000 |" in table and "| retrieval | 3 | 5.333 | 4.000 |" in table
    assert "refinement better than its start (the encoder) on 2 of 3 sketches" in table
    assert "median Chamfer 0.50 x retrieval's" in table and "median Chamfer 4.00 x SDF fitting's" in table


def test_the_headline_gives_the_medians_of_each_method(tmp_path):
    from sdfjax import report
    from sdfjax.evaluators import tables

    chamfers = {"sketch2shape": [1.0, 2.0, 6.0], "encoder": [2.0, 3.0, 5.0], "retrieval": [4.0, 4.0, 8.0]}
    rows = [{"obj_id": f"s{i}", "method": m, "chamfer": c[i], "emd": 0.1} for m, c in chamfers.items()
            for i in range(3)]
    for run in ("sketch2shape_user", "fit_test"):
        (tmp_path / "results" / run).mkdir(parents=True)
    tables.write_metrics_csv(str(tmp_path / "results" / "sketch2shape_user" / "metrics.csv"), rows, group_by="method")
    tables.write_metrics_csv(str(tmp_path / "results" / "fit_test" / "metrics.csv"),
                             [{"obj_id": f"t{i}", "chamfer": c, "emd": 0.1, "fscore@0.01": 0.5, "fscore@0.02": 0.7,
                               "normal_consistency": 0.9} for i, c in enumerate([0.5, 0.7, 0.9, 3.0])])
    text = report.headline(str(tmp_path))
    assert "| DeepSDF reconstruction from SDF samples | | | | 0.800 |" in text
    assert ("| sketch to shape, drawings made the way people draw (tests/data/user_sketches) | 2.000 | 3.000 | 4.000 "
            "| n/a |") in text
    assert "dataset sketches" not in text  # a set that was not run has no row


def test_a_stage_run_again_counts_once_with_its_last_time():
    from sdfjax import report
    jsonl = "\n".join(json.dumps(r) for r in ({"stage": "train", "seconds": 5.0}, {"stage": "sketch2shape", "seconds": 3.0},
                                              {"stage": "report", "seconds": 1.0}, {"stage": "sketch2shape", "seconds": 4.0}))
    assert report.latest_timings(jsonl + "\n\n") == [{"stage": "train", "seconds": 5.0},
                                                     {"stage": "sketch2shape", "seconds": 4.0},
                                                     {"stage": "report", "seconds": 1.0}]


def test_a_stage_runs_again_when_its_command_or_config_changed():
    from configs import chairs256
    from sdfjax.launch import results

    config = chairs256.get_config("tiny")
    fit = [sys.executable, "-m", "sdfjax.launch.fit", "--config.fit.split=val"]
    record = results.stage_record(fit, results.config_digest(config))
    assert results.rerun_reason(json.dumps({**record, "seconds": 3.0}), record) is None
    other = results.stage_record(fit[:-1] + ["--config.fit.split=test"], results.config_digest(config))
    reason = results.rerun_reason(json.dumps(record), other)
    assert "command changed" in reason and "--config.fit.split=test" in reason
    changed = config.copy_and_resolve_references()
    changed.fit.lr = 1.0
    changed_record = results.stage_record(fit, results.config_digest(changed))
    assert results.rerun_reason(json.dumps(record), changed_record) == "the config changed"
    assert results.rerun_reason("12.5\n", record) == "its marker records no settings"


@pytest.mark.slow
def test_chairs_and_tables_in_one_model_are_fitted_and_reported_per_category(tmp_path):
    result = subprocess.run([sys.executable, "-m", "sdfjax.launch.results", "--config=configs/mixed.py:tiny",
                             f"--config.data.root={tmp_path / 'data'}", f"--workdir={tmp_path / 'run'}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-4000:]
    out = tmp_path / "run" / "results"
    stages = [json.loads(line)["stage"] for line in (out / "timings.jsonl").read_text().splitlines()]
    assert stages == ["generate", "preprocess", "train", "fit_train", "fit_val", "fit_test"]  # DeepSDF alone
    import csv

    with open(out / "fit_test" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["obj_id"], r["category"]) for r in rows] == [
        ("chair_000_0003", "chair"), ("table_000_0003", "table"),
        ("mean_metric", "chair"), ("mean_metric", "table"), ("mean_metric", "all")]
    assert float(rows[2]["chamfer"]) == pytest.approx(float(rows[0]["chamfer"]))
    assert float(rows[4]["chamfer"]) == pytest.approx((float(rows[0]["chamfer"]) + float(rows[1]["chamfer"])) / 2,
                                                      rel=1e-5)  # 6 significant digits in the file
    report = (out / "results.md").read_text()
    assert "configs/mixed.py" in report
    for line in ("| test (fitted) | 2 |", "| test (fitted), chair | 1 |", "| test (fitted), table | 1 |",
                 "| train (trained latents), table | 1 |"):
        assert line in report, report
    assert not (tmp_path / "data" / "shapes" / "chair_000_0000" / "views.json").exists()  # never rendered


def test_the_category_comparison_divides_each_categorys_median_by_its_own_models(tmp_path):
    from sdfjax import report

    def metrics(run, rows):
        folder = tmp_path / run / "results" / "fit_test"
        folder.mkdir(parents=True)
        lines = ["obj_id,category,chamfer,emd,fscore@0.01,fscore@0.02,normal_consistency"] + [
            f"{o},{c},{v},0,0,0,0" for o, c, v in rows] + ["mean_metric,all,9,0,0,0,0"]
        (folder / "metrics.csv").write_text("\n".join(lines) + "\n")

    metrics("mixed", [("chair_0", "chair", 1.0), ("chair_1", "chair", 3.0), ("chair_2", "chair", 2.0),
                      ("table_0", "table", 8.0)])
    metrics("chairs", [("chair_0", "", 1.0), ("chair_1", "", 1.5)])
    metrics("tables", [("table_0", "", 4.0)])
    table = report.category_comparison(str(tmp_path / "mixed"), [str(tmp_path / "chairs"), str(tmp_path / "tables")])
    assert "| chair | 2.000 | 1.250 | 1.60 |" in table and "| table | 8.000 | 4.000 | 2.00 |" in table
