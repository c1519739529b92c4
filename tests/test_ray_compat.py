"""The Ray workarounds (:mod:`srdc.harness.ray_compat`) name the Ray they were written for: installing another Ray,
or moving pyproject's pin, fails here, pointing at the workarounds to revisit."""

import tomllib
from pathlib import Path

import ray

from srdc.harness.ray_compat import RAY_PIN

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
REVISIT = "revisit every workaround in srdc/harness/ray_compat.py, then move its RAY_PIN"


def test_the_installed_ray_is_the_one_the_workarounds_were_written_for():
    installed = ".".join(ray.__version__.split(".")[:2])
    assert installed == RAY_PIN, f"Ray {ray.__version__} is installed, the workarounds are for {RAY_PIN}: {REVISIT}"


def test_pyprojects_pin_of_ray_is_the_workarounds_pin():
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pins = [dependency for dependency in dependencies if dependency.startswith("ray[")]
    assert pins == [f"ray[tune]=={RAY_PIN}.*"], f"pyproject.toml pins {pins}, the workarounds are for {RAY_PIN}: " \
                                                f"{REVISIT}"
