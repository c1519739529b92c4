"""Running a study and what it ends with: the mean±std tables of every printed model selection (built from Tune's
own results, so they print even when MLflow is down), where the Tune results and the MLflow runs are, and the
exit status.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from srdc import report
from srdc.base import threads_for_cpus
from srdc.harness.declarations import Study
from srdc.harness.options import Launch, preflight, resume_command, save_launch
from srdc.harness.plan import Plan, check_plan, param_space, plan_study
from srdc.harness.trainable import train_srdc
from srdc.harness.tuner import Experiment, Trainable, TrialStatus, fit, ray_session
from srdc.tracking import TrackingUnavailable, open_tracker

EXIT_INTERRUPTED = 130
PRINTED_SELECTIONS = ("oracle", "labelfree")
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
                 f"Tune results: {launch.path}", "", self.tables]
        if self.interrupted:
            lines.append(f"interrupted: continue it with: {resume_command(launch)}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        lines += tracking_lines(launch, plan.name, self.parent_run)
        return "\n".join(lines)


def tracking_lines(launch: Launch, study: str, parent_run: tuple[str, str] | None) -> list[str]:
    """Where the study's MLflow runs are, how to browse them and print the table again."""
    uri, experiment = launch.tracking_uri, launch.experiment
    parent = parent_run[1] if parent_run else "(not reachable now)"
    lines = [f"MLflow: tracking URI {uri}, experiment {experiment!r}, parent run {parent} "
             f"(tag srdc.study={study}; one child run per trial)"]
    if not uri.startswith("http"):
        lines.append(f"  browse: mlflow ui --backend-store-uri {uri}  # then http://127.0.0.1:5000")
    elif parent_run:
        lines.append(f"  browse: {uri}/#/experiments/{parent_run[0]}/runs/{parent_run[1]}")
    sync = "" if parent_run else f" --sync --storage-path {launch.storage_path}/{study}"
    lines.append(f"  table: srdc-report --study {study} --tracking-uri {uri} --experiment {experiment}{sync}")
    return lines


def summary_tables(study: Study, plan: Plan, records: list[dict[str, Any]]) -> str:
    """The tables of every printed selection: the study's own (``Study.tables``), else the mean±std tables, one per
    value of the grid fields besides the rows."""
    if study.tables is not None:
        return "\n".join(study.tables(records, selection, len(plan.seeds), plan.name)
                         for selection in PRINTED_SELECTIONS)
    split = [key for key in plan.grid if key != plan.rows]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for record in records:
        groups.setdefault(tuple(record.get(key) for key in split), []).append(record)
    texts = []
    for values, group in groups.items():
        label = plan.name + "".join(f" {key}={value}" for key, value in zip(split, values, strict=True))
        for selection in PRINTED_SELECTIONS:
            tables = report.aggregate_study(group, selection, plan.rows, len(plan.seeds), label)
            texts.append(report.render(tables, "md"))
    return "\n".join(texts)


def announce(warnings: list[str]) -> None:
    """Show the launch's warnings before the study starts (they are repeated in its closing lines)."""
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def announce_threads(launch: Launch) -> None:
    """Once the study's input is checked (bad input stays one line), its first line of its own: the threads torch
    uses in each trial (:func:`srdc.harness.trainable.trial_threads`)."""
    threads = threads_for_cpus(launch.cpus_per_trial)
    print(f"threads per trial: {threads} (from --cpus-per-trial {launch.cpus_per_trial:g})", file=sys.stderr)


def find_parent_run(launch: Launch, study: str) -> tuple[str, str] | None:
    """The experiment id and run id of the study's MLflow parent run; ``None`` when it cannot be read now."""
    try:
        found = open_tracker(launch.tracking_uri, launch.experiment).find_study(study)
    except TrackingUnavailable:
        return None
    return (found.experiment_id, found.run_id) if found is not None else None


def study_experiment(plan: Plan) -> Experiment:
    """The one Tune experiment of a study: a trial per grid cell, logged into the study's MLflow parent."""
    return Experiment(name=plan.name, param_space=param_space(plan), epochs=plan.epochs, tracking=plan.name,
                      tracking_params=plan.study_params, parameter_columns=[*GRID_COLUMNS, *plan.grid])


def run_study(study: Study, launch: Launch, trainable: Trainable = train_srdc) -> StudyOutcome:
    """Run (or with ``launch.resume`` continue) ``study``; ``trainable`` is for tests that wrap
    :func:`srdc.harness.trainable.train_srdc` (fault injection)."""
    warnings = preflight(launch)
    announce(warnings)
    plan = plan_study(study, launch)
    if not launch.resume:
        check_plan(plan)
        save_launch(launch)
    announce_threads(launch)
    with ray_session(launch.address):
        records = fit(launch, study_experiment(plan), trainable)
    return StudyOutcome(plan, launch, records, summary_tables(study, plan, records),
                        find_parent_run(launch, plan.name), warnings)
