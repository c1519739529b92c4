"""The Ray workarounds (:mod:`srdc.harness.ray_compat`) name the Ray they were written for: installing another Ray,
or moving pyproject's pin, fails here, pointing at the workarounds to revisit."""

import signal
import tomllib
from pathlib import Path

import ray

from srdc.harness.ray_compat import RAY_PIN, sigint_handler_restored

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


def test_tunes_sigint_handler_outlives_its_run_so_fit_puts_the_earlier_one_back():
    from ray.tune.tune import _setup_signal_catching

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGUSR1)}
    with sigint_handler_restored():
        _setup_signal_catching()  # what Tuner.fit installs first, and leaves after a run that no signal ended
        assert signal.getsignal(signal.SIGINT) is not before[signal.SIGINT], f"Ray fixed it: {REVISIT}"
    assert {signum: signal.getsignal(signum) for signum in before} == before
