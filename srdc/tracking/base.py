"""The tracking interface of studies, search and report: :class:`Tracker`, its value types and its errors.

A tracker holds one experiment of a tracking store. A study is one parent run there, each of its trials one child
run. Nothing here imports MLflow or Ray: :mod:`srdc.tracking.mlflow_tracker` is the MLflow implementation.
"""

from __future__ import annotations

import numbers
import os
import socket
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from srdc.base import NODE_KEY, NODES_KEY, TrialStatus
from srdc.errors import SRDCInputError

DEFAULT_EXPERIMENT = "srdc-studies"
# the metric whose steps say which epochs a run already holds (every per-epoch result carries it)
STEP_KEY = "epoch"
# the keys of a run's summary (srdc.trialfiles.SUMMARY) logged as its summary metrics: acc_last, acc_best_oracle,
# acc_labelfree(_<validator>)
SUMMARY_PREFIX = "acc_"
# result keys Ray Tune fills in itself (ray.tune.result.AUTO_RESULT_KEYS and a few more): bookkeeping, not metrics
TUNE_KEYS = frozenset({
    "training_iteration", "time_total_s", "time_this_iter_s", "time_since_restore", "timestamp", "date",
    "episodes_total", "timesteps_total", "timesteps_since_restore", "iterations_since_restore", "node_ip",
    "hostname", "pid", "config", "checkpoint_dir_name", "trial_id", "done", "experiment_tag", "should_checkpoint",
})
# the tags of a trial's run that say where it ran, from its results (srdc.harness.trainable): the Ray node of its
# latest result, and every node it ran on, comma-separated in order
NODE_TAGS = {NODE_KEY: "srdc.node", NODES_KEY: "srdc.nodes"}
# the tracking URI schemes MLflow serves (a database URI may name its driver: postgresql+psycopg2://)
TRACKING_SCHEMES = ("sqlite", "file", "http", "https", "postgresql", "mysql", "mssql", "databricks")
# fail fast instead of MLflow's default of 7 retries with backoff (minutes) and a 120 s timeout
HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
# MLflow's usage telemetry off in our processes: its client thread sets and unsets an environment variable
# (_MLFLOW_TELEMETRY_SESSION_ID) unguarded, and a race raised a KeyError out of a request (issue 21, case 13)
TELEMETRY_ENV = {"MLFLOW_DISABLE_TELEMETRY": "true"}


class TrackingUnavailable(Exception):
    """The tracking store could not do what was asked: unreachable, busy, or (:class:`TrackingRefused`) refusing.

    Every tracker method raises it (and only it) for a store failure; callers catch this one type.
    """


class TrackingRefused(TrackingUnavailable):
    """The store answered and refused the request (a client error other than rate limiting): retrying is futile."""


class TrackingServerFailed(TrackingUnavailable):
    """The store answered with an internal error (HTTP 5xx): it is up (starting it again is not the fix); the
    request may succeed when run again, and the server's log says what failed."""


@dataclass(frozen=True)
class StudyRef:
    """Where a study's parent run is."""

    experiment_id: str
    run_id: str


@dataclass(frozen=True)
class EpochRow:
    """One reported result as metrics: every numeric key, logged at ``step`` (the epoch)."""

    step: int
    timestamp_ms: int
    metrics: dict[str, float]


class Tracker(Protocol):
    """One experiment of a tracking store. Every method raises :class:`TrackingUnavailable` when the store fails."""

    def attach_study(self, study: str, params: dict[str, Any]) -> str:
        """The study's parent run id, the run created with ``params`` when missing; its status becomes RUNNING."""

    def find_study(self, study: str) -> StudyRef | None:
        """The study's parent run, ``None`` when there is none (nothing is created)."""

    def study_params(self, study: str) -> dict[str, str]:
        """The params of the study's parent run (``seeds``: the seeds planned); empty when it has no parent."""

    def known_studies(self) -> list[str]:
        """The names of the experiment's studies (those with a parent run), sorted."""

    def attach_trial(self, study: str, parent_id: str, trial_id: str, config: dict[str, Any]) -> tuple[str, bool]:
        """The trial's child run id and whether it was created now (tagged, ``config`` logged as its params)."""

    def logged_steps(self, run_id: str) -> set[int]:
        """The epochs the run already holds."""

    def log_rows(self, run_id: str, rows: list[EpochRow]) -> None:
        """Log per-epoch metrics, each row at its step."""

    def log_summary(self, run_id: str, summary: dict[str, Any]) -> None:
        """Log a trial's summary metrics (:func:`summary_metrics`) at step ``summary["epochs"]``, unless held."""

    def log_files(self, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
        """Attach files to the run (under ``artifact_path``); a file already held with the same size is skipped."""

    def set_status(self, run_id: str, status: TrialStatus) -> None:
        """Set the run's status: FINISHED/FAILED end it, RUNNING re-opens it."""

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        """Tag the run."""

    def log_study_results(self, run_id: str, files: list[Path], metrics: dict[str, float], tags: dict[str, str],
                          description: str) -> None:
        """A study's results on its parent run: ``files`` as artifacts (replacing those held), ``metrics``,
        ``tags``, and ``description`` (Markdown) as the run's description."""

    def study_trials(self, study: str) -> list[dict[str, Any]]:
        """One record per child run: its params (the trial config), ``task``, ``status`` (a :class:`TrialStatus`),
        ``run_id`` and summary metrics."""

    def epoch_history(self, run_id: str, keys: list[str]) -> list[dict[str, float]]:
        """The run's per-epoch values of ``keys``, one row per epoch in order (``epoch`` and the keys it holds)."""


def resolve_tracking_uri(uri: str | None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else an embedded SQLite store ``./mlflow.db`` (absolute path)."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def check_tracking_uri(uri: str) -> str | None:
    """Check ``uri`` before a study starts: an unknown scheme or a SQLite file that cannot be created is an input
    error (one line); a server that does not answer now is not (the study runs and ``srdc-report --sync``
    backfills it later), and the warning for it is returned."""
    scheme = urllib.parse.urlparse(uri).scheme.lower()
    base_scheme = scheme.split("+", 1)[0]
    if scheme and base_scheme not in TRACKING_SCHEMES:
        raise SRDCInputError(f"--tracking-uri {uri}: unknown scheme {scheme}://; use sqlite:///PATH, "
                             f"http(s)://HOST:PORT (mlflow_server/start.sh), postgresql://..., mysql://... or a folder")
    if base_scheme == "sqlite":
        folder = Path(uri.split(":///", 1)[-1]).expanduser().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise SRDCInputError(f"--tracking-uri {uri}: cannot create the database in {folder} (no such writable "
                                 f"folder); create it or choose another path")
        return None
    if base_scheme in ("http", "https", "postgresql", "mysql", "mssql"):
        return _unreachable(uri)
    return None


def _unreachable(uri: str) -> str | None:
    """A warning when nothing answers at ``uri``'s host and port within seconds, else ``None``."""
    parts = urllib.parse.urlparse(uri)
    default_port = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}
    port = parts.port or default_port[parts.scheme.split("+", 1)[0].lower()]
    try:
        socket.create_connection((parts.hostname or "localhost", port), timeout=3).close()
    except OSError as error:
        return (f"the tracking store at {uri} does not answer now ({error.strerror or error}); the study runs "
                f"without it and says so at the end: backfill it with srdc-report --sync once it is up")
    return None


def limit_http_retries() -> None:
    """Make MLflow HTTP calls fail within seconds when the server is down (variables the user set are kept)."""
    for name, value in HTTP_ENV.items():
        os.environ.setdefault(name, value)


def check_name(value: str) -> str:
    """``value`` (a study name or trial id) when a tracking store can look it up, else an input error."""
    if "'" in value:
        raise SRDCInputError(f"{value!r}: study names and trial ids may not contain a single quote")
    return value


def is_number(value: Any) -> bool:
    """True for ints and floats, False for booleans and everything else."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def summary_metrics(values: dict[str, Any]) -> dict[str, float]:
    """The numeric ``acc_*`` entries of ``values`` (a summary.json, or a run's latest metrics) as floats."""
    return {key: float(value) for key, value in values.items() if key.startswith(SUMMARY_PREFIX) and is_number(value)}


def task_name(config: dict[str, Any]) -> str:
    """``"SOURCE->TARGET"`` from a trial config (its ``task`` field when source/target are absent)."""
    if "source" in config and "target" in config:
        return f"{config['source']}->{config['target']}"
    return str(config.get("task", ""))


def node_tags(result: dict[str, Any]) -> dict[str, str]:
    """The :data:`NODE_TAGS` of a Tune result (empty for a result that names no node)."""
    return {tag: str(result[key]) for key, tag in NODE_TAGS.items() if key in result}


def epoch_row(result: dict[str, Any]) -> EpochRow | None:
    """The metrics of one Tune result; ``None`` for a result without an ``epoch`` key (not a per-epoch report)."""
    if STEP_KEY not in result:
        return None
    metrics = {key: float(value) for key, value in result.items() if key not in TUNE_KEYS and is_number(value)}
    timestamp_ms = int(result.get("timestamp", time.time()) * 1000)
    return EpochRow(step=int(result[STEP_KEY]), timestamp_ms=timestamp_ms, metrics=metrics)
