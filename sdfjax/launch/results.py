r"""One command for every results table: generate, preprocess, train, fit, encoders, retrieve, sketch, report.

    python -m sdfjax.launch.results --config=configs/chairs256.py:cpu --workdir=runs/chairs256_cpu
    make results                                     # the same, then docs/results.md's tables

Each stage is one of the project's own commands, run as a subprocess with the config and
its overrides; a stage that finished is skipped on a rerun with the same command and config
(its marker <workdir>/results/<stage>.done records both), run again when either changed
(the reason is printed), and the training stages resume from their checkpoints,
so an interrupted run goes on where it stopped. Seconds per stage go to
<workdir>/results/timings.jsonl; the last stage writes the tables (sdfjax.launch.report).
"""

import hashlib
import json
import os
import subprocess
import sys
import time

from absl import flags

from sdfjax import report, storage
from sdfjax.launch import common

ALWAYS_RUN = ("export", "report")  # cheap, and their outputs live outside the workdir: never skipped


def stages(config_args: list[str], config, workdir: str, readme: str, pictures: str,
           pretrained: str = "", headline: str = "") -> list[tuple[str, list[str]]]:
    """(name, command) of every stage, in order; `config_args` are this command's --config flags, passed on.

    With `pretrained`, the run's inference weights are also exported there (sdfjax.shipped).
    """
    data = config.data.root
    out = report.results_dir(workdir)
    base = list(config_args)
    run = base + [f"--workdir={workdir}"]
    views = ",".join(str(v) for v in config.results.get("test_views", ()))
    py = [sys.executable, "-m"]
    category = [f"--category={config.data.category}"] if config.data.get("category") else []
    deepsdf = [
        ("generate", py + ["data_gen.synthetic", f"--out={data}", f"--num_train={config.data.num_train}",
                           f"--num_val={config.data.num_val}", f"--num_test={config.data.num_test}", "--preview",
                           *category]),
        ("preprocess", py + ["data_gen.preprocess", *base]),
        ("train", py + ["sdfjax.launch.train", *run]),
        ("fit_train", py + ["sdfjax.launch.fit", *run, "--config.fit.split=train", "--config.fit.init=prior",
                            "--config.fit.num_iterations=0", f"--config.fit.max_shapes={config.data.num_test}",
                            f"--out_dir={storage.join(out, 'fit_train')}"]),
        ("fit_val", py + ["sdfjax.launch.fit", *run, "--config.fit.split=val", f"--out_dir={storage.join(out, 'fit_val')}"]),
        ("fit_test", py + ["sdfjax.launch.fit", *run, "--config.fit.split=test",
                           f"--out_dir={storage.join(out, 'fit_test')}"]),
    ]
    report_stage = ("report", py + ["sdfjax.launch.report", *run, f"--readme={readme}", f"--pictures={pictures}",
                                    f"--headline={headline}"])
    if not config.results.get("sketch", True):  # DeepSDF alone: its views are never rendered
        deepsdf[1] = ("preprocess", deepsdf[1][1] + ["--skip=render"])
        return deepsdf + [report_stage]
    return deepsdf + [
        ("train_siamese", py + ["sdfjax.launch.train_siamese", *run]),
        ("train_encoder", py + ["sdfjax.launch.train_encoder", *run]),
        ("retrieval", py + ["sdfjax.launch.eval_siamese", *run, "--config.siamese.index_split=train,test",
                            "--config.siamese.query_split=test", f"--out_dir={storage.join(out, 'retrieval')}"]),
        *[(name, py + ["sdfjax.launch.sketch2shape", *run, "--config.fit.split=test", f"--config.sketch.style={style}",
                       f"--config.fit.max_shapes={config.results.sketch_shapes}",
                       f"--config.sketch.views=({views},)", f"--config.sketch.sdf_fit_dir={storage.join(out, 'fit_test')}",
                       f"--out_dir={storage.join(out, name)}"])
          for name, style in (("sketch2shape", "dataset"), ("sketch2shape_hand", "hand_drawn"))],
        # The same dataset sketches, each test chair one object drawn from all the views (as a user who draws
        # front and side): one latent refined against every drawing.
        ("sketch2shape_views", py + ["sdfjax.launch.sketch2shape", *run, "--config.fit.split=test",
                                     "--config.sketch.views_together=True",
                                     f"--config.fit.max_shapes={config.results.sketch_shapes}",
                                     f"--config.sketch.views=({views},)",
                                     f"--config.sketch.sdf_fit_dir={storage.join(out, 'fit_test')}",
                                     f"--out_dir={storage.join(out, 'sketch2shape_views')}"]),
        *([("sketch2shape_user", py + ["sdfjax.launch.sketch2shape", *run, f"--user_set={config.results.user_sketches}",
                                       f"--config.sketch.sdf_fit_dir={storage.join(out, 'fit_test')}",
                                       f"--out_dir={storage.join(out, 'sketch2shape_user')}"])]
          if config.results.get("user_sketches") else []),
        *([("export", py + ["sdfjax.launch.export", *run, f"--out={pretrained}"])] if pretrained else []),
        report_stage,
    ]


def config_digest(config) -> str:
    """SHA-256 of the resolved config, as a stage's .done marker records it."""
    return hashlib.sha256(config.to_json_best_effort(sort_keys=True).encode()).hexdigest()


def stage_record(command: list[str], digest: str) -> dict:
    """What a stage's .done marker records: its command line (without the interpreter) and the config's digest."""
    return {"command": list(command[2:]), "config_sha256": digest}


def rerun_reason(marker_text: str, record: dict) -> str | None:
    """None when a stage's marker says it finished with `record`'s command and config, else why it runs again."""
    try:
        done = json.loads(marker_text)
    except ValueError:
        done = None
    if not isinstance(done, dict) or "command" not in done:
        return "its marker records no settings"
    if done["command"] != record["command"]:
        changed = sorted(set(done["command"]) ^ set(record["command"]))
        return f"its command changed ({' '.join(changed)})"
    if done.get("config_sha256") != record["config_sha256"]:
        return "the config changed"
    return None


def main(argv):
    del argv
    f = flags.FLAGS
    out = report.results_dir(f.workdir)
    storage.makedirs(out)
    config_args = [a for a in sys.argv[1:] if a.startswith(("--config=", "--config."))]
    digest = config_digest(f.config)
    for name, command in stages(config_args, f.config, f.workdir, f.readme, f.pictures, f.pretrained, f.headline):
        marker = storage.join(out, f"{name}.done")
        record = stage_record(command, digest)
        if name not in ALWAYS_RUN and storage.exists(marker):
            reason = rerun_reason(storage.read_text(marker), record)
            if reason is None:
                print(f"[results] {name}: done before with these settings, skipped", file=sys.stderr)
                continue
            print(f"[results] {name}: run again: {reason}", file=sys.stderr)
        print(f"[results] {name}: {' '.join(command[2:])}", file=sys.stderr)
        start = time.monotonic()
        finished = subprocess.run(command, env=dict(os.environ, PYTHONPATH=os.getcwd()))
        if finished.returncode != 0:
            sys.exit(f"error: results stage {name!r} failed (exit {finished.returncode}); rerun to go on from it")
        seconds = round(time.monotonic() - start, 1)
        if name not in ALWAYS_RUN:
            storage.append_text(storage.join(out, "timings.jsonl"), json.dumps({"stage": name, "seconds": seconds}) + "\n")
            storage.atomic_write_json(marker, {**record, "seconds": seconds})
    print(f"[results] tables in {storage.join(out, 'results.md')}", file=sys.stderr)


if __name__ == "__main__":
    flags.DEFINE_string("readme", "", "Also write the tables into this markdown file's results markers.")
    flags.DEFINE_string("pictures", "", "Folder for the result pictures (default: <workdir>/results).")
    flags.DEFINE_string("pretrained", "", "Also export the run's inference weights to this folder (the shipped model).")
    flags.DEFINE_string("headline", "", "Also write the headline medians into this markdown file's headline markers.")
    common.run_trainer(main, "Run folder: checkpoints, results/ (tables, pictures, timings).")
