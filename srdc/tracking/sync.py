"""Backfill a tracking store from a study's Tune results on disk or in a bucket: :func:`sync_study` (idempotent)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srdc.base import TrialStatus
from srdc.errors import SRDCInputError
from srdc.tracking.base import DEFAULT_EXPERIMENT, EpochRow, Tracker, epoch_row, node_tags
from srdc.tracking.mlflow_tracker import open_tracker
from srdc.tracking.trial_end import draw_records, finish_trial
from srdc.trial_config import tracked_config
from srdc.trialfiles import (
    BACKFILL_FILES,
    PARAMS_FILE,
    RESULT_FILE,
    SUMMARY,
    TUNE_ERROR_FILE,
    fetch_trial_files,
    read_json,
)


@dataclass(frozen=True)
class SyncReport:
    """What :func:`sync_study` did."""

    trials: int
    runs_created: int
    epochs_logged: int


@dataclass(frozen=True)
class TrialOnDisk:
    """One trial folder: its config (Tune's ``params.json``) and its results (``result.json``, one a line)."""

    folder: Path
    config: dict[str, Any]
    results: list[dict[str, Any]]

    @property
    def trial_id(self) -> str:
        return str(self.results[0]["trial_id"])


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


def trial_folders(storage_dir: Path, study: str) -> list[Path]:
    """The trial folders (those with Tune's ``params.json``) of the sweep folder ``storage_dir`` (or of
    ``storage_dir/study``)."""
    for folder in (storage_dir, storage_dir / study):
        found = sorted(path.parent for path in folder.glob(f"*/{PARAMS_FILE}"))
        if found:
            return found
    raise SRDCInputError(f"no Tune trial folders (with {PARAMS_FILE}) in {storage_dir} or {storage_dir / study}; "
                         f"pass the study's sweep folder as --storage-path")


def reported_trials(storage_dir: Path, study: str) -> list[TrialOnDisk]:
    """The trials on disk that have reported at least once."""
    trials = [TrialOnDisk(folder, read_json(folder / PARAMS_FILE) or {}, read_json_lines(folder / RESULT_FILE))
              for folder in trial_folders(storage_dir, study)]
    return [trial for trial in trials if trial.results]


def ended_run_status(folder: Path, config: dict[str, Any]) -> TrialStatus | None:
    """FINISHED when the trainable's summary covers every configured epoch, FAILED when Tune wrote an error
    file, else ``None``: still running, interrupted, or stopped early by a scheduler (the disk does not say
    which, so such runs stay RUNNING in a backfill)."""
    summary = read_json(folder / SUMMARY)
    if summary is not None and "epochs" in config and summary.get("epochs", 0) >= int(config["epochs"]):
        return TrialStatus.FINISHED
    if (folder / TUNE_ERROR_FILE).is_file():
        return TrialStatus.FAILED
    return None


def count_seeds(configs: list[dict[str, Any]]) -> int:
    """How many distinct seeds the trial configs hold."""
    return len({str(config.get("seed")) for config in configs})


def new_rows(results: list[dict[str, Any]], held: set[int]) -> list[EpochRow]:
    """The per-epoch rows of ``results`` whose epoch is not ``held``; an epoch reported twice (a retried trial
    reports its epochs again) keeps its first row."""
    rows: dict[int, EpochRow] = {}
    for row in filter(None, map(epoch_row, results)):
        if row.step not in held:
            rows.setdefault(row.step, row)
    return list(rows.values())


def sync_trial(tracker: Tracker, study: str, parent_id: str, trial: TrialOnDisk,
               draw_figures: bool = True) -> tuple[bool, int]:
    """Backfill one trial (its missing figures drawn first with ``draw_figures``): whether its run was created now,
    and how many epochs were logged."""
    run_id, created = tracker.attach_trial(study, parent_id, trial.trial_id, tracked_config(trial.config))
    rows = new_rows(trial.results, set() if created else tracker.logged_steps(run_id))
    tracker.log_rows(run_id, rows)
    for key, value in node_tags(trial.results[-1]).items():
        tracker.set_tag(run_id, key, value)
    status = ended_run_status(trial.folder, trial.config)
    if status is not None:
        finish_trial(tracker, run_id, [trial.folder], status, draw_records if draw_figures else None)
    return created, len(rows)


def sync_study(storage_dir: str | Path, study: str, tracking_uri: str, experiment: str = DEFAULT_EXPERIMENT,
               study_params: dict[str, Any] | None = None, draw_figures: bool = True,
               progress: Callable[[int, int], None] | None = None) -> SyncReport:
    """Backfill the tracking store from the sweep folder ``storage_dir`` (or ``storage_dir/study``), a
    local folder or a URI (``s3://``, ``gs://``: the trials' files are fetched first).

    Creates the missing parent and child runs, logs the epochs the runs lack, and for ended trials the summary
    metrics, the artifacts (with ``draw_figures`` the figures drawn here first, in-process, from the trial's records
    where the folder lacks them: those a trial deferred over its budget, or could not draw) and the status; the
    parent is FINISHED when every trial has ended. Running it twice changes nothing. A missing parent is created
    with ``study_params``, by default ``{"seeds": <number of distinct seeds on disk>}``. Trials that have not
    reported yet are skipped. ``progress(done, total)`` follows each trial. Raises
    :class:`~srdc.tracking.base.TrackingUnavailable` when the store fails (it must be up).
    """
    if "://" in str(storage_dir):
        with tempfile.TemporaryDirectory(prefix="srdc-sync-") as copy:
            fetched = fetch_trial_files(str(storage_dir), Path(copy), BACKFILL_FILES, on_error="raise")
            return sync_study(fetched, study, tracking_uri, experiment, study_params, draw_figures, progress)
    trials = reported_trials(Path(storage_dir), study)
    tracker = open_tracker(tracking_uri, experiment)
    found = tracker.find_study(study)
    if found is not None:
        parent_id = found.run_id
    else:
        params = study_params if study_params is not None else {"seeds": count_seeds([t.config for t in trials])}
        parent_id = tracker.attach_study(study, params)
    created = logged = 0
    for done, trial in enumerate(trials, 1):
        new, epochs = sync_trial(tracker, study, parent_id, trial, draw_figures)
        created += new
        logged += epochs
        if progress is not None:
            progress(done, len(trials))
    if all(ended_run_status(trial.folder, trial.config) is not None for trial in trials):
        tracker.set_status(parent_id, TrialStatus.FINISHED)
    return SyncReport(trials=len(trials), runs_created=created, epochs_logged=logged)
