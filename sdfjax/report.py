"""The results tables and pictures of a run, written from the files the results command produced.

    markdown = write_report(config, workdir)        # <workdir>/results/results.md and pictures
    update_readme("README.md", markdown)            # between <!-- results:begin --> and <!-- results:end -->

Nothing is typed by hand: every number comes from a file under `config.data.root` or
`<workdir>` (layout of `make results`):

    <data>/preprocess_stats.json          preprocessing throughput and peak memory
    <workdir>/metrics.jsonl                DeepSDF training (final loss, flatness of the last 10%)
    <workdir>/results/fit_{train,val,test}/metrics.csv     reconstruction (train: trained latents)
    <workdir>/results/retrieval/retrieval.json              Siamese retrieval, test sketches
    <workdir>/encoder/metrics.jsonl        the sketch-to-latent encoder's training
    <workdir>/results/sketch2shape/metrics.csv              sketch to shape beside its baselines
    <workdir>/results/sketch2shape_hand/metrics.csv         the same on hand-drawn-style sketches
    <workdir>/results/sketch2shape_views/metrics.csv        the same, each chair one object drawn from all views
    <workdir>/results/sketch2shape_user/metrics.csv         the same on user-style PNGs
    <workdir>/results/timings.jsonl        seconds per stage of the results command
"""

from __future__ import annotations

import csv
import json
import os
import re
import statistics

import numpy as np

from sdfjax import storage, trained as trained_lib
from sdfjax.evaluators import reconstruction
from sdfjax.render import pictures
from sdfjax.train import logs

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def results_dir(workdir: str) -> str:
    return storage.join(workdir, "results")


def _rows(path: str) -> list[dict]:
    if not storage.exists(path):
        return []
    return list(csv.DictReader(storage.read_text(path).splitlines()))


def _shape_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["obj_id"] != "mean_metric"]


def flatness(records: list[dict], key: str = "loss") -> float | None:
    """Relative fall of the loss over the last 10% of epochs: (mean at 90-92%) / (mean of the last 2%) - 1."""
    if len(records) < 50:
        return None
    values = np.asarray([r[key] for r in records], np.float64)
    n = len(values)
    early = values[int(0.9 * n):int(0.92 * n)].mean()
    late = values[int(0.98 * n):].mean()
    return float(early / late - 1.0)


def _fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def reconstruction_table(workdir: str) -> tuple[str, dict]:
    """Markdown rows of mean and median metrics per split (and per category, in a set of several), and the
    median Chamfer of each split (keys "test", and "test chair", ... per category)."""
    lines = ["| split | shapes | Chamfer x1000 mean | median | EMD | F@0.01 | F@0.02 | NC | empty meshes |",
             "|---|---|---|---|---|---|---|---|---|"]
    medians = {}
    for split, label in (("train", "train (trained latents)"), ("val", "val (fitted)"), ("test", "test (fitted)")):
        shapes = _shape_rows(_rows(storage.join(results_dir(workdir), f"fit_{split}", "metrics.csv")))
        categories = sorted({r.get("category") or "" for r in shapes} - {""})
        groups = [(split, label, shapes)] + [(f"{split} {c}", f"{label}, {c}", [r for r in shapes
                                                                              if r.get("category") == c])
                                             for c in categories]
        for key, name, members in groups if shapes else ():
            medians[key] = _median_of_rows(members)
            lines.append(_reconstruction_row(name, members, medians[key]))
    return "\n".join(lines), medians


def category_comparison(workdir: str, single_runs) -> str:
    """Markdown: per category, the test median Chamfer of this run (several categories) and of each run of one
    category in `single_runs` (its test shapes all of that category), and their ratio."""
    _, mixed = reconstruction_table(workdir)
    lines = ["| category | one model for all | a model per category | ratio |", "|---|---|---|---|"]
    for single in single_runs:
        shapes = _shape_rows(_rows(storage.join(results_dir(single), "fit_test", "metrics.csv")))
        category = shapes[0]["obj_id"].split("_")[0] if shapes else "?"
        alone, together = _median_of_rows(shapes) if shapes else None, mixed.get(f"test {category}")
        ratio = together / alone if together is not None and alone else None
        lines.append(f"| {category} | {_fmt(together)} | {_fmt(alone)} | {_fmt(ratio, 2)} |")
    return "\n".join(lines)


def _median_of_rows(shapes: list[dict]) -> float | None:
    finite = [float(r["chamfer"]) for r in shapes if np.isfinite(float(r["chamfer"]))]
    return statistics.median(finite) if finite else None


def _reconstruction_row(label: str, shapes: list[dict], median: float | None) -> str:
    """One markdown row of reconstruction_table: means of the shapes' metrics, their median Chamfer, empties."""
    def mean(key):
        values = [float(r[key]) for r in shapes if np.isfinite(float(r[key]))]
        return float(np.mean(values)) if values else None

    empty = sum(not np.isfinite(float(r["chamfer"])) for r in shapes)
    return (f"| {label} | {len(shapes)} | {_fmt(mean('chamfer'))} | {_fmt(median)} | {_fmt(mean('emd'))} | "
            f"{_fmt(mean('fscore@0.01'))} | {_fmt(mean('fscore@0.02'))} | {_fmt(mean('normal_consistency'))} | "
            f"{empty} |")


SKETCH_RUNS = (("sketch2shape", "dataset sketches"), ("sketch2shape_hand", "hand-drawn style (each stroke redrawn)"),
               ("sketch2shape_views", "dataset sketches, each chair one object drawn from all the views (one latent)"),
               ("sketch2shape_user", "drawings made the way people draw, stroke by stroke from views above "
                                     "(tests/data/user_sketches)"))


def sketch_table(workdir: str, run: str = "sketch2shape") -> str:
    """Markdown: per method the mean and median Chamfer and the mean EMD, F-score and normal consistency of
    the sketches of `run`, then how often refinement beat its start and its median against the baselines'."""
    rows = _rows(storage.join(results_dir(workdir), run, "metrics.csv"))
    if not rows:
        return "(no sketch-to-shape results)"
    per_sketch = _shape_rows(rows)
    lines = ["| method | sketches | Chamfer x1000 mean | median | EMD | F@0.01 | NC |", "|---|---|---|---|---|---|---|"]
    medians, by_method = {}, {}
    for r in (r for r in rows if r["obj_id"] == "mean_metric"):
        mine = [x for x in per_sketch if x["method"] == r["method"]]
        medians[r["method"]] = _median_of_rows(mine)
        by_method[r["method"]] = {x["obj_id"]: float(x["chamfer"]) for x in mine}
        lines.append(f"| {r['method']} | {len(mine)} | {_fmt(float(r['chamfer']))} | {_fmt(medians[r['method']])} | "
                     f"{_fmt(float(r['emd']))} | {_fmt(float(r['fscore@0.01']))} | "
                     f"{_fmt(float(r['normal_consistency']))} |")
    notes = []
    refined, start = by_method.get("sketch2shape", {}), by_method.get("encoder", {})
    pairs = [(refined[k], start[k]) for k in refined if k in start and np.isfinite(refined[k]) and np.isfinite(start[k])]
    if pairs:
        notes.append(f"refinement better than its start (the encoder) on {sum(a < b for a, b in pairs)} of "
                     f"{len(pairs)} sketches")
    ours = medians.get("sketch2shape")
    for method, label in (("retrieval", "retrieval's"), ("sdf_fit", "SDF fitting's")):
        if ours is not None and medians.get(method):
            notes.append(f"median Chamfer {ours / medians[method]:.2f} x {label}")
    return "\n".join(lines) + ("\n\n" + "; ".join(notes) + "." if notes else "")


def _median_chamfer(workdir: str, run: str, method: str) -> float | None:
    return _median_of_rows([r for r in _shape_rows(_rows(storage.join(results_dir(workdir), run, "metrics.csv")))
                            if r["method"] == method])


def sketch_picture(workdir: str, count: int) -> np.ndarray | None:
    """The first sketch-to-shape pictures (sketch | start | end | three other views), stacked."""
    folder = storage.join(results_dir(workdir), "sketch2shape", "pictures")
    if not storage.exists(folder):
        return None
    names = sorted(os.listdir(folder))[:count]
    images = [storage.read_png(storage.join(folder, n)) for n in names]
    return pictures.picture_grid([[im] for im in images]) if images else None


def latest_timings(jsonl: str) -> list[dict]:
    """One {"stage", "seconds"} per stage of timings.jsonl, in first-run order, each with its last time:
    a stage run again (its .done marker removed) replaces its earlier row instead of adding one."""
    latest = {}
    for line in jsonl.splitlines():
        if line.strip():
            record = json.loads(line)
            latest[record["stage"]] = record
    return list(latest.values())


def write_report(config, workdir: str, picture_dir: str | None = None) -> str:
    """Writes `<workdir>/results/results.md` (and the pictures, into `picture_dir` if given); returns the markdown."""
    out = results_dir(workdir)
    picture_dir = picture_dir or out
    stats_path = storage.join(config.data.root, "preprocess_stats.json")
    stats = json.loads(storage.read_text(stats_path)) if storage.exists(stats_path) else {}
    records = logs.read_metrics(workdir)
    timings_path = storage.join(out, "timings.jsonl")
    timings = latest_timings(storage.read_text(timings_path)) if storage.exists(timings_path) else []
    retrieval_path = storage.join(out, "retrieval", "retrieval.json")
    retrieval = json.loads(storage.read_text(retrieval_path)) if storage.exists(retrieval_path) else None
    table, medians = reconstruction_table(workdir)

    parts = [f"Config `{config.variant}` of `configs/{config.get('name', 'chairs256')}.py`, data `{config.data.root}`, "
             f"run `{workdir}`."]
    if stats:
        parts.append(f"Preprocessing: {stats['done']} shapes ({', '.join(stats['stages'])}) at "
                     f"{_fmt(stats['shapes_per_minute'], 1)} shapes/min with {stats['workers']} worker(s); peak memory "
                     f"{stats['peak_rss_mb_main']:.0f} MB (main process)"
                     + (f", {stats['peak_rss_mb_worker']:.0f} MB (largest worker)." if stats["workers"] > 1 else "."))
    if records:
        change = flatness(records)
        fall = ("(fewer than 50 epochs: no flatness figure)" if change is None else
                f"over the last 10% of epochs the loss fell by {100 * change:.2f}%")
        seconds = sum(r.get("seconds", 0.0) for r in records)
        parts.append(f"DeepSDF training: {len(records)} epochs in {seconds / 60:.1f} minutes (sum of the epochs' "
                     f"seconds in metrics.jsonl), final loss {records[-1]['loss']:.5f}; {fall}.")
    parts += ["", "Reconstruction (Chamfer x1000 in the original frame, DeepSDF's definition):", "", table]
    if medians.get("test") is not None and medians.get("train"):
        parts.append(f"\nTest median / train median: {medians['test'] / medians['train']:.2f}.")
    if retrieval:
        parts += ["", f"Retrieval ({retrieval['queries']} test sketches against {retrieval['index_shapes']} shapes x "
                  f"{retrieval['views_per_shape']} views of `{retrieval['index_split']}`): Recall@1 "
                  f"{retrieval['recall_at_1_object']:.3f} (chance {retrieval['chance_recall_at_1']:.3f}), Recall@5 "
                  f"{retrieval['recall_at_5_object']:.3f} (chance {retrieval['chance_recall_at_5']:.3f})."]
    encoder_records = logs.read_metrics(trained_lib.encoder_dir(workdir)) if storage.exists(
        trained_lib.encoder_dir(workdir)) else []
    if encoder_records:
        last = encoder_records[-1]
        line = (f"Sketch-to-latent encoder: {last['step']} steps, final latent MSE {last['latent_mse']:.4f}, "
                f"SDF L1 {last['sdf_l1']:.4f} (augmented train sketches).")
        val_path = trained_lib.encoder_val_scores_path(workdir)
        val = json.loads(storage.read_text(val_path)) if storage.exists(val_path) else {}
        if "val_score_x1000" in val:
            line += (f" On the {val['val_shapes']} val shapes (never trained on; {len(val['val_views'])} views each), "
                     f"the fitting loss of its latents on each shape's own SDF samples (clamped L1 x1000, median; "
                     f"samples near the surface and away from it weighed equally): {val['val_score_x1000']:.2f} "
                     f"(near {val['val_near_x1000']:.2f}, away {val['val_far_x1000']:.2f}); the mean trained "
                     f"latent's: {val['val_mean_latent_score_x1000']:.2f}.")
        parts += ["", line]
    if config.results.get("single_runs"):
        parts += ["", "Each category in this one model against a model of that category alone, at the same budget "
                  "per shape (test shapes, median Chamfer x1000):", "", category_comparison(workdir,
                                                                                             config.results.single_runs)]
    views = ", ".join(str(v) for v in config.results.get("test_views", ()))
    for run, label in SKETCH_RUNS:
        if storage.exists(storage.join(out, run)):
            where = f"views {views}" if run != "sketch2shape_user" else "each at its own view"
            parts += ["", f"Sketch to shape, test shapes (no model saw them), {label}, {where}:", "",
                      sketch_table(workdir, run)]
    clean, hand = (_median_chamfer(workdir, run, "sketch2shape") for run, _ in SKETCH_RUNS[:2])
    if clean and hand:
        parts.append(f"\nHand-drawn style / dataset sketches, median Chamfer of sketch2shape: {hand / clean:.2f}.")
    fitted = reconstruction.reconstruction_picture(config, workdir, storage.join(out, "fit_test"),
                                                   config.results.picture_shapes)
    for name, picture in (("reconstruction.png", fitted),
                          ("sketch_to_shape.png", sketch_picture(workdir, config.results.picture_shapes))):
        if picture is not None:
            storage.write_png(storage.join(picture_dir, name), picture)
            parts += ["", f"![{name}]({storage.join(picture_dir, name)})"]
    if timings:
        # A trainer resumed by a rerun times only what was left; its metrics.jsonl holds every period's seconds.
        trainer_dirs = {"train": workdir, "train_siamese": trained_lib.siamese_dir(workdir),
                        "train_encoder": trained_lib.encoder_dir(workdir)}
        parts += ["", "| stage | seconds (this command) | training seconds (metrics.jsonl) |", "|---|---|---|"]
        for t in timings:
            trained_seconds = ""
            if t["stage"] in trainer_dirs:
                trained_seconds = f"{sum(r.get('seconds', 0.0) for r in logs.read_metrics(trainer_dirs[t['stage']])):.1f}"
            parts.append(f"| {t['stage']} | {t['seconds']} | {trained_seconds} |")
        parts.append(f"| total | {sum(t['seconds'] for t in timings):.1f} | |")
    markdown = "\n".join(parts) + "\n"
    storage.atomic_write_text(storage.join(out, "results.md"), markdown)
    return markdown


HEADLINE_BEGIN, HEADLINE_END = "<!-- headline:begin -->", "<!-- headline:end -->"
HEADLINE_RUNS = (("sketch2shape", "sketch to shape, dataset sketches"),
                 ("sketch2shape_user", "sketch to shape, drawings made the way people draw (tests/data/user_sketches)"))


def headline(workdir: str) -> str:
    """A README's few lines: the test chairs' median Chamfer x1000 for DeepSDF fitting and, per sketch set, for
    the refined shape, the encoder's start and retrieval (the files `write_report` reads)."""
    lines = ["| test chairs (never trained on), median Chamfer x1000 | refined | encoder's start | retrieval | "
             "SDF fit |", "|---|---|---|---|---|"]
    _, medians = reconstruction_table(workdir)
    if medians.get("test") is not None:
        lines.append(f"| DeepSDF reconstruction from SDF samples | | | | {_fmt(medians['test'])} |")
    for run, label in HEADLINE_RUNS:
        if storage.exists(storage.join(results_dir(workdir), run, "metrics.csv")):
            values = [_fmt(_median_chamfer(workdir, run, m)) for m in ("sketch2shape", "encoder", "retrieval",
                                                                        "sdf_fit")]
            lines.append(f"| {label} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def update_readme(path: str, markdown: str, begin: str = BEGIN, end: str = END) -> None:
    """Replaces what stands between the `begin` and `end` markers of `path` (ValueError when they are missing);
    picture links are made relative to `path`'s folder."""
    folder = os.path.dirname(os.path.abspath(path))
    markdown = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)",
                      lambda m: f"![{m.group(1)}]({os.path.relpath(os.path.abspath(m.group(2)), folder)})", markdown)
    text = storage.read_text(path)
    if begin not in text or end not in text:
        raise ValueError(f"{path}: no {begin} ... {end} markers to write the results between")
    new = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{markdown}{end}", text, flags=re.S)
    storage.atomic_write_text(path, new)
