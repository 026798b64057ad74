"""Where a config comes from: a file, a packaged name, or the folder of a run or an exported model.

    config = load("chair16:cpu")                     # a packaged config (sdfjax/_configs, the repository's configs/)
    config = load("configs/chairs256.py:cpu")        # a config file and its variant
    config = saved(workdir)                          # what a run or an export was made with, read as data
    save(config, folder)                             # folder/config.json

A spec is `<file or name>[:<variant>]`. A name (`chair16`, `chairs256.py`, `configs/chair16.py`) that is not
a file here is looked up among the packaged configs, so launchers work from any folder and from an installed
wheel. A folder's config is read from its `config.json` (written by `save`: exports carry one), else from its
DeepSDF checkpoint's metadata (training stores the resolved config there); it is JSON, never executed.
This file is also a config file itself: `--config=<this file>:<folder>` loads `saved(folder)`, which is how a
launcher given only --workdir gets its config.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import os

import ml_collections

from sdfjax import checkpoint, storage

CONFIG_JSON = "config.json"
# The configs shipped inside the package (setuptools maps the repository's configs/ onto sdfjax._configs).
PACKAGE = "sdfjax._configs"


def packaged_dir() -> str:
    """The folder of the packaged configs: the installed package data, or the repository's configs/."""
    try:
        return str(importlib.resources.files(PACKAGE))
    except ModuleNotFoundError:  # sdfjax imported from a source tree that was never installed
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def packaged_names() -> list[str]:
    return sorted(n[:-3] for n in os.listdir(packaged_dir()) if n.endswith(".py") and not n.startswith("_"))


def resolve(spec: str) -> str:
    """`spec` with its file part made a path that exists: itself when it is a file, else the packaged config of
    that name. ValueError naming the spec and the packaged names when it is neither."""
    path, sep, arg = str(spec).strip("'\"").partition(":")
    if os.path.isfile(path):
        return spec
    name = os.path.basename(path)
    name = name[:-3] if name.endswith(".py") else name
    packaged = os.path.join(packaged_dir(), f"{name}.py")
    if name in packaged_names():
        return packaged + sep + arg
    raise ValueError(f"--config={spec}: no such file, and no packaged config {name!r} (packaged: "
                     f"{', '.join(packaged_names())})")


def display(spec: str) -> str:
    """`spec` as a person would type it: a packaged config by its name (`chairs256:cpu`), a file relative to the
    current folder when it is under it."""
    path, sep, arg = str(spec).partition(":")
    if os.path.dirname(os.path.abspath(path)) == os.path.abspath(packaged_dir()) and path.endswith(".py"):
        return os.path.basename(path)[:-3] + sep + arg
    relative = os.path.relpath(path)
    return (path if relative.startswith("..") else relative) + sep + arg


def load(spec: str) -> ml_collections.ConfigDict:
    """`get_config(variant)` of the config that `spec` names (see `resolve`)."""
    path, _, arg = resolve(spec).partition(":")
    module_spec = importlib.util.spec_from_file_location("_sdfjax_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def load_beside(config_file: str, spec: str) -> ml_collections.ConfigDict:
    """`load` of `spec` ("chair16.py:cpu") from the folder of `config_file`: a config built on another one
    reads it from beside itself (a clone's configs/ or the package's)."""
    return load(os.path.join(os.path.dirname(os.path.abspath(config_file)), spec))


def save(config, folder: str) -> str:
    """Writes `config` resolved (every reference replaced by its value) to folder/config.json; returns the path."""
    path = os.path.join(folder, CONFIG_JSON)
    storage.atomic_write_text(path, config.to_json_best_effort(indent=1, sort_keys=True) + "\n")
    return path


def _from_checkpoint(folder: str) -> dict | None:
    if not os.path.isdir(checkpoint.checkpoint_dir(folder)):
        return None
    meta = checkpoint.read_meta(folder)
    return None if meta is None else meta.get("config")


def saved(folder: str) -> ml_collections.ConfigDict | None:
    """The config `folder` (a run or an exported model) was made with, read as data; None when it has none.
    Raises ValueError naming the file when its config.json is not a JSON object."""
    path = os.path.join(folder, CONFIG_JSON)
    if os.path.isfile(path):
        try:
            values = json.loads(open(path).read())
        except ValueError as e:
            raise ValueError(f"{path}: not a readable config ({e})") from None
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a JSON object of config sections")
    else:
        values = _from_checkpoint(folder)
        if values is None:
            return None
    return ml_collections.ConfigDict(values)


def get_config(folder: str) -> ml_collections.ConfigDict:
    """This file as a config file: `--config=<config_files.py>:<folder>` is `saved(folder)`."""
    config = saved(folder)
    if config is None:
        raise ValueError(f"{folder}: no {CONFIG_JSON} and no DeepSDF checkpoint to read a config from; "
                         "give --config")
    return config


def launcher_argv(argv: list[str], workdir_flag: str = "workdir") -> list[str]:
    """A launcher's command line with its --config made loadable from any folder: a packaged name resolved to
    its file, and, when --config is absent but --workdir holds a config, `--config=<this file>:<workdir>`."""
    out, given = [], False
    for a in argv:
        for prefix in ("--config=", "-config="):
            if a.startswith(prefix):
                a, given = prefix + resolve(a[len(prefix):]), True
        out.append(a)
    if given:
        return out
    workdir = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith(f"--{workdir_flag}=")), None)
    if workdir and (os.path.isfile(os.path.join(workdir, CONFIG_JSON)) or
                    os.path.isdir(os.path.join(workdir, "checkpoints"))):
        out.insert(1, f"--config={os.path.abspath(__file__)}:{os.path.abspath(workdir)}")
    return out
