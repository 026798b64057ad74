"""What every entry point shares: flag parsing with clear config errors, one-line exits, start-up."""

from __future__ import annotations

import contextlib
import re
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from sdfjax import config_files, parallel
from sdfjax.data import pipeline
from sdfjax.train.loop import TrainingDiverged

_OVERRIDE = re.compile(r"^--?(config(?:\.[A-Za-z0-9_]+)+)(?:=|$)")


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parsing, but an override of a config field that does not exist is one line.

    ml_collections raises a bare AttributeError / KeyError for `--config.data.typo=1`;
    name the flag and the fields that do exist instead.
    """
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:
        _exit_on_unknown_field(argv, e)
        raise
    except flags.Error as e:
        sys.exit(f"error: {e}\nPass --helpshort or --helpfull to see help on flags.")


def define_config_flag(default: str = "chair16"):
    """`config_flags.DEFINE_config_file("config", default)`, with clear errors, from any folder.

    The command line's --config may name a packaged config (`chair16:cpu`) and may be left out when --workdir
    holds a run or an export that carries its config (sdfjax.config_files.launcher_argv rewrites sys.argv
    before the flag exists). ml_collections already applies `--config.a.b=...` overrides while defining the
    flag when the default file is used, so a typo must be caught here as well as in `run`.
    """
    try:
        sys.argv[:] = config_files.launcher_argv(sys.argv)
        default = config_files.resolve(default)
    except ValueError as e:
        sys.exit(f"error: {e}")
    try:
        return config_flags.DEFINE_config_file("config", default, "Experiment config: file[:variant], a packaged "
                                               "name (chair16, chairs256) or, left out, the --workdir's own.")
    except (AttributeError, KeyError) as e:
        _exit_on_unknown_field(sys.argv, e, default)
        raise


def _exit_on_unknown_field(argv: list[str], error: Exception, default: str | None = None) -> None:
    """Exits with one line if an override in `argv` names a field the config lacks."""
    config = _load_config(argv, default)
    bad = next((m.group(1) for a in argv[1:] if (m := _OVERRIDE.match(a))
                and not _field_exists(config, m.group(1))), None)
    if bad is None:
        return
    parent, _, field = bad.rpartition(".")
    node = _lookup(config, parent)
    where = f"in {parent!r}; its fields are {sorted(node.keys())}" if hasattr(node, "keys") else \
        f"because {parent!r} is not a section of the config"
    sys.exit(f"error: --{bad}: the config has no field {field!r} {where} ({type(error).__name__})")


def config_spec(argv: list[str]) -> str | None:
    """The `<file>[:<arg>]` that `--config=` names on the command line `argv`, or None when it is not given."""
    return next((a.split("=", 1)[1] for a in argv[1:] if a.startswith(("--config=", "-config="))), None)


def _load_config(argv: list[str], default: str | None = None):
    """The config that `--config=<file>[:<arg>]` names, loaded as config_flags does."""
    if default is None and "config" in flags.FLAGS:
        default = flags.FLAGS["config"].default_as_str
    spec = config_spec(argv) or default
    return config_files.load(spec) if spec else None


def _lookup(config, dotted: str):
    node = config
    for part in dotted.split(".")[1:]:
        node = node[part] if hasattr(node, "keys") and part in node else None
        if node is None:
            return None
    return node


def _field_exists(config, dotted: str) -> bool:
    parent, _, field = dotted.rpartition(".")
    node = _lookup(config, parent)
    return hasattr(node, "keys") and field in node


def run(main) -> None:
    """`app.run(main)` with `_parse_flags`."""
    app.run(main, flags_parser=_parse_flags)


def quiet_logging(level=None) -> None:
    """Absl logging at `level` (default ERROR: Orbax logs every restore) unless --verbosity is given."""
    if not any(a.startswith(("--verbosity", "-v")) for a in sys.argv[1:]):
        logging.set_verbosity(logging.ERROR if level is None else level)


def run_on_trained(main, workdir_help: str = "Training run folder (its latest checkpoint is used).") -> None:
    """Defines --config and a required --workdir, then `run(main)`: the launchers that read a checkpoint."""
    define_config_flag()
    flags.DEFINE_string("workdir", None, workdir_help)
    flags.DEFINE_string("out_dir", "", "Where to write the results (default: a new <workdir>/<command>/<timestamp>).")
    flags.mark_flags_as_required(["workdir"])
    run(main)


def run_job(job, report, workdir_help: str = "Training run folder (its latest checkpoint is used).") -> None:
    """A launcher over a trained run: `result = job(config, workdir, out_dir=...)` with bad input as one line, then
    `report(result)` prints what a person reads."""
    def main(argv):
        del argv
        f = flags.FLAGS
        quiet_logging()
        with exit_on():
            result = job(f.config, f.workdir, out_dir=f.out_dir or None)
        report(result)

    run_on_trained(main, workdir_help)


def run_training(train, report, workdir_help: str) -> None:
    """A training launcher: multi-host start-up, the dataset prepared, `summary = train(config, workdir)` with bad
    input and divergence as one line, then `report(summary)` on process 0 when it trained."""
    def main(argv):
        del argv
        f = flags.FLAGS
        quiet_logging(logging.WARNING)  # Orbax logs every save at INFO
        initialize_from_flags()
        with exit_on(TrainingDiverged):
            prepare_dataset(f.config)
            summary = train(f.config, f.workdir)
        if parallel.is_main_process() and summary.get("loss") is not None:
            report(summary)

    run_trainer(main, workdir_help)


def run_trainer(main, workdir_help: str) -> None:
    """Defines --config, a required --workdir and the multi-host flags, then `run(main)`: the training launchers."""
    define_config_flag()
    flags.DEFINE_string("workdir", None, workdir_help)
    flags.DEFINE_string("coordinator_address", "", "Multi-host: host:port of process 0.")
    flags.DEFINE_integer("num_processes", 0, "Multi-host: number of processes.")
    flags.DEFINE_integer("process_id", -1, "Multi-host: this process's index.")
    flags.DEFINE_string("cpu_collectives", "", "CPU collectives for multi-process CPU runs ('gloo').")
    flags.mark_flags_as_required(["workdir"])
    run(main)


def initialize_from_flags() -> None:
    """Multi-host start-up from the flags `run_trainer` defines (or the environment)."""
    f = flags.FLAGS
    parallel.initialize(f.coordinator_address, f.num_processes, f.process_id, f.cpu_collectives)


def prepare_dataset(config) -> None:
    """Preprocesses a dataset that has no TFDS dataset yet (process 0), then lets every process go on."""
    if parallel.is_main_process():
        pipeline.ensure_dataset(config)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # only multi-host runs need it

        multihost_utils.sync_global_devices("sdfjax: dataset ready")


@contextlib.contextmanager
def exit_on(*exceptions: type[BaseException]):
    """Bad input (ValueError, incl. sdfjax.errors.DataError, and `exceptions`) ends the program with one line."""
    try:
        yield
    except (ValueError, *exceptions) as e:
        sys.exit(f"error: {e}")
