"""MLflow tracking of Ray Tune studies: one parent run per study, one child run per trial.

* :class:`MLflowStudyCallback` runs in the Tune driver. It logs each trial's per-epoch results (``step=epoch``,
  one ``MlflowClient.log_batch`` call per result), and at the trial's end its summary metrics, its
  ``summary.json``/``history.jsonl`` and the run status. Runs are found again by their tags, so a trial
  retry or a ``Tuner.restore`` re-attaches to the existing runs and never logs an epoch twice.
* The tracking server is optional: when it cannot be reached the callback warns once, keeps the unsent epochs
  and retries later; the study never stops for it. Tune's results on disk stay the source of truth, and
  :func:`sync_study` backfills MLflow from them (idempotent).

Runs carry these tags. Parent: ``srdc.study``, ``srdc.role=parent``; its params are the study's (``seeds``:
how many seeds are planned). Child: ``study``, ``dataset``, ``task``, ``variant``, ``seed``, ``setting``,
``trial_id``, ``srdc.role=child`` and ``mlflow.parentRunId``; its params are the trial's full config.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunStatus, ViewType
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH
from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS, EXPR_ERROR_FILE

from srdc.errors import SRDCInputError

logger = logging.getLogger(__name__)

DEFAULT_EXPERIMENT = "srdc-studies"
SUMMARY_KEYS = ("acc_last", "acc_best_oracle", "acc_labelfree")
# the files the trainable writes into its trial directory (srdc.runio.SUMMARY / srdc.runio.HISTORY)
SUMMARY_FILE = "summary.json"
HISTORY_FILE = "history.jsonl"
# the files Tune writes into each trial directory
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
# the metric whose steps say which epochs a run already holds (every logged result carries it)
STEP_KEY = "epoch"
# result keys Tune fills in itself: bookkeeping, not metrics
TUNE_KEYS = frozenset(AUTO_RESULT_KEYS) | {"trial_id", "done", "experiment_tag", "should_checkpoint"}
# fail fast instead of MLflow's default of 7 retries with backoff (minutes) and a 120 s timeout
HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
FINISHED = RunStatus.to_string(RunStatus.FINISHED)
FAILED = RunStatus.to_string(RunStatus.FAILED)
RUNNING = RunStatus.to_string(RunStatus.RUNNING)


def resolve_tracking_uri(uri: str | None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else an embedded SQLite store ``./mlflow.db`` (absolute path)."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def limit_http_retries() -> None:
    """Make MLflow HTTP calls fail within seconds when the server is down (variables the user set are kept)."""
    for name, value in HTTP_ENV.items():
        os.environ.setdefault(name, value)


def task_name(config: dict[str, Any]) -> str:
    """``"SOURCE->TARGET"`` from a trial config (its ``task`` field when source/target are absent)."""
    if "source" in config and "target" in config:
        return f"{config['source']}->{config['target']}"
    return str(config.get("task", ""))


def child_tags(study: str, trial_id: str, config: dict[str, Any], parent_run_id: str) -> dict[str, str]:
    """The tags of a trial's child run."""
    return {
        "study": study,
        "dataset": str(config.get("dataset", "")),
        "task": task_name(config),
        "variant": str(config.get("variant", "")),
        "seed": str(config.get("seed", "")),
        "setting": str(config.get("setting", "transductive")),
        "trial_id": trial_id,
        "srdc.role": "child",
        MLFLOW_PARENT_RUN_ID: parent_run_id,
        MLFLOW_RUN_NAME: f"{config.get('variant', 'trial')} {task_name(config)} seed{config.get('seed', '')} "
        f"({trial_id})",
    }


@dataclass(frozen=True)
class EpochRow:
    """One reported result as MLflow metrics: every numeric key, logged at ``step`` (the epoch)."""

    step: int
    timestamp_ms: int
    metrics: dict[str, float]


def epoch_row(result: dict[str, Any]) -> EpochRow | None:
    """The metrics of one Tune result; ``None`` for a result without an ``epoch`` key (not a per-epoch report)."""
    if STEP_KEY not in result:
        return None
    metrics = {
        key: float(value)
        for key, value in result.items()
        if key not in TUNE_KEYS and isinstance(value, numbers.Real) and not isinstance(value, bool)
    }
    timestamp_ms = int(result.get("timestamp", time.time()) * 1000)
    return EpochRow(step=int(result[STEP_KEY]), timestamp_ms=timestamp_ms, metrics=metrics)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of ``path``, one a line; a missing file or a half-written last line is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _quoted(value: str) -> str:
    """``value`` as a filter-string literal (MLflow filters take single-quoted strings)."""
    if "'" in value:
        raise SRDCInputError(f"{value!r}: study names and trial ids may not contain a single quote")
    return f"'{value}'"


def _batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class StudyStore:
    """The MLflow side of one study. Every method talks to the tracking store and raises when that fails."""

    def __init__(self, tracking_uri: str, experiment: str, study: str) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment = experiment
        self.study = study
        self._experiment_id: str | None = None

    def experiment_id(self) -> str:
        """The experiment's id; the experiment is created when missing."""
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            self._experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
        return self._experiment_id

    def search(self, filter_string: str) -> list[Run]:
        """All active runs of the experiment that match ``filter_string`` (every page)."""
        runs: list[Run] = []
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id()], filter_string, ViewType.ACTIVE_ONLY,
                                           page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def find_parent(self) -> Run | None:
        """The study's parent run (the oldest, should there ever be two)."""
        runs = self.search(f"tags.`srdc.study` = {_quoted(self.study)} AND tags.`srdc.role` = 'parent'")
        return min(runs, key=lambda run: run.info.start_time, default=None)

    def attach_parent(self, params: dict[str, Any]) -> Run:
        """The study's parent run, created with ``params`` when missing (or given them if it has none)."""
        found = self.find_parent()
        if found is not None:
            if not found.data.params:  # created, but the params never arrived
                self.log_params(found.info.run_id, params)
            return found
        tags = {"srdc.study": self.study, "srdc.role": "parent", MLFLOW_RUN_NAME: self.study}
        run = self.client.create_run(self.experiment_id(), tags=tags)
        self.log_params(run.info.run_id, params)
        return run

    def find_child(self, trial_id: str) -> Run | None:
        """The child run of trial ``trial_id`` (the oldest, should there ever be two)."""
        runs = self.search(f"tags.study = {_quoted(self.study)} AND tags.trial_id = {_quoted(trial_id)}")
        return min(runs, key=lambda run: run.info.start_time, default=None)

    def children(self) -> list[Run]:
        """Every child run of the study."""
        return self.search(f"tags.study = {_quoted(self.study)} AND tags.`srdc.role` = 'child'")

    def attach_child(self, parent_run_id: str, trial_id: str, config: dict[str, Any]) -> tuple[Run, bool]:
        """The trial's child run and whether it was created now (tagged, config logged as params)."""
        found = self.find_child(trial_id)
        if found is not None:
            if not found.data.params:  # created, but the params never arrived
                self.log_params(found.info.run_id, config)
            return found, False
        run = self.client.create_run(self.experiment_id(),
                                     tags=child_tags(self.study, trial_id, config, parent_run_id))
        self.log_params(run.info.run_id, config)
        return run, True

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """``params`` as MLflow params (values as strings), in batches of MLflow's limit."""
        items = [Param(key, str(value)) for key, value in params.items()]
        for batch in _batches(items, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=batch, synchronous=True)

    def logged_steps(self, run_id: str) -> set[int]:
        """The epochs ``run_id`` already holds."""
        return {metric.step for metric in self.client.get_metric_history(run_id, STEP_KEY)}

    def log_rows(self, run_id: str, rows: list[EpochRow]) -> None:
        """Log ``rows``: one ``log_batch`` call per row, or fewer when rows fit together in MLflow's limit."""
        batch: list[Metric] = []
        for row in rows:
            metrics = [Metric(key, value, row.timestamp_ms, row.step) for key, value in row.metrics.items()]
            if batch and len(batch) + len(metrics) > MAX_METRICS_PER_BATCH:
                self.client.log_batch(run_id, metrics=batch, synchronous=True)
                batch = []
            batch += metrics
        if batch:
            self.client.log_batch(run_id, metrics=batch, synchronous=True)

    def log_summary(self, run: Run, summary: dict[str, Any]) -> None:
        """The summary's ``acc_last``/``acc_best_oracle``/``acc_labelfree`` at step ``epochs``, unless logged."""
        latest = run.data.metrics
        metrics = [
            Metric(key, float(summary[key]), int(time.time() * 1000), int(summary.get("epochs", 0)))
            for key in SUMMARY_KEYS
            if key in summary and latest.get(key) != float(summary[key])
        ]
        if metrics:
            self.client.log_batch(run.info.run_id, metrics=metrics, synchronous=True)

    def log_files(self, run_id: str, folder: Path) -> None:
        """``summary.json`` and ``history.jsonl`` of ``folder`` as artifacts (skipped when already there)."""
        held = {info.path: info.file_size for info in self.client.list_artifacts(run_id)}
        for name in (SUMMARY_FILE, HISTORY_FILE):
            path = folder / name
            if path.is_file() and held.get(name) != path.stat().st_size:
                self.client.log_artifact(run_id, str(path))

    def set_status(self, run: Run, status: str) -> None:
        """Set the run's status (FINISHED/FAILED end it; RUNNING re-opens it) unless it already has it."""
        if run.info.status == status:
            return
        if status in (FINISHED, FAILED):
            self.client.set_terminated(run.info.run_id, status)
        else:
            self.client.update_run(run.info.run_id, status=status)


@dataclass
class _TrialLog:
    """What the callback still has to send to MLflow for one trial."""

    trial_id: str
    config: dict[str, Any]
    folders: list[Path]
    run_id: str | None = None
    logged: set[int] = field(default_factory=set)
    pending: list[EpochRow] = field(default_factory=list)
    final_status: str | None = None
    finalized: bool = False
    abandoned: bool = False

    def has_work(self) -> bool:
        if self.abandoned:
            return False
        return self.run_id is None or bool(self.pending) or (self.final_status is not None and not self.finalized)


def _trial_folders(trial: Any) -> list[Path]:
    """Where the trial's files may be: the driver's copy (``local_path``) first, then the storage (``path``)."""
    paths = [getattr(trial, "local_path", None), getattr(trial, "path", None)]
    return [Path(path) for path in paths if path and "://" not in str(path)]


def _refused(error: Exception) -> bool:
    """True when the store answered and refused the request (a client error other than rate limiting), False
    when it is unreachable or busy (connection errors and timeouts are ``INTERNAL_ERROR``s: HTTP status 500)."""
    if not isinstance(error, MlflowException):
        return False
    status = error.get_http_status_code()
    return 400 <= status < 500 and status != 429


class MLflowStudyCallback(Callback):
    """Ray Tune callback (runs in the driver) that mirrors a study into MLflow; see the module docstring.

    ``study_params`` become the parent run's params; include ``seeds`` (how many seeds are planned, or the
    list of them) so that reports can show cells with fewer finished seeds. ``retry_interval_s``: how long
    to wait before talking to an unreachable server again.
    """

    def __init__(self, study: str, experiment: str, tracking_uri: str, study_params: dict[str, Any],
                 retry_interval_s: float = 60.0) -> None:
        _quoted(study)
        self.study = study
        self.experiment = experiment
        self.tracking_uri = tracking_uri
        self.study_params = dict(study_params)
        self.retry_interval_s = retry_interval_s
        self._reset()

    def _reset(self) -> None:
        self._store: StudyStore | None = None
        self._parent_id: str | None = None
        self._trials: dict[str, _TrialLog] = {}
        self._retry_at = 0.0
        self._offline = False
        self._disabled = False

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the settings only (Tune pickles its callbacks with the Tuner); state is rebuilt on use."""
        keys = ("study", "experiment", "tracking_uri", "study_params", "retry_interval_s")
        return {key: self.__dict__[key] for key in keys}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # -- Tune hooks ---------------------------------------------------------------------------------------
    def setup(self, **info: Any) -> None:
        limit_http_retries()
        self._flush()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        state = self._trial_log(trial)
        if state.final_status is not None:  # restarted after its end: re-attach (and so re-open) its run
            state.run_id, state.final_status, state.finalized = None, None, False
        self._flush()

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        row = epoch_row(result)
        if row is not None:
            self._trial_log(trial).pending.append(row)
        self._flush()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._trial_log(trial).final_status = FINISHED
        self._flush()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._trial_log(trial).final_status = FAILED
        self._flush()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self._retry_at = 0.0
        self._flush()
        if self._parent_id is not None and not self._offline:
            self._try(self._finish_parent, "the study's parent run")
        unsent = [state.trial_id for state in self._trials.values() if state.has_work() or state.abandoned]
        if unsent:
            logger.warning("%d trial(s) of study %s are not fully in MLflow (%s); backfill them with "
                           "`srdc-report --study %s --sync --storage-path DIR`", len(unsent), self.study,
                           self.tracking_uri, self.study)

    # -- sending --------------------------------------------------------------------------------------------
    def _trial_log(self, trial: Any) -> _TrialLog:
        if trial.trial_id not in self._trials:
            self._trials[trial.trial_id] = _TrialLog(trial.trial_id, dict(trial.config), _trial_folders(trial))
        return self._trials[trial.trial_id]

    def _flush(self) -> None:
        """Send what is pending, unless the server was unreachable less than ``retry_interval_s`` ago."""
        if self._disabled or time.monotonic() < self._retry_at:
            return
        if self._parent_id is None:
            outcome = self._try(self._attach_parent, "the study's parent run")
            self._disabled = outcome == "refused"
            if outcome != "ok":
                return
        for state in self._trials.values():
            if not state.has_work():
                continue
            outcome = self._try(partial(self._send_trial, state), f"trial {state.trial_id}")
            state.abandoned = outcome == "refused"
            if outcome == "unreachable":
                return

    def _try(self, action: Callable[[], None], what: str) -> str:
        """Run ``action``: ``"ok"``, ``"refused"`` (the server rejected it) or ``"unreachable"`` (retry later)."""
        try:
            action()
        except (MlflowException, OSError) as error:  # requests' errors are OSErrors
            if _refused(error):
                logger.warning("MLflow at %s refused %s (%s); not logging it further", self.tracking_uri, what,
                               error)
                return "refused"
            if not self._offline:
                logger.warning("MLflow tracking at %s is unreachable (%s); the study goes on and logging "
                               "retries every %.0f s. Tune's results stay the source of truth.",
                               self.tracking_uri, error, self.retry_interval_s)
            self._offline = True
            self._retry_at = time.monotonic() + self.retry_interval_s
            return "unreachable"
        if self._offline:
            logger.warning("MLflow tracking at %s is reachable again; sending what was kept", self.tracking_uri)
            self._offline = False
        return "ok"

    def _attach_parent(self) -> None:
        if self._store is None:
            self._store = StudyStore(self.tracking_uri, self.experiment, self.study)
        parent = self._store.attach_parent(self.study_params)
        self._store.set_status(parent, RUNNING)
        self._parent_id = parent.info.run_id

    def _send_trial(self, state: _TrialLog) -> None:
        store = self._store
        if state.run_id is None:
            run, created = store.attach_child(self._parent_id, state.trial_id, state.config)
            state.logged = set() if created else store.logged_steps(run.info.run_id)
            if state.final_status is None:
                store.set_status(run, RUNNING)
            state.run_id = run.info.run_id
        rows = [row for row in state.pending if row.step not in state.logged]
        store.log_rows(state.run_id, rows)
        state.logged |= {row.step for row in rows}
        state.pending = []
        if state.final_status is not None and not state.finalized:
            finish_child(store, store.client.get_run(state.run_id), state.folders, state.final_status)
            state.finalized = True

    def _finish_parent(self) -> None:
        self._store.set_status(self._store.client.get_run(self._parent_id), FINISHED)


def finish_child(store: StudyStore, run: Run, folders: list[Path], status: str) -> None:
    """End a trial's run: summary metrics and ``summary.json``/``history.jsonl`` artifacts from the first of
    ``folders`` that holds the trainable's files, then ``status``."""
    folder = next((f for f in folders if (f / SUMMARY_FILE).is_file() or (f / HISTORY_FILE).is_file()), None)
    if folder is not None:
        summary = read_json(folder / SUMMARY_FILE)
        if summary is not None:
            store.log_summary(run, summary)
        store.log_files(run.info.run_id, folder)
    store.set_status(run, status)


# -- backfill from Tune's results on disk ----------------------------------------------------------------------
@dataclass(frozen=True)
class SyncReport:
    """What :func:`sync_study` did."""

    trials: int
    runs_created: int
    epochs_logged: int


def trial_folders(storage_dir: Path, study: str) -> list[Path]:
    """The trial folders (those with Tune's ``params.json``) of the experiment ``storage_dir`` (or of
    ``storage_dir/study``)."""
    for folder in (storage_dir, storage_dir / study):
        found = sorted(path.parent for path in folder.glob(f"*/{PARAMS_FILE}"))
        if found:
            return found
    raise SRDCInputError(f"no Tune trial folders (with {PARAMS_FILE}) in {storage_dir} or {storage_dir / study}; "
                         f"pass the study's Tune experiment directory as --storage-path")


def trial_status(folder: Path, config: dict[str, Any]) -> str | None:
    """FINISHED when the trainable's summary covers every configured epoch, FAILED when Tune wrote an error
    file, else ``None``: still running, interrupted, or stopped early by a scheduler (the disk does not say
    which, so such runs stay RUNNING in a backfill)."""
    summary = read_json(folder / SUMMARY_FILE)
    if summary is not None and "epochs" in config and summary.get("epochs", 0) >= int(config["epochs"]):
        return FINISHED
    if (folder / EXPR_ERROR_FILE).is_file():
        return FAILED
    return None


def count_seeds(configs: list[dict[str, Any]]) -> int:
    """How many distinct seeds the trial configs hold."""
    return len({str(config.get("seed")) for config in configs})


def sync_study(storage_dir: str | Path, study: str, tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT,
               study_params: dict[str, Any] | None = None) -> SyncReport:
    """Backfill MLflow from the Tune experiment directory ``storage_dir`` (or ``storage_dir/study``).

    Creates the missing parent and child runs, logs the epochs the runs lack, and for ended trials the summary
    metrics, the artifacts and the status. Running it twice changes nothing. A missing parent is created
    with ``study_params``, by default ``{"seeds": <number of distinct seeds on disk>}``. Trials that have not
    reported yet are skipped. MLflow errors propagate (the server must be up).
    """
    folders = trial_folders(Path(storage_dir), study)
    trials = [(folder, read_json(folder / PARAMS_FILE) or {}, read_json_lines(folder / RESULT_FILE))
              for folder in folders]
    trials = [(folder, config, results) for folder, config, results in trials if results]
    store = StudyStore(tracking_uri, experiment, study)
    params = study_params if study_params is not None else {"seeds": count_seeds([c for _, c, _ in trials])}
    parent = store.attach_parent(params)
    created = logged = 0
    for folder, config, results in trials:
        run, new = store.attach_child(parent.info.run_id, str(results[0]["trial_id"]), config)
        created += new
        held = set() if new else store.logged_steps(run.info.run_id)
        rows: dict[int, EpochRow] = {}
        for row in filter(None, map(epoch_row, results)):
            if row.step not in held:
                rows.setdefault(row.step, row)  # a retried trial reports its epochs again: keep the first
        store.log_rows(run.info.run_id, list(rows.values()))
        logged += len(rows)
        status = trial_status(folder, config)
        if status is not None:
            finish_child(store, store.client.get_run(run.info.run_id), [folder], status)
    if all(trial_status(folder, config) is not None for folder, config, _ in trials):
        store.set_status(store.client.get_run(parent.info.run_id), FINISHED)
    return SyncReport(trials=len(trials), runs_created=created, epochs_logged=logged)
