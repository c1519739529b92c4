"""The only place that builds a Ray Tune ``Tuner``: resources, ``RunConfig`` (storage, retries, checkpoints, the
console, the tracking callback), ``Tuner.restore`` for ``--resume``, and the Ray session.

The console of a study is compact: one line per trial event and a summary line every 30 s
(:class:`srdc.harness.console.ConsoleProgress`), counted out of the trials the sweep plans; each trial's output goes
to its folder's ``trial.log``, not to the console; ``--verbose`` adds Tune's status table and the INFO lines of Ray,
MLflow and Optuna (``-vv``: each trial's results and its output echoed, ``-vvv``: every value).

A :class:`Sweep` is what one ``Tuner`` runs (Tune calls it an experiment; here "experiment" is the MLflow one): its
param space, searcher and scheduler. :func:`fit` runs it, or continues it when its folder holds one, and returns one
record per trial with its :class:`~srdc.base.TrialStatus`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import ray
from ray import tune
from ray.tune.experiment import Trial

from srdc.base import (
    INDUCTIVE_SELECTIONS,
    LABELFREE,
    LAST,
    ORACLE,
    SEARCH_SELECTIONS,
    SELECTIONS,
    TrialStatus,
    sigterm_interrupts,
    stop_gracefully,
)
from srdc.harness.console import ECHO_TRIALS_FROM, ConsoleProgress, library_level, quiet_libraries
from srdc.harness.options import Launch
from srdc.harness.ray_compat import (
    AUTH_LOGGER,
    AUTH_NOTICE,
    ProgressTable,
    dropped_log,
    restored_run_config,
    set_tune_environment,
    sigint_handler_restored,
)
from srdc.harness.signatures import sign_files, sign_stored, verify_storage
from srdc.harness.trainable import DIVERGED, FIGURES_DEFERRED, REFUSED, train_srdc
from srdc.tracking import Folder, StudyLogger, limit_http_retries, local_folders
from srdc.trial_config import tracked_config
from srdc.trialfiles import TRIAL_LOG, is_trusted, recover_checkpoint, storage_location, trusted_files
from srdc.validators import VALIDATORS

Trainable = Callable[[dict[str, Any]], None]
# what Tune's status table (--verbose) shows of each trial's latest result
PROGRESS_METRICS = {"epoch": "epoch", "acc_target": "acc", "acc_best_oracle": "best(oracle)",
                    "acc_labelfree": "labelfree", "infomax": "infomax"}
RECORD_METRICS = (*(SELECTIONS[selection].metric for selection in (LAST, ORACLE, LABELFREE)),
                  *(selection.metric for selection in INDUCTIVE_SELECTIONS.values()),
                  *(f"{SELECTIONS[LABELFREE].metric}_{name}" for name in VALIDATORS), "objective",
                  *(f"objective_{selection}" for selection in SEARCH_SELECTIONS), "epoch")


@dataclass
class Sweep:
    """One sweep (what one ``Tuner`` runs: a study's, or a search phase's): ``name`` is its folder under the launch's
    storage; ``tracking`` the MLflow study it is logged into (with ``tracking_params`` on its parent run)."""

    name: str
    param_space: dict[str, Any]
    epochs: int
    tracking: str
    tracking_params: dict[str, Any]
    planned: int  # the trials it runs: the grid's cells x num_samples (what the console counts out of)
    num_samples: int = 1
    searcher: Any = None
    scheduler: Any = None
    parameter_columns: list[str] = field(default_factory=list)
    metric_columns: dict[str, str] = field(default_factory=lambda: dict(PROGRESS_METRICS))


def trial_resources(launch: Launch) -> dict[str, float]:
    """CPU and GPU per trial on the cluster of the Ray session (:meth:`Launch.trial_resources`)."""
    if launch.gpus_per_trial is not None:  # no need to ask the cluster (nor to be connected to one)
        return launch.trial_resources(0)
    return launch.trial_resources(ray.cluster_resources().get("GPU", 0))


@contextmanager
def ray_session(address: str | None = None, verbose: int = 0, dashboard: bool = False) -> Iterator[None]:
    """A Ray session for the driver: the running one, else a connection to the cluster at ``address`` (the
    launch's ``--address`` or ``$RAY_ADDRESS``; ``None``: the cluster ``ray start`` made on this machine, else a
    local instance started here, with Ray's dashboard only when ``dashboard`` (``--dashboard``)), shut down after.
    At the launch's ``verbose`` (:mod:`srdc.harness.console`): the libraries' INFO lines from ``-v``, the workers'
    output on this console from ``-vv`` (it is in each trial's log file anyway)."""
    set_tune_environment()
    limit_http_retries()
    quiet_libraries(verbose)
    started = not ray.is_initialized()
    on_main_thread = threading.current_thread() is threading.main_thread()
    # SIGTERM stops a study as Ctrl-C does (Tune saves its state, the study ends with the --resume command), from
    # before ray.init (a SIGTERM while Ray starts is an interruption too)
    with sigterm_interrupts():
        try:
            if started:
                with dropped_log(AUTH_LOGGER, AUTH_NOTICE):
                    ray.init(address=address, include_dashboard=dashboard, log_to_driver=verbose >= ECHO_TRIALS_FROM,
                             logging_level=library_level(verbose))
            if on_main_thread:  # again: ray.init's own handler would abort the driver on SIGTERM
                signal.signal(signal.SIGTERM, stop_gracefully)
            yield
        finally:
            if started:
                ray.shutdown()


class TuneTracking(tune.Callback):
    """The Tune side of :class:`srdc.tracking.StudyLogger`: each trial event, handed to the tracker-agnostic logger
    with the trial's full config (:func:`tracked_config`)."""

    def __init__(self, logger: StudyLogger) -> None:
        self.logger = logger

    def setup(self, **info: Any) -> None:
        self.logger.setup()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.logger.trial_started(trial.trial_id, tracked_config(trial.config), trial_folders(trial))

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        self.logger.trial_result(trial.trial_id, tracked_config(trial.config), trial_folders(trial), result)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        refused = (trial.last_result or {}).get(REFUSED)
        self.logger.trial_ended(trial.trial_id, tracked_config(trial.config), trial_folders(trial),
                                TrialStatus.FAILED if refused else TrialStatus.FINISHED)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.logger.trial_ended(trial.trial_id, tracked_config(trial.config), trial_folders(trial),
                                TrialStatus.FAILED)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.logger.sweep_ended()


class SignState(tune.Callback):
    """Sign Tune's state as Tune writes it (:mod:`srdc.harness.signatures`): the trusted files of the driver's
    staging folder, from which Tune copies them to the sweep folder ``folder`` in the background, after each step of
    Tune's loop in which one changed (Tune saves its state within a step, then starts the copy), and when the sweep
    ends (after Tune's last copy of its state, also when the sweep was interrupted or failed)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.staging: str | None = None
        self.seen: dict[str, tuple[int, int]] = {}

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its RunConfig into tuner.pkl
        return {"folder": self.folder, "staging": None, "seen": {}}

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if trials:
            self.staging = trials[0].storage.experiment_driver_staging_path
            self.sign()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.sign()

    def sign(self) -> None:
        """Sign the staging folder's trusted files that changed (time or size) since they were last signed."""
        if self.staging is None or not os.path.isdir(self.staging):
            return
        changed = {}
        for entry in os.scandir(self.staging):
            if not entry.is_file() or not is_trusted(entry.name):
                continue
            stat = entry.stat()
            if self.seen.get(entry.name) != (stat.st_mtime_ns, stat.st_size):
                self.seen[entry.name] = (stat.st_mtime_ns, stat.st_size)
                with open(entry.path, "rb") as stream:
                    changed[entry.name] = stream.read()
        if changed:
            sign_files(self.folder, changed)


def trial_folders(trial: Trial) -> list[Folder]:
    """Where the trial's files may be: the driver's copy (``local_path``) first, then its folder in the storage
    (``path`` on the storage's filesystem: a local path, or as an ``s3://``/``gs://`` URI)."""
    stored = storage_location(trial.storage.storage_filesystem, trial.path)
    return [*local_folders(trial.local_path), *([stored] if stored is not None else [])]


def console(launch: Launch, sweep: Sweep) -> tuple[ConsoleProgress, ProgressTable | None]:
    """The compact lines, and with ``--verbose`` Tune's status table."""
    progress = ConsoleProgress(sweep.epochs, sweep.parameter_columns, launch.max_failures, sweep.planned)
    table = ProgressTable(metric_columns=sweep.metric_columns, parameter_columns=sweep.parameter_columns,
                          max_report_frequency=30) if launch.verbose else None
    return progress, table


def run_config(launch: Launch, sweep: Sweep) -> tune.RunConfig:
    """Storage, retries from the last checkpoint, the latest checkpoint kept, the console (:func:`console`, Tune's
    verbosity ``launch.verbose``; each trial's stdout and stderr into its folder's ``trial.log``), tracking."""
    logger = StudyLogger(sweep.tracking, launch.experiment, launch.tracking_uri, sweep.tracking_params)
    progress, table = console(launch, sweep)
    return tune.RunConfig(
        name=sweep.name,
        storage_path=launch.storage_path,
        failure_config=tune.FailureConfig(max_failures=launch.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=launch.keep_checkpoints),
        callbacks=[TuneTracking(logger), progress, SignState(sweep_path(launch, sweep))],
        progress_reporter=table,
        verbose=min(launch.verbose, 3),
        log_to_file=TRIAL_LOG,
        # a reused actor's trial directory is its working directory: sync it to the storage trial folder
        sync_config=tune.SyncConfig(sync_artifacts=True),
    )


def follow_console(restored: tune.RunConfig, launch: Launch, sweep: Sweep) -> None:
    """``Tuner.restore`` brings back the first run's ``RunConfig`` whole (Ray 2.60 takes none on restore): give it the
    console of the continuing launch (``--verbose``, the trials' log file); its other callbacks (tracking) stay."""
    progress, table = console(launch, sweep)
    kept = [callback for callback in restored.callbacks or [] if not isinstance(callback, ConsoleProgress | SignState)]
    restored.callbacks = [*kept, progress, SignState(sweep_path(launch, sweep))]
    restored.progress_reporter, restored.verbose = table, min(launch.verbose, 3)
    restored.log_to_file = TRIAL_LOG


def sweep_path(launch: Launch, sweep: Sweep) -> str:
    return f"{launch.storage_path.rstrip('/')}/{sweep.name}"


def exists(path: str) -> bool:
    """Whether ``path`` holds a sweep Tune can continue."""
    return tune.Tuner.can_restore(path)


def fit(launch: Launch, sweep: Sweep, trainable: Trainable = train_srdc) -> list[dict[str, Any]]:
    """Run ``sweep``, or continue it (``Tuner.restore``) when its folder holds it already; one record per
    trial (call inside :func:`ray_session`)."""
    runnable = tune.with_resources(trainable, trial_resources(launch))
    path = sweep_path(launch, sweep)
    if exists(path):
        if not launch.trust_storage:
            verify_storage(path)
        recover_checkpoints(path)
        # resume_errored: an errored trial continues from its checkpoint under its own trial id (and MLflow run),
        # which gives what a restart would, since resuming is exact; restart_errored would make a new trial
        tuner = tune.Tuner.restore(path, runnable, resume_unfinished=True, resume_errored=True)
        follow_console(restored_run_config(tuner), launch, sweep)
    else:
        # reuse_actors: one worker process per concurrent slot, not per trial (it saves importing torch each time)
        tune_config = tune.TuneConfig(num_samples=sweep.num_samples, search_alg=sweep.searcher,
                                      scheduler=sweep.scheduler, max_concurrent_trials=launch.max_concurrent
                                      if sweep.searcher is None else None, reuse_actors=True)
        tuner = tune.Tuner(runnable, param_space=param_space(launch, sweep), tune_config=tune_config,
                           run_config=run_config(launch, sweep))
        sign_stored(path, trusted_files(path))  # the tuner.pkl it has just written
    with sigint_handler_restored():
        tuner.fit()
    return trial_records(path, sweep.epochs)


def param_space(launch: Launch, sweep: Sweep) -> dict[str, Any]:
    """The sweep's trial configs, with ``checkpoint_every`` when ``--checkpoint-every`` is not 1."""
    if launch.checkpoint_every == 1:
        return sweep.param_space
    return {**sweep.param_space, "checkpoint_every": launch.checkpoint_every}


def recover_checkpoints(path: str) -> list[str]:
    """Before the sweep at ``path`` continues: for each unfinished trial whose checkpoint named in Tune's saved
    state is gone, copy the trial's next checkpoint (its oldest newer one) there, so that the trial continues from
    that epoch; the ids of those trials.

    A killed driver can leave such a state: Tune deletes a trial's checkpoints beyond ``--keep-checkpoints`` as
    soon as a newer one is reported, but copies its state to the storage in the background, some time later.
    Ray 2.60 would fail that trial on every retry ("does not exist on storage anymore"). The epochs between the
    two checkpoints are in the trial's history and MLflow run, but may be missing from Tune's ``result.json``."""
    recovered = []
    for trial in tune.ExperimentAnalysis(path).trials:
        checkpoint = trial.checkpoint
        if trial.status == Trial.TERMINATED or checkpoint is None:
            continue
        copied = recover_checkpoint(checkpoint.filesystem, checkpoint.path)
        if copied is not None:
            print(f"warning: trial {trial.trial_id}: Tune's saved state names {checkpoint.path}, deleted since; "
                  f"continuing from the next checkpoint, {copied}", file=sys.stderr)
            recovered.append(trial.trial_id)
    return recovered


def trial_status(trial: Trial, epochs: int) -> TrialStatus:
    """The :class:`~srdc.base.TrialStatus` of one trial, from Tune's saved state of it and its last result."""
    last = trial.last_result or {}
    if trial.status == Trial.ERROR or last.get(REFUSED):  # crashed after its retries, or refused by its input
        return TrialStatus.FAILED
    if trial.status != Trial.TERMINATED:  # pending, running or paused when the study stopped
        return TrialStatus.UNFINISHED
    if last.get(DIVERGED):
        return TrialStatus.DIVERGED
    return TrialStatus.FINISHED if last.get("epoch", -1) >= epochs else TrialStatus.STOPPED


def trial_records(path: str, epochs: int) -> list[dict[str, Any]]:
    """One record per trial of the sweep at ``path`` (Tune's saved state: every trial, also one that never
    reported): its config, status, folder, trial id and final accuracies and objectives."""
    records = []
    for trial in tune.ExperimentAnalysis(path).trials:
        last = trial.last_result or {}
        record = {**trial.config, "status": trial_status(trial, epochs).value, "path": trial.path,
                  "trial_id": trial.trial_id}
        record.update({key: last[key] for key in (*RECORD_METRICS, FIGURES_DEFERRED) if key in last})
        record.setdefault("labelfree_selector", last.get("labelfree_selector", "infomax"))
        records.append(record)
    return records
