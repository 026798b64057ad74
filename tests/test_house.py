"""The layout's rules (docs/design.md, "Who may import whom"), read from the source: every project import, anywhere."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("sdfjax", "data_gen")


def _module_name(path: str) -> str:
    rel = os.path.relpath(path, ROOT)[:-len(".py")].replace(os.sep, ".")
    return rel[:-len(".__init__")] if rel.endswith(".__init__") else rel


def _modules() -> dict[str, str]:
    """Project module name -> file path, for every .py file of the packages."""
    found = {}
    for package in PACKAGES:
        for directory, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an import names (`from a.b import c` names a.b.c when that is a module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def project_imports(path: str) -> list[tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for every import statement of a file."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                names = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                names = [f"{child.module}.{a.name}" for a in child.names]
            else:
                names = []
            for name in names:
                if name.split(".")[0] in PACKAGES and (module := _resolve(name)):
                    found.append((module, child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


GRAPH = {m: sorted({i for i, _, _ in project_imports(p)} - {m}) for m, p in MODULES.items()}


def _reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _in(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_import_graph_is_read_from_the_source():
    # The rules below mean something only if the graph sees real imports.
    assert "sdfjax.trained" in GRAPH["sdfjax.fit.reconstruct"]
    assert "sdfjax.checkpoint" in GRAPH["sdfjax.trained"]
    assert "sdfjax.data.pipeline" in GRAPH["data_gen.preprocess"]


def test_no_import_circle_among_project_modules():
    circles = sorted(m for m in GRAPH if m in _reachable(m) and not m.endswith("__init__"))
    assert not circles, f"modules that import themselves through others: {circles}"


def test_the_library_never_imports_its_command_lines():
    bad = [(m, i) for m, imports in GRAPH.items() if _in(m, "sdfjax") and not _in(m, "sdfjax.launch")
           for i in imports if _in(i, "data_gen", "sdfjax.launch")]
    assert not bad, bad


@pytest.mark.parametrize("module, forbidden", [
    ("sdfjax.checkpoint", ("sdfjax.train", "sdfjax.fit", "sdfjax.sketch2shape", "sdfjax.models", "sdfjax.data",
                           "sdfjax.trained")),
    ("sdfjax.trained", ("sdfjax.train", "sdfjax.fit", "sdfjax.sketch2shape", "sdfjax.data")),
    ("sdfjax.models", ("sdfjax.train", "sdfjax.fit", "sdfjax.data", "sdfjax.sketch2shape", "sdfjax.trained")),
    ("sdfjax.geometry", ("sdfjax.models", "sdfjax.train", "sdfjax.fit", "sdfjax.render", "sdfjax.sketch2shape")),
    ("sdfjax.render", ("sdfjax.models", "sdfjax.train", "sdfjax.fit", "sdfjax.data", "sdfjax.sketch2shape",
                       "sdfjax.trained", "sdfjax.checkpoint")),
    ("sdfjax.app", ("sdfjax.train", "sdfjax.data", "sdfjax.launch")),
    ("sdfjax.shipped", ("sdfjax.train", "sdfjax.fit", "sdfjax.sketch2shape", "sdfjax.data", "sdfjax.app")),
    ("sdfjax.config_files", ("sdfjax.train", "sdfjax.fit", "sdfjax.sketch2shape", "sdfjax.data", "sdfjax.models",
                             "sdfjax.app", "sdfjax.launch")),  # read by every launcher before its flags exist
    ("sdfjax.fit", ("sdfjax.train",)),  # fitting shares losses with training, never its trainers
    ("sdfjax.evaluators", ("sdfjax.train", "sdfjax.app")),  # evaluators score models; trainers call them
    ("sdfjax.losses", ("sdfjax.train", "sdfjax.fit", "sdfjax.sketch2shape", "sdfjax.data", "sdfjax.trained")),
    ("sdfjax.storage", ("sdfjax",)),
    ("sdfjax.errors", ("sdfjax",)),
])
def test_who_may_import_whom(module, forbidden):
    bad = [(m, i) for m, imports in GRAPH.items() if _in(m, module) for i in imports
           if _in(i, *forbidden) and not _in(i, module)]
    assert not bad, bad


@pytest.mark.parametrize("driver", ["sdfjax.fit.reconstruct", "sdfjax.fit.normals", "sdfjax.fit.traverse",
                                    "sdfjax.sketch2shape.optimize", "sdfjax.evaluators.retrieval",
                                    "sdfjax.app.page"])
def test_fitting_and_sketch_to_shape_never_climb_into_a_trainer(driver):
    # Losses are shared (sdfjax.losses, outside train/); everything of train/ is a trainer.
    reached = _reachable(driver)
    assert "sdfjax.trained" in reached
    trainers = sorted(m for m in reached if _in(m, "sdfjax.train"))
    assert not trainers, f"{driver} reaches {trainers}"


# `sdfjax.load_pretrained` is loaded on first use (PEP 562): the API pulls in every model, ten times the import
# time of `import sdfjax.storage`, which data_gen's worker processes pay per process.
LAZY_IMPORTS = {("sdfjax", "sdfjax.api")}


def test_project_imports_sit_at_the_top_of_library_modules():
    inside = [f"{m}:{line} imports {i}" for m, p in MODULES.items() if _in(m, "sdfjax")
              for i, line, in_function in project_imports(p) if in_function and (m, i) not in LAZY_IMPORTS]
    assert not inside, inside


MAX_PARAMETERS = 8  # more belong in a settings dataclass or a batch pytree (docs/design.md)


def parameter_count(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The parameters a caller may pass: positional, keyword-only, *args and **kwargs; a method's self/cls not."""
    a = function.args
    names = [*a.posonlyargs, *a.args, *a.kwonlyargs, *filter(None, (a.vararg, a.kwarg))]
    bound = bool(a.args) and a.args[0].arg in ("self", "cls") and not a.posonlyargs
    return len(names) - bound


def test_parameter_count_reads_every_kind_of_parameter():
    tree = ast.parse("def f(a, /, b, *c, d, e=1, **f): pass\nclass K:\n    def m(self, x, y=2): pass")
    assert [parameter_count(n) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)] == [6, 2]


def test_no_library_function_takes_more_than_eight_parameters():
    long = []
    for module, path in MODULES.items():
        if _in(module, "sdfjax"):
            with open(path) as f:
                tree = ast.parse(f.read(), path)
            long += [f"{module}.{n.name}: {parameter_count(n)}" for n in ast.walk(tree)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and parameter_count(n) > MAX_PARAMETERS]
    assert not long, long


def test_the_wheel_installs_every_package_of_sdfjax_and_its_configs_and_pins_no_backend():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    listed = set(project["tool"]["setuptools"]["packages"])
    folders = {m for m, p in MODULES.items() if _in(m, "sdfjax") and p.endswith("__init__.py")}
    assert listed == folders | {"sdfjax._configs"}, listed ^ (folders | {"sdfjax._configs"})
    assert project["tool"]["setuptools"]["package-dir"] == {"sdfjax._configs": "configs"}
    names = [d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["project"]["dependencies"]]
    assert "jax" in names and not {"jaxlib", "pytest", "pytest-xdist", "playwright", "gradio"} & set(names)
    assert all(">=" in d and "==" not in d for d in project["project"]["dependencies"])  # bounds, not pins
    extras = project["project"]["optional-dependencies"]
    assert {"cuda12", "tpu", "app", "test"} <= set(extras) and extras["cuda12"][0].startswith("jax[cuda12]")
    assert "<" not in project["project"]["requires-python"]
