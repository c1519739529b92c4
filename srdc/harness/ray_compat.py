"""Every workaround of the harness for the Ray it is pinned to (``RAY_PIN``; pyproject.toml: ``ray[tune]==2.60.*``):
each use of a private Ray API, and each setting that only this Ray needs, with what it works around.

``tests/test_ray_compat.py`` fails when the installed Ray or pyproject's pin leaves ``RAY_PIN``: then revisit each
workaround here (is it still needed, does the private name still exist) and move the pin. Not here, though written
for Ray 2.60 too: the recovery of Tune's checkpoint folders after a killed driver or a lost node
(``recover_checkpoints``, ``usable_checkpoint``), which belongs with the trial's files."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ray import tune

RAY_PIN = "2.60"
# Ray 2.60 turns token authentication on for a local instance that ray.init starts (or finds) while RAY_AUTH_MODE is
# unset, and warns that it did so; the driver and that instance share the token (~/.ray/auth_token), so for a local
# run the warning says nothing to act on (a cluster's token: docs/cluster.md)
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
AUTH_NOTICE = "Token authentication is enabled for this Ray cluster"


def set_tune_environment() -> None:
    """Tune's settings from the environment that this Ray needs, each unless the user set it."""
    # Ray 2.60's new console output (on unless RAY_AIR_NEW_OUTPUT=0) ignores a RunConfig's progress_reporter: the
    # status table of --verbose (ProgressTable, a CLIReporter) needs the old one
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # every epoch is checkpointed; with epochs of seconds (--smoke-test) Tune would warn at each snapshot
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


class _DropPrefix(logging.Filter):
    """Drops the log records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


@contextmanager
def dropped_log(logger: str, prefix: str) -> Iterator[None]:
    """Within the block, the records of ``logger`` that start with ``prefix`` are not shown."""
    dropping = _DropPrefix(prefix)
    logging.getLogger(logger).addFilter(dropping)
    try:
        yield
    finally:
        logging.getLogger(logger).removeFilter(dropping)


def restored_run_config(tuner: tune.Tuner) -> tune.RunConfig:
    """The ``RunConfig`` a ``Tuner.restore`` brought back, to change in place: Ray 2.60's ``Tuner.restore`` takes no
    ``RunConfig`` and its ``Tuner`` shows none but through the private ``_local_tuner``."""
    return tuner._local_tuner.get_run_config()


class ProgressTable(tune.CLIReporter):
    """Tune's status table (``--verbose``), without its ``Result logdir`` line: that is the driver's staging folder
    under /tmp/ray, not where the results are (the storage path, printed at the end). ``CLIReporter`` has no
    public hook for its lines: this overrides its private ``_print``."""

    def _print(self, msg: str) -> None:
        super()._print("\n".join(line for line in msg.splitlines() if not line.startswith("Result logdir: ")))


@contextmanager
def sigint_handler_restored() -> Iterator[None]:
    """Within the block, a ``Tuner.fit``; after it, the SIGINT and SIGUSR1 handlers it found. Ray 2.60's fit installs
    its own (``ray.tune.tune._setup_signal_catching``: the first Ctrl-C ends the run, saving Tune's state) and puts
    the earlier one back only when such a signal arrives: after a run that ended otherwise, a Ctrl-C (or a SIGTERM,
    :func:`srdc.base.stop_gracefully`) while the tables are written or between a search's phases would only mark
    that finished run as interrupted, and the driver would go on."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGUSR1)}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            if handler is not None:  # None: installed outside Python, nothing to put back
                signal.signal(signum, handler)
