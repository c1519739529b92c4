"""Cold start: ``--help`` of every entry point (each console script of pyproject.toml, each ``studies/*.py``)
prints its usage without importing torch, Ray or MLflow, read from ``python -X importtime``; a study's declaration
names its search domains without Ray; the commands that run torch say first how many threads it uses."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from srdc.base import set_torch_threads
from srdc.harness.declarations import loguniform, tune_domain

pytestmark = pytest.mark.integration  # starts processes (tests/tiers.py)

REPO = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "ray", "mlflow"}
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
STUDIES = sorted(path.name for path in (REPO / "studies").glob("*.py"))


def imported_modules(stderr: str) -> set[str]:
    """The module names ``-X importtime`` reported (``import time: self | cumulative | name`` lines)."""
    return {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines() if line.startswith("import time:")}


def run_help(command: list[str]) -> tuple[str, set[str]]:
    """``command`` run with ``-X importtime``: its stdout, and the top-level names of the modules it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", *command], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=True)
    return done.stdout, {name.split(".")[0] for name in imported_modules(done.stderr)}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_the_help_of_a_console_script_imports_no_torch_ray_or_mlflow(script):
    module, function = SCRIPTS[script].split(":")
    stdout, modules = run_help(["-c", f"import sys; from {module} import {function}; sys.exit({function}(['--help']))"])
    assert stdout.startswith(f"usage: {script}") and "--help" in stdout
    assert modules & HEAVY == set(), f"{script} --help imports {sorted(modules & HEAVY)}"
    assert "srdc" in modules  # the report is real: the package itself is in it


@pytest.mark.parametrize("study", STUDIES)
def test_the_help_of_a_study_script_imports_no_torch_ray_or_mlflow(study):
    stdout, modules = run_help([f"studies/{study}", "--help"])
    assert stdout.startswith(f"usage: {study}") and "--smoke-test" in stdout
    assert modules & HEAVY == set(), f"studies/{study} --help imports {sorted(modules & HEAVY)}"


def test_a_subcommand_help_that_runs_torch_imports_none():
    stdout, modules = run_help(["-c", "import sys; from srdc.data.cli import main; "
                                      "sys.exit(main(['extract-features', '--help']))"])
    assert "--threads" in stdout and modules & HEAVY == set()


def test_a_searched_domain_is_declared_without_ray_and_becomes_tunes():
    from ray import tune

    domain = tune_domain(loguniform(1e-3, 1e-1))
    assert isinstance(domain, tune.search.sample.Float)
    assert (domain.lower, domain.upper, str(domain.get_sampler())) == (1e-3, 1e-1, "LogUniform")
    grid_values = [0.5, 1.0]
    assert tune_domain(grid_values) is grid_values


def test_torch_threads_come_from_the_request_then_omp_num_threads_then_the_usable_cpus(monkeypatch):
    import os

    import torch

    before = torch.get_num_threads()
    try:
        assert set_torch_threads(2) == "threads: 2 (from --threads)" and torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert set_torch_threads() == "threads: 3 (from OMP_NUM_THREADS)" and torch.get_num_threads() == 3
        monkeypatch.delenv("OMP_NUM_THREADS")
        cpus = len(os.sched_getaffinity(0))
        assert set_torch_threads() == f"threads: {cpus} (from the CPUs this process may use)"
        assert torch.get_num_threads() == cpus
    finally:
        torch.set_num_threads(before)


def test_srdc_train_names_its_threads_in_its_first_line_and_refuses_zero(tmp_path):
    base = [sys.executable, "-m", "srdc.cli", "--dataset", "embedded", "--task", "digits->digits_photo",
            "--max_samples", "40", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")]
    done = subprocess.run([*base, "--threads", "1"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0].endswith(f"out={tmp_path / 'run'}; threads: 1 (from --threads)")
    assert (tmp_path / "run" / "summary.json").is_file()
    refused = subprocess.run([*base, "--threads", "0"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and refused.stderr.strip() == "error: --threads 0: give 1 or more threads"
