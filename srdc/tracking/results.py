"""A study's results on its parent run: the tables of every selection as files (:func:`write_results`), and those
files with the study's figures, the summary metrics, the tags and the printed tables as the run's description
(:func:`publish_results`).

A study publishes them when it ends, from Tune's records (:mod:`srdc.harness.outcome`); ``srdc-report --sync``
publishes them again from the tracking store's records and the runs' metric histories (:func:`publish_study`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from srdc.base import TrialStatus
from srdc.figures.study import HISTORY, HISTORY_KEYS, study_figures
from srdc.report import StudyResults, planned_seeds, stand_ins_param, study_results
from srdc.tables import with_stand_ins
from srdc.tracking.base import Tracker

# the parent run's params that name the study's grid dimensions (srdc.harness.plan): ``grid.KEY``
GRID_PREFIX = "grid."


def write_results(results: StudyResults, folder: Path, images: Sequence[Path] = ()) -> list[Path]:
    """Write the files of ``results`` (:meth:`StudyResults.files`, ``images`` embedded in the HTML page) into
    ``folder`` (made when missing); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in results.files(images).items():
        (folder / name).write_text(text, encoding="utf-8")
        paths.append(folder / name)
    return paths


def publish_results(tracker: Tracker, run_id: str, results: StudyResults, paths: list[Path]) -> None:
    """``results`` on the parent run ``run_id``: the files at ``paths`` (:func:`write_results` and the figures),
    the summary metrics, the tags, and the printed tables as its description."""
    tracker.log_study_results(run_id, paths, results.metrics, results.tags, results.printed)


def grid_fields(params: dict[str, str], rows: str) -> list[str]:
    """The study's grid dimensions besides ``rows``, from its parent run's params: the ``grid.KEY`` params that
    hold a JSON list (a search's sampled domains are no grid dimension)."""
    fields = []
    for key, value in params.items():
        name = key.removeprefix(GRID_PREFIX)
        if not key.startswith(GRID_PREFIX) or name == rows:
            continue
        try:
            values: Any = json.loads(value)
        except ValueError:  # "LogUniform (0.001, 0.1)": sampled, not a grid
            continue
        if isinstance(values, list):
            fields.append(name)
    return fields


def with_histories(tracker: Tracker, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records, each finished run's with its target accuracy and validators by epoch
    (:data:`srdc.figures.study.HISTORY_KEYS`, their metric histories in the store)."""
    return [{**record, HISTORY: tracker.epoch_history(record["run_id"], list(HISTORY_KEYS[1:]))}
            if record.get("status") == TrialStatus.FINISHED else record for record in records]


def store_results(tracker: Tracker, study: str, rows: str = "variant") -> StudyResults:
    """The results of ``study`` from the tracking store: its child runs' records with their histories (a smoke
    test's tasks named after those they stand in for), and the seeds planned, grid and paper table of its parent
    run's params."""
    params = tracker.study_params(study)
    records = with_stand_ins(tracker.study_trials(study), stand_ins_param(params.get("stand_ins")))
    return study_results(with_histories(tracker, records), study, rows,
                         planned_seeds(params.get("seeds")), grid_fields(params, rows), params.get("paper_table", ""))


def write_study(results: StudyResults, folder: Path) -> list[Path]:
    """The figures of ``results`` (:func:`srdc.figures.study.study_figures`) and its files, which embed them in
    the HTML page, written into ``folder``; their paths."""
    figures = study_figures(results, folder)
    return [*write_results(results, folder, figures), *figures]


def publish_study(tracker: Tracker, study: str, rows: str = "variant") -> bool:
    """Publish :func:`store_results` and its figures on the study's parent run; whether it has one."""
    found = tracker.find_study(study)
    if found is None:
        return False
    results = store_results(tracker, study, rows)
    with tempfile.TemporaryDirectory(prefix="srdc-results-") as folder:
        publish_results(tracker, found.run_id, results, write_study(results, Path(folder)))
    return True
