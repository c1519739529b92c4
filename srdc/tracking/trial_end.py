"""What a trial's end logs, live (:class:`srdc.tracking.logger.StudyLogger`) or in a backfill
(:func:`srdc.tracking.sync.sync_study`): its summary metrics, its ``summary.json``/``history.jsonl``, its figures
(``figures/*.png``: the trial draws them; a backfill first draws those its records lack) and the run's status, from
the first of its folders that holds the trainable's files (a remote one fetched first).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from srdc.base import TrialStatus
from srdc.figures.trial import DrawnFigures, draw_records, stale_records
from srdc.tracking.base import Tracker
from srdc.trialfiles import (
    FIGURE_FILES,
    FIGURES_DIR,
    HISTORY,
    SUMMARY,
    TRIAL_OUTPUTS,
    fetch_trial_files,
    holds_trial_files,
    read_json,
)

logger = logging.getLogger(__name__)

# draws the figures of the given record files (srdc.figures.trial.draw_records)
FigureDrawer = Callable[[list[Path]], DrawnFigures]
# where a trial's files are: a local folder, or the URI of its folder in a remote storage (``s3://``, ``gs://``)
Folder = Path | str


def local_folders(*paths: str | os.PathLike[str] | None) -> list[Path]:
    """The local ones of a trial's folders (e.g. Tune's ``trial.local_path``, then ``trial.path``): remote URIs
    (``s3://...``) and ``None`` are left out."""
    return [Path(path) for path in paths if path and "://" not in str(path)]


def trial_figures(folder: Path, draw: FigureDrawer) -> list[Path]:
    """The figures of the local trial folder ``folder``, after ``draw`` drew those of its records that lack them
    (:func:`srdc.figures.trial.stale_records`); an unreadable record is a warning."""
    stale = stale_records(folder)
    if stale:
        for message in draw(stale).unreadable:
            logger.warning("%s", message)
    return sorted(folder.glob(FIGURE_FILES))


def local_trial_folder(folders: list[Folder], scratch: Path) -> Path | None:
    """The first of ``folders`` that holds the trainable's files (a URI's fetched into ``scratch`` first)."""
    local = (f if isinstance(f, Path) else fetch_trial_files(f, scratch, TRIAL_OUTPUTS, on_error="warn")
             for f in folders)
    return next((f for f in local if holds_trial_files(f)), None)


def log_figures(tracker: Tracker, run_id: str, folder: Path) -> None:
    """The figures in the trial folder ``folder`` as artifacts of the run (artifact path ``figures``)."""
    figures = sorted(folder.glob(FIGURE_FILES))
    if figures:
        tracker.log_files(run_id, figures, artifact_path=FIGURES_DIR)


def end_run(tracker: Tracker, run_id: str, folder: Path | None, status: TrialStatus) -> None:
    """End a trial's run: summary metrics, ``summary.json``/``history.jsonl`` artifacts and the figures drawn so far
    from the trial folder ``folder`` (``None``: none holds the trainable's files), then ``status``."""
    if folder is not None:
        summary = read_json(folder / SUMMARY)
        if summary is not None:
            tracker.log_summary(run_id, summary)
        tracker.log_files(run_id, [path for path in (folder / SUMMARY, folder / HISTORY) if path.is_file()])
        log_figures(tracker, run_id, folder)
    tracker.set_status(run_id, status)


def finish_trial(tracker: Tracker, run_id: str, folders: list[Folder], status: TrialStatus,
                 draw: FigureDrawer | None = draw_records) -> None:
    """End a trial's run from the first of ``folders`` that holds the trainable's files (a URI's are fetched
    first), its missing figures drawn first by ``draw`` (:func:`trial_figures`; ``None``: the figures it has):
    :func:`end_run`."""
    with tempfile.TemporaryDirectory(prefix="srdc-trial-files-") as scratch:
        folder = local_trial_folder(folders, Path(scratch))
        if folder is not None and draw is not None:
            trial_figures(folder, draw)
        end_run(tracker, run_id, folder, status)
