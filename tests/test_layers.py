"""The package's layers import only downwards, with no cycle inside a layer, and the heavy libraries stay where
they belong (MLflow behind the tracker, pyarrow in :mod:`srdc.trialfiles`, no MLflow or Ray under the table
arithmetic); the names of the files a trial writes or the driver reads are spelled in :mod:`srdc.trialfiles` only.

Every ``import`` of every module under ``srdc/`` is read with ``ast`` (function-level imports included: a lazy
upward import is still an upward import)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRDC = Path(__file__).resolve().parents[1] / "srdc"
# the package, the study scripts and the benchmarks
SOURCES = sorted(path for folder in ("srdc", "studies", "benchmarks") for path in (SRDC.parent / folder).rglob("*.py"))
TRIAL_FILES = SRDC / "trialfiles.py"
# what only srdc.trialfiles may spell in code (a docstring may name them)
TRIAL_FILE_NAMES = ("summary.json", "history.jsonl", "checkpoint.pt", "srdc.lock", "record.pt", "diverged.txt",
                    "nodes.json", "params.json", "result.json", "error.txt", "srdc_study.json", "optuna.db",
                    "trial.log", "srdc_lease.json", "srdc_signatures.json")

# lowest first; a module belongs to the layer of its longest listed prefix
LAYERS = [
    ("srdc.errors", "srdc.base"),
    ("srdc.trialfiles",),
    ("srdc", "srdc.config"),
    ("srdc.data", "srdc.batches"),
    ("srdc.model", "srdc.parallel"),
    ("srdc.losses", "srdc.clustering", "srdc.schedules", "srdc.divergence"),
    ("srdc.validators", "srdc.selection"),
    ("srdc.methods",),
    ("srdc.figures", "srdc.figures.snapshot", "srdc.figures.trial"),
    ("srdc.runio", "srdc.trainer", "srdc.extract", "srdc.trial_config"),
    ("srdc.cli", "srdc.data.cli", "srdc.paper_results", "srdc.tables", "srdc.report", "srdc.factorial",
     "srdc.validator_report", "srdc.figures.study"),
    ("srdc.tracking",),
    ("srdc.report_cli",),
    ("srdc.harness", "srdc.harness.declarations"),
    ("srdc.harness.ray_compat",),
    ("srdc.harness.costs",),
    ("srdc.harness.estimate",),
    ("srdc.harness.signatures", "srdc.harness.lease"),
    ("srdc.harness.options",),
    ("srdc.harness.trainable",),
    ("srdc.harness.plan",),
    ("srdc.harness.console",),
    ("srdc.harness.tuner",),
    ("srdc.harness.outcome",),
    ("srdc.harness.search_setup",),
    ("srdc.harness.search_report",),
    ("srdc.harness.search_files",),
    ("srdc.harness.search",),
    ("srdc.harness.dryrun",),
    ("srdc.harness.main",),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRDC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(SRDC.rglob("*.py"))}


def layer(module: str) -> int:
    """The index in :data:`LAYERS` of the longest prefix of ``module`` that is listed."""
    best = None
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def imports(module: str) -> set[str]:
    """The modules ``module`` imports: ``srdc`` ones resolved to a module file, others by their top name."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found


def srdc_imports(module: str) -> set[str]:
    return {name for name in imports(module) if name in MODULES and name != module}


def test_every_module_is_in_a_layer_and_imports_only_downwards():
    upward = [f"{module} (layer {layer(module)}) imports {name} (layer {layer(name)})"
              for module in MODULES for name in srdc_imports(module) if layer(name) > layer(module)]
    assert not upward, "\n".join(upward)


def test_no_circular_import_inside_a_layer():
    graph = {module: {name for name in srdc_imports(module) if layer(name) == layer(module)} for module in MODULES}
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for name in graph[module]:
            assert state.get(name) != "open", "circular import: " + " -> ".join([*path, module, name])
            if name not in state:
                visit(name, [*path, module])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [])


@pytest.mark.parametrize("library", ["mlflow"])
def test_only_the_tracker_imports_mlflow(library):
    importers = sorted(module for module in MODULES if any(name.split(".")[0] == library for name in imports(module)))
    assert importers == ["srdc.tracking.mlflow_tracker"]


def libraries(source: str) -> set[str]:
    """The top names of every module ``source`` imports (``pyarrow`` for ``import pyarrow.fs``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def trial_file_names(source: str) -> list[str]:
    """The :data:`TRIAL_FILE_NAMES` that string constants of ``source`` spell in code (f-string parts included);
    docstrings and other lone string statements are prose and do not count."""
    tree = ast.parse(source)
    prose = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    texts = [node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose]
    return sorted({name for name in TRIAL_FILE_NAMES for text in texts if name in text})


def test_only_trialfiles_imports_pyarrow_and_spells_the_trial_file_names():
    wrong = [f"{path.relative_to(SRDC.parent)} imports pyarrow" for path in SOURCES
             if path != TRIAL_FILES and "pyarrow" in libraries(path.read_text())]
    wrong += [f"{path.relative_to(SRDC.parent)} spells {', '.join(names)}: use srdc.trialfiles" for path in SOURCES
              if path != TRIAL_FILES and (names := trial_file_names(path.read_text()))]
    assert not wrong, "\n".join(wrong)


def test_the_trial_file_check_catches_a_name_in_code_not_in_prose():
    source = ('"""Writes history.jsonl."""\nimport pyarrow.fs\nPATH = f"{OUT}/summary.json"\n\n\n'
              'def nodes():\n    """Reads diverged.txt."""\n    return OUT / "nodes.json"\n')
    assert trial_file_names(source) == ["nodes.json", "summary.json"]
    assert libraries(source) == {"pyarrow"}
    assert trial_file_names(TRIAL_FILES.read_text()) == sorted(TRIAL_FILE_NAMES)  # the names checked are its own


def test_the_layer_check_catches_an_upward_import():
    assert layer("srdc.config") < layer("srdc.data.embedded") < layer("srdc.trainer") < layer("srdc.harness.main")
    assert "srdc.config" in srdc_imports("srdc.data.embedded")  # the parser sees real imports


@pytest.mark.integration
def test_table_arithmetic_and_tracking_load_neither_mlflow_nor_ray():
    code = ("import sys, srdc.tables, srdc.report, srdc.factorial, srdc.tracking, srdc.harness.declarations; "
            "print(sorted(m for m in ('mlflow', 'ray', 'optuna') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
