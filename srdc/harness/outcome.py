"""Running a study and what it ends with: the mean±std tables of every printed model selection (built from Tune's
own results, so they print even when MLflow is down), the study's results (the tables of every selection in every
format and the study's figures, :mod:`srdc.figures.study`, drawn from the records and the trials' ``history.jsonl``,
in the sweep folder's ``results/`` and on the study's MLflow parent run, with its summary metrics, tags
and description), where the Tune results and the MLflow runs are, and the exit status.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from srdc import report
from srdc.base import TrialStatus, tabled_selections, threads_for_cpus
from srdc.errors import SRDCInputError
from srdc.figures.study import CURVE_METRIC, HISTORY, HISTORY_KEYS
from srdc.harness.declarations import SMOKE_NOTE, Study
from srdc.harness.lease import study_lease
from srdc.harness.options import Launch, preflight, resume_command, save_launch
from srdc.harness.plan import Plan, check_plan, grid_configs, param_space, plan_study
from srdc.harness.trainable import FIGURES_DEFERRED, train_srdc
from srdc.harness.tuner import Sweep, Trainable, fit, ray_session
from srdc.tables import with_stand_ins
from srdc.tracking import TrackingUnavailable, open_tracker, publish_results, sync_study
from srdc.tracking.results import write_study
from srdc.tracking.ui import LOCAL_UI, runs_table_link, ui_command
from srdc.trialfiles import RESULTS_FOLDER, copy_into_storage, read_histories, write_folder

EXIT_INTERRUPTED = 130
GRID_COLUMNS = ("task", "variant", "seed")


@dataclass
class StudyOutcome:
    """What a study run ended with."""

    plan: Plan
    launch: Launch
    records: list[dict[str, Any]]
    tables: str
    parent_run: tuple[str, str] | None
    warnings: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[TrialStatus, int]:
        statuses = [record["status"] for record in self.records]
        return {status: statuses.count(status.value) for status in TrialStatus}

    @property
    def interrupted(self) -> bool:
        return self.counts[TrialStatus.UNFINISHED] > 0

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 1 if self.counts[TrialStatus.FAILED] or self.counts[TrialStatus.DIVERGED] else 0

    def describe(self) -> str:
        """The closing lines: counts, tables, where the Tune results and the MLflow runs are."""
        plan, launch, counts = self.plan, self.launch, self.counts
        diverged = f"{counts[TrialStatus.DIVERGED]} diverged, " if counts[TrialStatus.DIVERGED] else ""
        lines = [f"study {plan.name}: {len(self.records)} trials, {counts[TrialStatus.FINISHED]} finished, "
                 f"{diverged}{counts[TrialStatus.FAILED]} failed, {counts[TrialStatus.UNFINISHED]} unfinished; "
                 f"Tune results: {launch.path}", "", *([SMOKE_NOTE, ""] if launch.smoke_test else []), self.tables,
                 f"every selection's tables (md, csv, LaTeX) and the study's figures (PNG) in "
                 f"{launch.path}/{RESULTS_FOLDER}/, all in one HTML page: "
                 f"{launch.path}/{RESULTS_FOLDER}/{report.RESULT_FILES['html']}"]
        deferred = sum(record.get(FIGURES_DEFERRED, 0) for record in self.records)
        if deferred:
            lines.append(f"figures: {deferred} trial run(s) kept their figures' record undrawn (drawing would take "
                         "more than their --set figures_budget share of their training); draw them into their "
                         f"folders and MLflow runs with: {shlex.join(report_command(launch, plan.name, sync=True))}")
        if self.interrupted:
            lines.append(f"interrupted: continue it with: {resume_command(launch)}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        lines += tracking_lines(launch, plan.name, self.parent_run)
        return "\n".join(lines)


def tracking_lines(launch: Launch, study: str, parent_run: tuple[str, str] | None) -> list[str]:
    """Where the study's MLflow runs are, how to browse them (the link that opens the study in the experiment's runs
    table, :func:`srdc.tracking.ui.runs_table_link`; for a local store after the lean UI command) and print the
    table again: commands that work as printed, with this Python (``python -m``), also without an activated
    environment."""
    uri, experiment = launch.tracking_uri, launch.experiment
    parent = parent_run[1] if parent_run else "(not reachable now)"
    lines = [f"MLflow: tracking URI {uri}, experiment {experiment!r}, parent run {parent} "
             f"(tag srdc.study={study}; one child run per trial)"]
    if not uri.startswith("http"):
        url = runs_table_link(LOCAL_UI, *parent_run) if parent_run else LOCAL_UI
        lines.append(f"  browse: {ui_command(sys.executable, uri)}  # then {url}")
    elif parent_run:
        lines.append(f"  browse: {runs_table_link(uri, *parent_run)}")
    lines.append(f"  table: {shlex.join(report_command(launch, study, sync=parent_run is None))}")
    return lines


def report_command(launch: Launch, study: str, sync: bool) -> list[str]:
    """The command that prints the study's tables from MLflow, with ``sync`` after backfilling the store from the
    study's folders (the ended trials' missing figures drawn first: :func:`srdc.tracking.sync.sync_study`)."""
    table = [sys.executable, "-m", "srdc.report_cli", "--study", study, "--tracking-uri", launch.tracking_uri,
             "--experiment", launch.experiment]
    return [*table, *(["--sync", "--storage-path", f"{launch.storage_path}/{study}"] if sync else [])]


def study_results(study: Study, plan: Plan, records: list[dict[str, Any]]) -> report.StudyResults:
    """The study's results: the tables of every selection, one set per value of the grid fields besides the rows
    (their Markdown the study's own, ``Study.tables``, where it has them), its tags and summary metrics; a smoke
    test's tasks named after those they stand in for (:func:`srdc.tables.with_stand_ins`)."""
    planned = len(plan.seeds)
    records = with_stand_ins(records, report.stand_ins_param(plan.study_params.get("stand_ins")))
    markdown = None if study.tables is None else {
        selection: study.tables(records, selection, planned, plan.name)
        for selection in tabled_selections(report.is_inductive(records))}
    split = [key for key in plan.grid if key != plan.rows]
    return report.study_results(records, plan.name, plan.rows, planned, split,
                                str(plan.study_params.get("paper_table", "")), markdown)


def with_trial_histories(launch: Launch, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records, each finished trial's with its target accuracy and validators by epoch
    (:data:`srdc.figures.study.HISTORY_KEYS`) from the history (:data:`srdc.trialfiles.HISTORY`) of its folder in the
    study's storage (a local folder, or ``s3://``/``gs://``)."""
    finished = [PurePosixPath(record["path"]).name for record in records if record["status"] == TrialStatus.FINISHED]
    histories = read_histories(launch.path, finished)
    found = []
    for record in records:
        rows = histories.get(PurePosixPath(record["path"]).name)
        if record["status"] != TrialStatus.FINISHED or rows is None:
            found.append(record)
            continue
        history = [{key: row[key] for key in HISTORY_KEYS if key in row} for row in rows if CURVE_METRIC in row]
        found.append({**record, HISTORY: history})
    return found


def summary_tables(study: Study, plan: Plan, records: list[dict[str, Any]]) -> str:
    """The tables of every printed selection (:func:`srdc.base.printed_selections`), as Markdown."""
    return study_results(study, plan, records).printed


def publish(launch: Launch, study: str, results: report.StudyResults) -> tuple[tuple[str, str] | None, str | None]:
    """Write ``results`` and the study's figures (:func:`srdc.figures.study.study_figures`, embedded in its HTML
    page) into the study's sweep folder (``results/``; a remote storage's through a local copy), then
    onto its MLflow parent run. Returns the parent run (experiment id, run id; ``None`` when there is none, or
    the store cannot be read now) and a warning when the store could not take the results."""
    remote = "://" in launch.path
    with tempfile.TemporaryDirectory(prefix="srdc-results-") as scratch:
        if remote:
            paths = write_study(results, Path(scratch))
            copy_into_storage(Path(scratch), f"{launch.path}/{RESULTS_FOLDER}")
        else:  # whole or not at all: an interrupted write leaves the earlier results as they were
            paths = write_folder(Path(launch.path) / RESULTS_FOLDER, lambda folder: write_study(results, folder))
        try:
            tracker = open_tracker(launch.tracking_uri, launch.experiment)
            found = tracker.find_study(study)
            if found is not None:
                publish_results(tracker, found.run_id, results, paths)
        except TrackingUnavailable as error:
            return None, (f"the study's results are not on its MLflow parent run ({error}); the srdc.report_cli "
                          f"--sync command below publishes them once the store is back")
    return (None if found is None else (found.experiment_id, found.run_id)), None


def announce(warnings: list[str]) -> None:
    """Show the launch's warnings before the study starts (they are repeated in its closing lines)."""
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def announce_start(launch: Launch, what: str) -> None:
    """Once the study's input is checked (bad input stays one line), its first line of its own: ``what`` it runs
    (``study NAME: 60 trials``) and the threads torch uses in each trial
    (:func:`srdc.harness.trainable.trial_threads`)."""
    threads = threads_for_cpus(launch.cpus_per_trial)
    print(f"{what}; threads per trial: {threads} (from --cpus-per-trial {launch.cpus_per_trial:g})", file=sys.stderr)


def find_parent_run(launch: Launch, study: str) -> tuple[str, str] | None:
    """The experiment id and run id of the study's MLflow parent run; ``None`` when it cannot be read now."""
    try:
        found = open_tracker(launch.tracking_uri, launch.experiment).find_study(study)
    except TrackingUnavailable:
        return None
    return (found.experiment_id, found.run_id) if found is not None else None


def backfill_ended_trials(launch: Launch, study: str, params: dict[str, Any]) -> str | None:
    """Before a sweep resumes: bring the study's MLflow runs up to date with its folders
    (:func:`srdc.tracking.sync.sync_study`; a missing parent run is made with ``params``), so that the trials that
    ended before a killed driver logged their end get their summary, files, the figures they drew and status, which
    no callback of the resumed sweep would send; the figures a trial deferred over its budget stay deferred (the
    closing lines name the command that draws them). One line says what was done; a store that cannot be reached is
    a warning, returned."""
    try:
        done = sync_study(launch.path, study, launch.tracking_uri, launch.experiment, params, draw_figures=False)
    except SRDCInputError:  # no trial folder yet: nothing ended
        return None
    except TrackingUnavailable as error:
        return (f"the MLflow runs of the trials that ended before this resume could not be checked ({error}); the "
                "srdc.report_cli --sync command below logs their ends and figures once the store is back")
    print(f"resume: MLflow checked against the {done.trials} trial folders: the ended trials' summaries, figures "
          f"and statuses logged where missing ({done.runs_created} runs created, {done.epochs_logged} epochs "
          "added)", file=sys.stderr)
    return None


def study_sweep(plan: Plan) -> Sweep:
    """The one sweep of a study: a trial per grid cell, logged into the study's MLflow parent."""
    return Sweep(name=plan.name, param_space=param_space(plan), epochs=plan.epochs, tracking=plan.name,
                      tracking_params=plan.study_params, planned=len(grid_configs(plan)),
                      parameter_columns=[*GRID_COLUMNS, *plan.grid])


def run_study(study: Study, launch: Launch, trainable: Trainable = train_srdc) -> StudyOutcome:
    """Run (or with ``launch.resume`` continue) ``study``; ``trainable`` is for tests that wrap
    :func:`srdc.harness.trainable.train_srdc` (fault injection). The driver holds the study's lease
    (:mod:`srdc.harness.lease`) throughout: a second driver of the same study is refused."""
    warnings = preflight(launch)
    announce(warnings)
    plan = plan_study(study, launch)
    if not launch.resume:
        check_plan(plan)
    with study_lease(launch.path):
        if not launch.resume:
            save_launch(launch)
        announce_start(launch, f"study {plan.name}: {len(grid_configs(plan))} trials")
        backfill = backfill_ended_trials(launch, plan.name, plan.study_params) if launch.resume else None
        if backfill is not None:
            announce([backfill])
            warnings = [*warnings, backfill]
        with ray_session(launch.address, launch.verbose, launch.dashboard):
            records = fit(launch, study_sweep(plan), trainable)
        results = study_results(study, plan, with_trial_histories(launch, records))
        parent_run, warning = publish(launch, plan.name, results)
    return StudyOutcome(plan, launch, records, results.printed, parent_run, [*warnings, *filter(None, [warning])])
