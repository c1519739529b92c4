"""The only place that builds a Ray Tune ``Tuner``: resources, ``RunConfig`` (storage, retries, checkpoints, the
console, the tracking callback), ``Tuner.restore`` for ``--resume``, and the Ray session.

The console of a study is compact: one line per trial event and a summary line every 30 s
(:class:`ConsoleProgress`); ``--verbose`` adds Tune's status table (``-vv``, ``-vvv``: and each trial's results).

An :class:`Experiment` says what one Tune experiment runs (its param space, searcher, scheduler); :func:`fit`
runs it, or continues it when its folder holds one, and returns one record per trial with a :class:`TrialStatus`.
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

import ray
from ray import tune
from ray.tune.experiment import Trial

from srdc.base import SELECTION_KEYS
from srdc.config import options
from srdc.errors import SRDCInputError
from srdc.harness.options import Launch
from srdc.harness.trainable import DIVERGED, run_configs, train_srdc
from srdc.methods import tracked_fields
from srdc.tracking import FAILED, FINISHED, Folder, StudyLogger, limit_http_retries, local_folders
from srdc.trialfiles import DIVERGED_FILE, TUNE_ERROR_FILE, recover_checkpoint, storage_location

Trainable = Callable[[dict[str, Any]], None]
# what Tune's status table (--verbose) shows of each trial's latest result
PROGRESS_METRICS = {"epoch": "epoch", "acc_target": "acc", "acc_best_oracle": "best(oracle)",
                    "acc_labelfree": "labelfree", "infomax": "infomax"}
RECORD_METRICS = (*SELECTION_KEYS, "objective", "objective_labelfree", "objective_oracle", "epoch")
SUMMARY_EVERY_S = 30.0  # the compact console's summary line
# what a finished trial's line shows (each where the trial reported it)
FINAL_METRICS = ("acc_last", "acc_best_oracle", "acc_labelfree", "objective")
# Ray 2.60 turns token authentication on for a local instance that ray.init starts (or finds) while RAY_AUTH_MODE is
# unset, and warns that it did so; the driver and that instance share the token (~/.ray/auth_token), so for a local
# run the warning says nothing to act on (a cluster's token: docs/cluster.md)
AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
AUTH_NOTICE = "Token authentication is enabled for this Ray cluster"


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
    """CPU and GPU per trial on the cluster of the Ray session (:meth:`Launch.trial_resources`)."""
    if launch.gpus_per_trial is not None:  # no need to ask the cluster (nor to be connected to one)
        return launch.trial_resources(0)
    return launch.trial_resources(ray.cluster_resources().get("GPU", 0))


@contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """A Ray session for the driver: the running one, else a connection to the cluster at ``address`` (the
    launch's ``--address`` or ``$RAY_ADDRESS``; ``None``: the cluster ``ray start`` made on this machine, else a
    local instance started here), shut down after."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # --verbose: the CLIReporter status table of run_config
    # every epoch is checkpointed; with epochs of seconds (--smoke-test) Tune would warn at each snapshot
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    limit_http_retries()
    started = not ray.is_initialized()
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) or signal.SIG_DFL  # None: a handler installed outside Python
    try:
        if started:
            with dropped_log(AUTH_LOGGER, AUTH_NOTICE):
                ray.init(address=address)
        if on_main_thread:  # after ray.init, whose own handler would abort the driver on SIGTERM
            signal.signal(signal.SIGTERM, _stop_gracefully)
        yield
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)
        if started:
            ray.shutdown()


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


def _stop_gracefully(signum: int, frame: Any) -> None:
    """SIGTERM (a scheduler ending the job, ``kill``) stops a study as Ctrl-C does: Tune saves its state and the
    study ends with the ``--resume`` command."""
    os.kill(os.getpid(), signal.SIGINT)


def tracked_config(trial_config: dict[str, Any]) -> dict[str, Any]:
    """What a trial's run holds as params: the config fields its method reads (:func:`srdc.methods.tracked_fields`:
    the common groups and the method's own) as the trial's run resolves them (defaults included), then the trial
    config's own keys as they are (``study``, ``task``...) but the config fields the method does not read. A search
    trial (``tasks``/``seeds``, several runs) gets the fields its runs share, beside its ``tasks`` and ``seeds``. A
    config that makes no valid run stays as it is: the trial fails with that error itself."""
    try:
        first = run_configs(trial_config)[0]
    except SRDCInputError:
        return dict(trial_config)
    read = tracked_fields(first.variant)
    tracked = {name: value for name, value in first.to_dict().items() if name in read}
    if "tasks" in trial_config:
        per_run = {"source", "target", "seed", *(key for entry in trial_config["tasks"] for key in entry)}
        tracked = {key: value for key, value in tracked.items() if key not in per_run}
    unread = set(options()) - set(read)
    return {**tracked, **{key: value for key, value in trial_config.items() if key not in unread}}


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
        self.logger.trial_ended(trial.trial_id, tracked_config(trial.config), trial_folders(trial), FINISHED)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.logger.trial_ended(trial.trial_id, tracked_config(trial.config), trial_folders(trial), FAILED)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.logger.experiment_ended()


def elapsed(seconds: float) -> str:
    """``54s``, ``3m12s``, ``1h05m``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class ConsoleProgress(tune.Callback):
    """The compact console of a study (on stderr; its results go to stdout): one line per trial event -- started or
    continued from its checkpoint, finished with its accuracies (each named by its model selection), stopped early by
    the scheduler, diverged, retried, failed -- and every ``every_s`` seconds (and at the end) one line of counts,
    elapsed time and the best label-free result so far (a search's: its objective). A trial is named by its id and
    the config fields in ``columns``."""

    def __init__(self, epochs: int, columns: list[str], max_failures: int, every_s: float = SUMMARY_EVERY_S,
                 out: TextIO | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.epochs, self.columns, self.max_failures, self.every_s = epochs, columns, max_failures, every_s
        self.out, self.clock = out, clock
        self.start = self.last_summary = clock()

    def say(self, text: str) -> None:
        print(text, file=self.out or sys.stderr, flush=True)

    def name(self, trial: Trial) -> str:
        shown = " ".join(f"{key}={_value(trial.config[key])}" for key in self.columns if key in trial.config)
        return f"trial {trial.trial_id} {shown}".rstrip()

    def setup(self, **info: Any) -> None:
        self.start = self.last_summary = self.clock()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        resumed = trial.checkpoint is not None
        self.say(f"{self.name(trial)}: {'continues from its last checkpoint' if resumed else 'started'}")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        epoch = last.get("epoch", 0)
        if last.get(DIVERGED):
            self.say(f"{self.name(trial)}: diverged after epoch {epoch}/{self.epochs} (its loss or metrics became "
                     f"NaN or infinite; not retried; why: {trial.path}/{DIVERGED_FILE})")
            return
        ended = "finished" if epoch >= self.epochs else "stopped early by the scheduler at"
        self.say(f"{self.name(trial)}: {ended} epoch {epoch}/{self.epochs}: {final_metrics(last)}")

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        start = "its last checkpoint" if trial.checkpoint is not None else "the start (no checkpoint yet)"
        self.say(f"{self.name(trial)}: crashed; retry {trial.num_failures} of {self.max_failures} (--max-failures), "
                 f"from {start}")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.say(f"{self.name(trial)}: failed, crashed {trial.num_failures} time(s) (--max-failures "
                 f"{self.max_failures}); its error: {trial.path}/{TUNE_ERROR_FILE}")

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if self.clock() - self.last_summary >= self.every_s:
            self.say(self.summary(trials))

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.say(self.summary(trials))

    def summary(self, trials: list[Trial]) -> str:
        """``12/60 trials done, 4 running, 0 failed, elapsed 3m12s, best so far: ...`` (done: finished, stopped
        early or diverged; the split is shown when not all finished)."""
        self.last_summary = self.clock()
        done = [trial for trial in trials if trial.status == Trial.TERMINATED]
        diverged = sum(1 for trial in done if (trial.last_result or {}).get(DIVERGED))
        early = sum(1 for trial in done if not (trial.last_result or {}).get(DIVERGED)
                    and (trial.last_result or {}).get("epoch", 0) < self.epochs)
        split = f" ({len(done) - diverged - early} finished, {early} stopped early, {diverged} diverged)" \
            if early or diverged else ""
        running = sum(1 for trial in trials if trial.status == Trial.RUNNING)
        failed = sum(1 for trial in trials if trial.status == Trial.ERROR)
        line = (f"{len(done)}/{len(trials)} trials done{split}, {running} running, {failed} failed, "
                f"elapsed {elapsed(self.clock() - self.start)}")
        return line + best_so_far(done, self.name)


def final_metrics(last: dict[str, Any]) -> str:
    """A trial's last accuracies and objective, each under its own name (which model selection)."""
    return ", ".join(f"{key} {last[key]:.1f}" if key.startswith("acc") else f"{key} {last[key]:.4g}"
                     for key in FINAL_METRICS if isinstance(last.get(key), int | float))


def best_so_far(trials: list[Trial], name: Callable[[Trial], str]) -> str:
    """``, best so far: acc_labelfree 69.5 (trial ...)``: the finished trial with the highest objective (a search),
    else label-free accuracy; empty before any."""
    finished = [trial for trial in trials if not (trial.last_result or {}).get(DIVERGED)]
    for key in ("objective", "acc_labelfree"):
        scored = [trial for trial in finished if isinstance((trial.last_result or {}).get(key), int | float)]
        if scored:
            best = max(scored, key=lambda trial: trial.last_result[key])
            value = best.last_result[key]
            shown = f"{value:.1f}" if key.startswith("acc") else f"{value:.4g}"
            return f", best so far: {key} {shown} ({name(best)})"
    return ""


class ProgressTable(tune.CLIReporter):
    """Tune's status table (``--verbose``), without its ``Result logdir`` line: that is the driver's staging folder
    under /tmp/ray, not where the results are (the storage path, printed at the end)."""

    def _print(self, msg: str) -> None:
        super()._print("\n".join(line for line in msg.splitlines() if not line.startswith("Result logdir: ")))


def trial_folders(trial: Trial) -> list[Folder]:
    """Where the trial's files may be: the driver's copy (``local_path``) first, then its folder in the storage
    (``path`` on the storage's filesystem: a local path, or as an ``s3://``/``gs://`` URI)."""
    stored = storage_location(trial.storage.storage_filesystem, trial.path)
    return [*local_folders(trial.local_path), *([stored] if stored is not None else [])]


def console(launch: Launch, experiment: Experiment) -> tuple[ConsoleProgress, ProgressTable | None]:
    """The compact lines, and with ``--verbose`` Tune's status table."""
    progress = ConsoleProgress(experiment.epochs, experiment.parameter_columns, launch.max_failures)
    table = ProgressTable(metric_columns=experiment.metric_columns, parameter_columns=experiment.parameter_columns,
                          max_report_frequency=30) if launch.verbose else None
    return progress, table


def run_config(launch: Launch, experiment: Experiment) -> tune.RunConfig:
    """Storage, retries from the last checkpoint, the latest checkpoint kept, the console (:func:`console`, Tune's
    verbosity ``launch.verbose``), tracking."""
    logger = StudyLogger(experiment.tracking, launch.experiment, launch.tracking_uri, experiment.tracking_params)
    progress, table = console(launch, experiment)
    return tune.RunConfig(
        name=experiment.name,
        storage_path=launch.storage_path,
        failure_config=tune.FailureConfig(max_failures=launch.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=launch.keep_checkpoints),
        callbacks=[TuneTracking(logger), progress],
        progress_reporter=table,
        verbose=min(launch.verbose, 3),
        # a reused actor's trial directory is its working directory: sync it to the storage trial folder
        sync_config=tune.SyncConfig(sync_artifacts=True),
    )


def follow_console(restored: tune.RunConfig, launch: Launch, experiment: Experiment) -> None:
    """``Tuner.restore`` brings back the first run's ``RunConfig`` whole (Ray 2.60 takes none on restore): give it the
    console of the continuing launch (``--verbose``); its other callbacks (tracking) stay."""
    progress, table = console(launch, experiment)
    kept = [callback for callback in restored.callbacks or [] if not isinstance(callback, ConsoleProgress)]
    restored.callbacks = [*kept, progress]
    restored.progress_reporter, restored.verbose = table, min(launch.verbose, 3)


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
        recover_checkpoints(path)
        # resume_errored: an errored trial continues from its checkpoint under its own trial id (and MLflow run),
        # which gives what a restart would, since resuming is exact; restart_errored would make a new trial
        tuner = tune.Tuner.restore(path, runnable, resume_unfinished=True, resume_errored=True)
        follow_console(tuner._local_tuner.get_run_config(), launch, experiment)
    else:
        # reuse_actors: one worker process per concurrent slot, not per trial (it saves importing torch each time)
        tune_config = tune.TuneConfig(num_samples=experiment.num_samples, search_alg=experiment.searcher,
                                      scheduler=experiment.scheduler, max_concurrent_trials=launch.max_concurrent
                                      if experiment.searcher is None else None, reuse_actors=True)
        tuner = tune.Tuner(runnable, param_space=param_space(launch, experiment), tune_config=tune_config,
                           run_config=run_config(launch, experiment))
    tuner.fit()
    return trial_records(path, experiment.epochs)


def param_space(launch: Launch, experiment: Experiment) -> dict[str, Any]:
    """The experiment's trial configs, with ``checkpoint_every`` when ``--checkpoint-every`` is not 1."""
    if launch.checkpoint_every == 1:
        return experiment.param_space
    return {**experiment.param_space, "checkpoint_every": launch.checkpoint_every}


def recover_checkpoints(path: str) -> list[str]:
    """Before the experiment at ``path`` continues: for each unfinished trial whose checkpoint named in Tune's saved
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
