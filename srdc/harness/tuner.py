"""The only place that builds a Ray Tune ``Tuner``: resources, ``RunConfig`` (storage, retries, checkpoints, the
progress table, the tracking callback), ``Tuner.restore`` for ``--resume``, and the Ray session.

An :class:`Experiment` says what one Tune experiment runs (its param space, searcher, scheduler); :func:`fit`
runs it, or continues it when its folder holds one, and returns one record per trial with a :class:`TrialStatus`.
"""

from __future__ import annotations

import enum
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.experiment import Trial

from srdc.base import SELECTION_KEYS
from srdc.harness.options import Launch
from srdc.harness.trainable import DIVERGED, train_srdc
from srdc.tracking import FAILED, FINISHED, StudyLogger, limit_http_retries, local_folders

Trainable = Callable[[dict[str, Any]], None]
# what the progress table shows of each trial's latest result
PROGRESS_METRICS = {"epoch": "epoch", "acc_target": "acc", "acc_best_oracle": "best(oracle)",
                    "acc_labelfree": "labelfree", "infomax": "infomax"}
RECORD_METRICS = (*SELECTION_KEYS, "objective", "objective_labelfree", "objective_oracle", "epoch")


class TrialStatus(enum.StrEnum):
    """How a trial ended: every epoch (FINISHED), stopped early by a scheduler (STOPPED), its loss or metrics
    became NaN or infinite (DIVERGED: not retried, ``diverged.txt`` says why), gave up after its retries
    (FAILED), or not yet (UNFINISHED: interrupted, continue it with ``--resume``)."""

    FINISHED = "FINISHED"
    STOPPED = "STOPPED"
    DIVERGED = "DIVERGED"
    FAILED = "FAILED"
    UNFINISHED = "UNFINISHED"


@dataclass
class Experiment:
    """One Tune experiment of a study: ``name`` is its folder under the launch's storage; ``tracking`` the
    MLflow study it is logged into (with ``tracking_params`` on its parent run)."""

    name: str
    param_space: dict[str, Any]
    epochs: int
    tracking: str
    tracking_params: dict[str, Any]
    num_samples: int = 1
    searcher: Any = None
    scheduler: Any = None
    parameter_columns: list[str] = field(default_factory=list)
    metric_columns: dict[str, str] = field(default_factory=lambda: dict(PROGRESS_METRICS))


def trial_resources(launch: Launch) -> dict[str, float]:
    """CPU and GPU per trial; CPU is always given (``{"gpu": 0.5}`` alone would ask for no CPU)."""
    gpus = launch.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return {"cpu": launch.cpus_per_trial, "gpu": gpus}


@contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """A Ray session for the driver: the running one, else a connection to the cluster at ``address`` (the
    launch's ``--address`` or ``$RAY_ADDRESS``; ``None``: the cluster ``ray start`` made on this machine, else a
    local instance started here), shut down after."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the CLIReporter progress table of run_config
    # every epoch is checkpointed; with epochs of seconds (--smoke-test) Tune would warn at each snapshot
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    limit_http_retries()
    started = not ray.is_initialized()
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) or signal.SIG_DFL  # None: a handler installed outside Python
    try:
        if started:
            ray.init(address=address)
        if on_main_thread:  # after ray.init, whose own handler would abort the driver on SIGTERM
            signal.signal(signal.SIGTERM, _stop_gracefully)
        yield
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
        if started:
            ray.shutdown()


def _stop_gracefully(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler ending the job, ``kill``) stops a study as Ctrl-C does: Tune saves its state and the
    study ends with the ``--resume`` command."""
    os.kill(os.getpid(), signal.SIGINT)


class TuneTracking(tune.Callback):
    """The Tune side of :class:`srdc.tracking.StudyLogger`: each trial event, handed to the tracker-agnostic logger."""

    def __init__(self, logger: StudyLogger) -> None:
        self.logger = logger

    def setup(self, **info: Any) -> None:
        self.logger.setup()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.logger.trial_started(trial.trial_id, dict(trial.config), trial_folders(trial))

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        self.logger.trial_result(trial.trial_id, dict(trial.config), trial_folders(trial), result)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.logger.trial_ended(trial.trial_id, dict(trial.config), trial_folders(trial), FINISHED)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.logger.trial_ended(trial.trial_id, dict(trial.config), trial_folders(trial), FAILED)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.logger.experiment_ended()


def trial_folders(trial: Any) -> list[Path]:
    """Where the trial's files may be: the driver's copy (``local_path``) first, then the storage (``path``)."""
    return local_folders(getattr(trial, "local_path", None), getattr(trial, "path", None))


def run_config(launch: Launch, experiment: Experiment) -> tune.RunConfig:
    """Storage, retries from the last checkpoint, the latest checkpoint kept, the progress table, tracking."""
    logger = StudyLogger(experiment.tracking, launch.experiment, launch.tracking_uri, experiment.tracking_params)
    reporter = tune.CLIReporter(metric_columns=experiment.metric_columns,
                                parameter_columns=experiment.parameter_columns, max_report_frequency=30)
    return tune.RunConfig(
        name=experiment.name,
        storage_path=launch.storage_path,
        failure_config=tune.FailureConfig(max_failures=launch.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=launch.keep_checkpoints),
        callbacks=[TuneTracking(logger)],
        progress_reporter=reporter,
        verbose=1,
        # a reused actor's trial directory is its working directory: sync it to the storage trial folder
        sync_config=tune.SyncConfig(sync_artifacts=True),
    )


def experiment_path(launch: Launch, experiment: Experiment) -> str:
    return f"{launch.storage_path.rstrip('/')}/{experiment.name}"


def exists(path: str) -> bool:
    """Whether ``path`` holds a Tune experiment that can be continued."""
    return tune.Tuner.can_restore(path)


def fit(launch: Launch, experiment: Experiment, trainable: Trainable = train_srdc) -> list[dict[str, Any]]:
    """Run ``experiment``, or continue it (``Tuner.restore``) when its folder holds it already; one record per
    trial (call inside :func:`ray_session`)."""
    runnable = tune.with_resources(trainable, trial_resources(launch))
    path = experiment_path(launch, experiment)
    if exists(path):
        # resume_errored: an errored trial continues from its checkpoint under its own trial id (and MLflow run),
        # which gives what a restart would, since resuming is exact; restart_errored would make a new trial
        tuner = tune.Tuner.restore(path, runnable, resume_unfinished=True, resume_errored=True)
    else:
        # reuse_actors: one worker process per concurrent slot, not per trial (it saves importing torch each time)
        tune_config = tune.TuneConfig(num_samples=experiment.num_samples, search_alg=experiment.searcher,
                                      scheduler=experiment.scheduler, max_concurrent_trials=launch.max_concurrent
                                      if experiment.searcher is None else None, reuse_actors=True)
        tuner = tune.Tuner(runnable, param_space=experiment.param_space, tune_config=tune_config,
                           run_config=run_config(launch, experiment))
    tuner.fit()
    return trial_records(path, experiment.epochs)


def trial_status(trial: Trial, epochs: int) -> TrialStatus:
    """The :class:`TrialStatus` of one trial, from Tune's saved state of it and its last result."""
    last = trial.last_result or {}
    if trial.status == Trial.ERROR:
        return TrialStatus.FAILED
    if trial.status != Trial.TERMINATED:  # pending, running or paused when the study stopped
        return TrialStatus.UNFINISHED
    if last.get(DIVERGED):
        return TrialStatus.DIVERGED
    return TrialStatus.FINISHED if last.get("epoch", -1) >= epochs else TrialStatus.STOPPED


def trial_records(path: str, epochs: int) -> list[dict[str, Any]]:
    """One record per trial of the experiment at ``path`` (Tune's saved state: every trial, also one that never
    reported): its config, status, folder, trial id and final accuracies and objectives."""
    records = []
    for trial in tune.ExperimentAnalysis(path).trials:
        last = trial.last_result or {}
        record = {**trial.config, "status": trial_status(trial, epochs).value, "path": trial.path,
                  "trial_id": trial.trial_id}
        record.update({key: last[key] for key in RECORD_METRICS if key in last})
        record.setdefault("labelfree_selector", last.get("labelfree_selector", "infomax"))
        records.append(record)
    return records
