""":class:`MLflowTracker`: the :class:`srdc.tracking.base.Tracker` of an MLflow tracking store.

The only module of ``srdc`` that imports MLflow, and only when a tracker is made or used. Runs carry these tags.
Parent: ``srdc.study``, ``srdc.role=parent``, its name the study's; its params are the study's (``seeds``: the seeds
planned); once the study's results are published (:meth:`MLflowTracker.log_study_results`) also the study's tags
(``srdc.paper_table``, ``srdc.dataset``, ``srdc.setting``, ``srdc.seeds_planned``, ``srdc.seeds_finished``), its
tables as its description (``mlflow.note.content``), as metrics and as artifacts. Child: ``study``, ``dataset``,
``task``, ``variant``, ``seed``, ``setting``, ``trial_id``, ``srdc.role=child`` and ``mlflow.parentRunId`` (and,
set from its results, ``srdc.node``/``srdc.nodes``: the Ray nodes it ran on), named ``srdc A->W s0`` (with its
trial id when another run of the study has that name); its params are the trial's config. An experiment the
tracker creates is tagged as a classic machine-learning one (:data:`EXPERIMENT_KIND`; MLflow 3.17's UI reads the
workflow type from its link or the browser instead, :mod:`srdc.tracking.ui`) and, in an embedded
SQLite store, keeps its artifacts beside the database (:func:`artifact_location`), wherever the study runs from.
A run's status is a :class:`~srdc.base.TrialStatus`, written and read as MLflow's run status
(:data:`MLFLOW_STATUSES`, :data:`READ_STATUSES`). MLflow's errors leave as
:class:`~srdc.tracking.base.TrackingRefused` (a 4xx answer other than 429) or
:class:`~srdc.tracking.base.TrackingUnavailable` (anything else: unreachable, timed out, busy).
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from srdc.base import TrialStatus
from srdc.tracking.base import (
    STEP_KEY,
    TELEMETRY_ENV,
    EpochRow,
    StudyRef,
    TrackingRefused,
    TrackingServerFailed,
    TrackingUnavailable,
    check_name,
    summary_metrics,
    task_name,
)

if TYPE_CHECKING:
    from mlflow.entities import Run

# MLflow's tag names (mlflow.utils.mlflow_tags)
PARENT_RUN_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"  # a run's description, rendered as Markdown on its page
ACTIVE_ONLY = 1  # mlflow.entities.ViewType.ACTIVE_ONLY
# the experiment tag that marks an experiment as a classic one (mlflow/server/js: CUSTOM_MODEL_DEVELOPMENT,
# "Machine learning"); MLflow 3.17's UI picks its view from the link or the browser instead (srdc.tracking.ui)
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# the folder beside an embedded SQLite store's database that holds its experiments' artifacts
SQLITE_ARTIFACTS = "mlruns"
# the folder of a parent run's artifacts that holds the study's results
RESULTS_ARTIFACTS = "results"
# the statuses a run is set to, as MLflow's run statuses (mlflow.entities.RunStatus)
MLFLOW_STATUSES = {TrialStatus.RUNNING: "RUNNING", TrialStatus.FINISHED: "FINISHED", TrialStatus.FAILED: "FAILED"}
# MLflow's run statuses read back: those written as they were; a run killed (ended by hand, or by a client that
# died) or scheduled (never started) is unfinished
READ_STATUSES = {**{name: status for status, name in MLFLOW_STATUSES.items()},
                 "KILLED": TrialStatus.UNFINISHED, "SCHEDULED": TrialStatus.UNFINISHED}

# urllib3's words when a server's error answers exhaust the retries (urllib3.exceptions.ResponseError), and the
# status of a server that answered but failed inside (a proxy's 502-504 may stand for a server that is down)
RETRIED_STATUS = re.compile(r"too many (\d{3}) error responses")
INTERNAL_ERROR = 500

Result = TypeVar("Result")


def answered_status(error: Exception) -> int | None:
    """The HTTP status a server answered the failed request with, where ``error`` says: a
    :class:`~mlflow.exceptions.RestException`'s, or the one urllib3 names when the answers ran out of retries
    ("too many 500 error responses"); ``None`` when no server answered (unreachable, timed out) or none is named."""
    from mlflow.exceptions import RestException

    if isinstance(error, RestException):
        return error.get_http_status_code()
    named = RETRIED_STATUS.search(str(error))
    return int(named.group(1)) if named else None


def tracking_error(error: Exception) -> TrackingUnavailable:
    """``error`` (an MlflowException, or requests'/the OS's OSError) as the package's error, on one line: a server
    that answered with an internal error (HTTP 500) is :class:`~srdc.tracking.base.TrackingServerFailed`, not an
    unreachable one."""
    from mlflow.exceptions import MlflowException

    message = " ".join(str(error).split())
    if isinstance(error, MlflowException):
        status = error.get_http_status_code()
        if 400 <= status < 500 and status != 429:
            return TrackingRefused(message)
        if answered_status(error) == INTERNAL_ERROR:
            return TrackingServerFailed(message)
    return TrackingUnavailable(message)


def translated(method: Callable[..., Result]) -> Callable[..., Result]:
    """Let ``method`` raise the package's errors instead of MLflow's and requests' (requests' are OSErrors)."""
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Result:
        from mlflow.exceptions import MlflowException

        try:
            return method(*args, **kwargs)
        except (MlflowException, OSError) as error:
            raise tracking_error(error) from error
    return wrapper


def quoted(value: str) -> str:
    """``value`` as a filter-string literal (MLflow filters take single-quoted strings)."""
    return f"'{check_name(value)}'"


def batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def run_name(config: dict[str, Any]) -> str:
    """A trial's run name: ``srdc A->W s0`` (variant, task, seed)."""
    return f"{config.get('variant', 'trial')} {task_name(config)} s{config.get('seed', '')}"


def note(description: str, limit: int) -> str:
    """``description`` cut to at most ``limit`` characters (at a blank line where it can), saying where the rest is."""
    if len(description) <= limit:
        return description
    rest = f"\n\n(cut here: every table is in the artifacts, {RESULTS_ARTIFACTS}/)"
    kept = description[:limit - len(rest)]
    return kept[:kept.rfind("\n\n")] + rest if "\n\n" in kept else kept + rest


def child_tags(study: str, trial_id: str, config: dict[str, Any], parent_id: str, name: str) -> dict[str, str]:
    """The tags of a trial's child run, called ``name``."""
    seed, task = config.get("seed", ""), task_name(config)
    return {
        "study": study,
        "dataset": str(config.get("dataset", "")),
        "task": task,
        "variant": str(config.get("variant", "")),
        "seed": str(seed),
        "setting": str(config.get("setting", "transductive")),
        "trial_id": trial_id,
        "srdc.role": "child",
        PARENT_RUN_TAG: parent_id,
        RUN_NAME_TAG: name,
    }


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: for an embedded SQLite store (``sqlite:///PATH``) the folder
    :data:`SQLITE_ARTIFACTS` beside its database, one folder per experiment (its name, any character but letters,
    digits, ``-`` and ``_`` as ``_``), as a ``file://`` URI; ``None`` (MLflow's default) for any other store."""
    scheme, _, rest = tracking_uri.partition(":///")
    if scheme.split("+")[0] != "sqlite" or not rest:
        return None
    database = Path(rest.split("?")[0]).resolve()
    return (database.parent / SQLITE_ARTIFACTS / re.sub(r"[^\w-]", "_", experiment, flags=re.ASCII)).as_uri()


def oldest(runs: list[Run]) -> Run | None:
    """The first-started of ``runs`` (should a race ever have made two)."""
    return min(runs, key=lambda run: run.info.start_time, default=None)


class MLflowTracker:
    """The experiment ``experiment`` of the MLflow store at ``tracking_uri``; see the module docstring.

    Reading never creates the experiment; writing (:meth:`attach_study`, :meth:`attach_trial`) does.

    Lookups are cached per tracker: a study's child runs are searched once (at its first :meth:`attach_trial`;
    runs created later are added as they are created), and the status and artifact listing of every run it created
    or found are kept, so a trial costs no search, and ending it no ``get_run``/``list_artifacts``. One driver
    writes a study at a time (as its sweep folder already requires).
    """

    @translated
    def __init__(self, tracking_uri: str, experiment: str) -> None:
        # MLflow prints a "View run ... at: URL" line to stdout when a run ends: it would break `srdc-report
        # --format csv > FILE` and a study's own console (the closing lines say where the runs are)
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        for name, value in TELEMETRY_ENV.items():
            os.environ.setdefault(name, value)
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self._experiment_id: str | None = None
        self._trial_runs: dict[str, dict[str, Run]] = {}  # study -> trial id -> its child run, as found
        self._status: dict[str, str] = {}  # run id -> its MLflow status
        self._artifacts: dict[tuple[str, str | None], dict[str, int]] = {}  # (run id, folder) -> name -> size

    # -- studies ------------------------------------------------------------------------------------------------
    @translated
    def attach_study(self, study: str, params: dict[str, Any]) -> str:
        """The study's parent run id, created with ``params`` when missing (or given them if it has none);
        its status becomes RUNNING."""
        found = self._parent(study, create=True)
        if found is None:
            tags = {"srdc.study": study, "srdc.role": "parent", RUN_NAME_TAG: study}
            found = self.client.create_run(self._experiment(create=True), tags=tags)
            self._log_params(found.info.run_id, params)
        elif not found.data.params:  # created, but the params never arrived
            self._log_params(found.info.run_id, params)
        self._status[found.info.run_id] = found.info.status
        self._set_status(found.info.run_id, TrialStatus.RUNNING)
        return found.info.run_id

    @translated
    def find_study(self, study: str) -> StudyRef | None:
        """The study's parent run, ``None`` when there is none."""
        found = self._parent(study)
        return None if found is None else StudyRef(found.info.experiment_id, found.info.run_id)

    @translated
    def study_params(self, study: str) -> dict[str, str]:
        """The params of the study's parent run; empty when it has none."""
        found = self._parent(study)
        return {} if found is None else dict(found.data.params)

    @translated
    def known_studies(self) -> list[str]:
        """The names of the experiment's studies (those with a parent run), sorted."""
        parents = self._search("tags.`srdc.role` = 'parent'")
        return sorted({run.data.tags.get("srdc.study", "") for run in parents})

    @translated
    def study_trials(self, study: str) -> list[dict[str, Any]]:
        """One record per child run: params, ``task`` tag, ``status`` (:data:`READ_STATUSES`), ``run_id`` and the
        latest ``acc_*`` metrics."""
        return [{**run.data.params, "task": run.data.tags.get("task", ""), "status": READ_STATUSES[run.info.status],
                 "run_id": run.info.run_id, **summary_metrics(run.data.metrics)} for run in self._children(study)]

    @translated
    def epoch_history(self, run_id: str, keys: list[str]) -> list[dict[str, float]]:
        """The run's per-epoch values of ``keys`` (their metric histories, by step), one row per epoch in order."""
        rows: dict[int, dict[str, float]] = {}
        for key in keys:
            for metric in self.client.get_metric_history(run_id, key):
                rows.setdefault(metric.step, {"epoch": metric.step})[key] = metric.value
        return [rows[step] for step in sorted(rows)]

    # -- trials -------------------------------------------------------------------------------------------------
    @translated
    def attach_trial(self, study: str, parent_id: str, trial_id: str, config: dict[str, Any]) -> tuple[str, bool]:
        """The trial's child run id and whether it was created now (tagged, ``config`` logged as params)."""
        runs = self._study_trial_runs(study)
        found = runs.get(trial_id)
        if found is not None:
            if not found.data.params:  # created, but the params never arrived
                self._log_params(found.info.run_id, config)
            return found.info.run_id, False
        name = run_name(config)
        if any(other.data.tags.get(RUN_NAME_TAG) == name for other in runs.values()):
            name = f"{name} ({trial_id})"
        run = self.client.create_run(self._experiment(create=True),
                                     tags=child_tags(study, trial_id, config, parent_id, name))
        runs[trial_id] = run  # before its params: should they fail, the next attach finds the run and adds them
        self._status[run.info.run_id] = run.info.status
        self._artifacts[run.info.run_id, None] = {}
        self._log_params(run.info.run_id, config)
        return run.info.run_id, True

    @translated
    def logged_steps(self, run_id: str) -> set[int]:
        """The epochs the run already holds (the steps of its ``epoch`` metric)."""
        return {metric.step for metric in self.client.get_metric_history(run_id, STEP_KEY)}

    @translated
    def log_rows(self, run_id: str, rows: list[EpochRow]) -> None:
        """One ``log_batch`` call per row, or fewer when rows fit together in MLflow's limit."""
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        batch: list[Metric] = []
        for row in rows:
            metrics = [Metric(key, value, row.timestamp_ms, row.step) for key, value in row.metrics.items()]
            if batch and len(batch) + len(metrics) > MAX_METRICS_PER_BATCH:
                self.client.log_batch(run_id, metrics=batch, synchronous=True)
                batch = []
            batch += metrics
        if batch:
            self.client.log_batch(run_id, metrics=batch, synchronous=True)

    @translated
    def log_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        """The summary's ``acc_*`` values at step ``summary["epochs"]``, those the run does not hold already."""
        from mlflow.entities import Metric

        latest = self.client.get_run(run_id).data.metrics
        now_ms, step = int(time.time() * 1000), int(summary.get("epochs", 0))
        metrics = [Metric(key, value, now_ms, step) for key, value in summary_metrics(summary).items()
                   if latest.get(key) != value]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics, synchronous=True)

    @translated
    def log_files(self, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
        """The files as artifacts under ``artifact_path``; one held already with the same size is skipped."""
        key = (run_id, artifact_path)
        if key not in self._artifacts:
            self._artifacts[key] = {Path(info.path).name: info.file_size
                                    for info in self.client.list_artifacts(run_id, artifact_path)}
        held = self._artifacts[key]
        for path in map(Path, paths):
            size = path.stat().st_size
            if held.get(path.name) != size:
                self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)
                held[path.name] = size

    @translated
    def set_status(self, run_id: str, status: TrialStatus) -> None:
        """FINISHED/FAILED end the run, RUNNING re-opens it; nothing changes when it has that status already."""
        if run_id not in self._status:
            self._status[run_id] = self.client.get_run(run_id).info.status
        self._set_status(run_id, status)

    @translated
    def set_tag(self, run_id: str, key: str, value: str) -> None:
        """Tag the run."""
        self.client.set_tag(run_id, key, value)

    @translated
    def log_study_results(self, run_id: str, files: list[Path], metrics: dict[str, float], tags: dict[str, str],
                          description: str) -> None:
        """A study's results on its parent run: ``files`` as artifacts under ``results/`` (replacing those held),
        ``metrics`` at step 0 (those it does not hold with that value already), ``tags``, and ``description``
        (Markdown) as its description, cut to MLflow's longest tag value. Marks the run's experiment as a classic
        one when it has no kind yet (experiments made before the tracker did so at creation)."""
        from mlflow.entities import Metric, RunTag
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH, MAX_TAG_VAL_LENGTH

        run = self.client.get_run(run_id)
        experiment = self.client.get_experiment(run.info.experiment_id)
        if EXPERIMENT_KIND_TAG not in experiment.tags:
            self.client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        now_ms = int(time.time() * 1000)
        held = run.data.metrics
        changed = [Metric(key, value, now_ms, 0) for key, value in metrics.items() if held.get(key) != value]
        for batch in batches(changed, MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=batch, synchronous=True)
        run_tags = [RunTag(key, value) for key, value in tags.items()]
        run_tags.append(RunTag(NOTE_TAG, note(description, MAX_TAG_VAL_LENGTH)))
        for batch in batches(run_tags, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=batch, synchronous=True)
        for path in files:
            self.client.log_artifact(run_id, str(path), artifact_path=RESULTS_ARTIFACTS)

    # -- MLflow -------------------------------------------------------------------------------------------------
    def _experiment(self, create: bool = False) -> str | None:
        """The experiment's id; ``None`` when it is missing, unless ``create``."""
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                self._experiment_id = found.experiment_id
            elif create:
                self._experiment_id = self.client.create_experiment(
                    self.experiment, artifact_location(self.tracking_uri, self.experiment),
                    tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        return self._experiment_id

    def _search(self, filter_string: str, create: bool = False) -> list[Run]:
        """All active runs of the experiment that match ``filter_string`` (every page)."""
        experiment_id = self._experiment(create)
        if experiment_id is None:
            return []
        runs: list[Run] = []
        token = None
        while True:
            page = self.client.search_runs([experiment_id], filter_string, ACTIVE_ONLY, page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def _parent(self, study: str, create: bool = False) -> Run | None:
        return oldest(self._search(f"tags.`srdc.study` = {quoted(study)} AND tags.`srdc.role` = 'parent'", create))

    def _children(self, study: str, create: bool = False) -> list[Run]:
        return self._search(f"tags.study = {quoted(study)} AND tags.`srdc.role` = 'child'", create)

    def _study_trial_runs(self, study: str) -> dict[str, Run]:
        """The study's child runs by trial id (the oldest, should a race ever have made two), searched once."""
        if study not in self._trial_runs:
            runs: dict[str, Run] = {}
            for run in sorted(self._children(study, create=True), key=lambda run: run.info.start_time):
                runs.setdefault(run.data.tags.get("trial_id", ""), run)
                self._status[run.info.run_id] = run.info.status
            self._trial_runs[study] = runs
        return self._trial_runs[study]

    def _log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """``params`` as MLflow params (values as strings), in batches of MLflow's limit."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH

        items = [Param(key, str(value)) for key, value in params.items()]
        for batch in batches(items, MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=batch, synchronous=True)

    def _set_status(self, run_id: str, status: TrialStatus) -> None:
        """The run's MLflow status set to ``status``'s (:data:`MLFLOW_STATUSES`; another status is a ValueError)."""
        if status not in MLFLOW_STATUSES:
            raise ValueError(f"a run's status is one of {', '.join(MLFLOW_STATUSES)}, not {status}")
        name = MLFLOW_STATUSES[status]
        if self._status.get(run_id) == name:
            return
        if status == TrialStatus.RUNNING:
            self.client.update_run(run_id, status=name)
        else:
            self.client.set_terminated(run_id, name)
        self._status[run_id] = name


def open_tracker(tracking_uri: str, experiment: str) -> MLflowTracker:
    """The tracker of ``experiment`` at ``tracking_uri`` (an MLflow store)."""
    return MLflowTracker(tracking_uri, experiment)
