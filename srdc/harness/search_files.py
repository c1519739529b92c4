"""A search's files, in its sweep folder's ``results/`` and on its MLflow parent run (under ``search/``):
the Optuna study's export (its trials, parameter importances and their plots), the trials' accuracies against each
searched parameter (:func:`srdc.figures.study.search_chart`), the printed report and the winner's config."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

from srdc.figures.study import SEARCH_FILE, search_chart
from srdc.harness.search_report import SearchOutcome, describe
from srdc.harness.search_setup import Setup, search_folder
from srdc.tracking import TrackingUnavailable, open_tracker

logger = logging.getLogger(__name__)


def log_scales(grid: dict[str, Any]) -> dict[str, bool]:
    """Each searched field of ``grid`` (Tune domains) -> whether it is sampled on a log scale (``loguniform``...)."""
    from ray.tune.search.sample import LogUniform, Quantized

    scales = {}
    for key, domain in grid.items():
        sampler = getattr(domain, "sampler", None)
        if isinstance(sampler, Quantized):
            sampler = sampler.get_sampler()
        scales[key] = isinstance(sampler, LogUniform)
    return scales


def optuna_files(setup: Setup, folder: Path) -> list[Path]:
    """The Optuna study's trials (CSV), parameter importances (JSON) and, with matplotlib, their plots."""
    import optuna

    study = optuna.load_study(study_name=setup.name, storage=setup.optuna_url)
    files = [folder / "optuna_trials.csv"]
    study.trials_dataframe().to_csv(files[0], index=False)
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return files
    files.append(folder / "optuna_importances.json")
    files[-1].write_text(json.dumps(optuna.importance.get_param_importances(study), indent=2) + "\n")
    try:
        import matplotlib
    except ImportError:
        return files
    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as plots

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, plot in (("optuna_history.png", plots.plot_optimization_history),
                           ("optuna_importances.png", plots.plot_param_importances)):
            axes = plot(study)
            axes.figure.savefig(folder / name, bbox_inches="tight")
            matplotlib.pyplot.close(axes.figure)
            files.append(folder / name)
    return files


def write_search_files(outcome: SearchOutcome) -> list[Path]:
    """Write the Optuna study's files (:func:`optuna_files`), the search's accuracy against each searched parameter
    (:func:`srdc.figures.study.search_chart`), the printed report and the winner into :func:`search_folder`."""
    setup = outcome.setup
    folder = search_folder(setup)
    folder.mkdir(parents=True, exist_ok=True)
    files = optuna_files(setup, folder)
    title = f"Search {setup.name}: the trials' accuracies against the searched parameters"
    files.append(search_chart(outcome.search.records, log_scales(setup.plan.grid), title, folder / SEARCH_FILE))
    files.append(folder / "search_report.md")
    files[-1].write_text(describe(outcome) + "\n")
    if outcome.winner is not None:
        files.append(folder / "best_config.json")
        files[-1].write_text(json.dumps(outcome.winner["params"], indent=2) + "\n")
    return files


def log_to_parent(outcome: SearchOutcome, files: list[Path]) -> None:
    """Log the search's files (:func:`write_search_files`) to its parent run, under ``search/``."""
    setup = outcome.setup
    if outcome.parent_run_id is None:
        logger.warning("MLflow is not reachable: the search's files and plots stay in %s only", search_folder(setup))
        return
    try:
        tracker = open_tracker(setup.launch.tracking_uri, setup.launch.experiment)
        tracker.log_files(outcome.parent_run_id, files, artifact_path="search")
    except TrackingUnavailable as error:
        logger.warning("could not log the search's files to MLflow (%s)", error)
