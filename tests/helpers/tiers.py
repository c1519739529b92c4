"""The test tiers, kept honest: a test not marked ``integration`` or ``slow`` runs in this process alone.

- ``python -m pytest -m "not slow and not integration"``: the fast tier. Its tests start no process (no server, no
  Ray, no browser, no ``srdc-train``, no study driver); one that does fails at once, naming
  itself and the fix (mark it ``integration``).
- ``-m "not slow"``: and the integration tests (servers, Ray, subprocesses), each a few seconds to a minute.
- everything: and the slow real-data and end-to-end tests (CI).

A test that uses a fixture of :data:`PROCESS_FIXTURES` is marked ``integration`` here; any other that starts a
process says so itself (``@pytest.mark.integration``, or ``pytestmark`` for a whole module).

Loaded by ``conftest.py`` (``pytest_plugins``).
"""

from __future__ import annotations

import multiprocessing.process
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

MARKERS = ("integration", "slow")
# what libraries run to look around while they are imported (torch's CUDA library lookup runs `ldconfig -p`): not
# processes a test starts
SYSTEM_PROBES = {"ldconfig", "uname"}
# the shared fixtures that start a process (conftest.py): a test using one is an integration test by that alone
PROCESS_FIXTURES = {"mlflow_server", "s3_server", "ray_cluster"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def in_fast_tier(item: pytest.Item) -> bool:
    """Whether ``item`` belongs to the fast tier: marked neither ``integration`` nor ``slow``."""
    return not any(item.get_closest_marker(marker) for marker in MARKERS)


@contextmanager
def processes_refused(item: pytest.Item) -> Iterator[None]:
    """While a fast-tier test (its fixtures included) sets up and runs, starting a process is an error naming it."""
    if not in_fast_tier(item):
        yield
        return

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"{item.nodeid} starts a process, which the fast tier never does: mark it "
                             f"@pytest.mark.integration (tests/tiers.py)")

    spawn, start = subprocess.Popen._execute_child, multiprocessing.process.BaseProcess.start

    def spawn_probes_only(popen: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
        command = [args] if isinstance(args, str | bytes) else list(args)
        if os.path.basename(os.fsdecode(command[0]).split()[0]) not in SYSTEM_PROBES:
            refuse()
        spawn(popen, args, *rest, **kwargs)

    subprocess.Popen._execute_child = spawn_probes_only  # every subprocess, asyncio's and Ray's included
    multiprocessing.process.BaseProcess.start = refuse
    try:
        yield
    finally:
        subprocess.Popen._execute_child = spawn
        multiprocessing.process.BaseProcess.start = start


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with processes_refused(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with processes_refused(item):
        return (yield)
