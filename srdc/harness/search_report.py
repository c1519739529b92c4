"""What a search ends with (:class:`SearchOutcome`: a :class:`Phase` of trial records per phase that ran, the
winner, the re-run's outcome) and its printed report (:func:`describe`): the trials of each phase, the best config
and the one the other selection would pick, the re-run's tables, wall times, where its files and runs are."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from srdc.base import SEARCH_SELECTIONS, SELECTIONS, TrialStatus
from srdc.config import SRDCConfig
from srdc.harness.options import resume_command
from srdc.harness.outcome import EXIT_INTERRUPTED, StudyOutcome
from srdc.harness.search_setup import Setup, search_folder


@dataclass
class Phase:
    """One finished (or interrupted) sweep of the search: a record per trial."""

    name: str
    records: list[dict[str, Any]]
    interrupted: bool
    wall_s: float

    def best(self, count: int = 1, metric: str = "objective") -> list[dict[str, Any]]:
        """The ``count`` finished trials with the highest ``metric`` (the objective; or another selection's:
        ``objective_oracle``...)."""
        finished = [record for record in self.records if record["status"] == TrialStatus.FINISHED]
        return sorted(finished, key=lambda record: -record[metric])[:count]


@dataclass
class SearchOutcome:
    """What a search ended with (phases not reached are ``None``)."""

    setup: Setup
    search: Phase
    promoted: Phase | None = None
    winner: dict[str, Any] | None = None
    rerun: StudyOutcome | None = None
    rerun_wall_s: float = 0.0
    parent_run_id: str | None = None

    @property
    def interrupted(self) -> bool:
        return (self.search.interrupted or (self.promoted is not None and self.promoted.interrupted)
                or (self.rerun is not None and self.rerun.interrupted))

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 1 if self.rerun is None else self.rerun.exit_code

    def describe(self) -> str:
        return describe(self)


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                    for key, value in params.items())


def trials_table(phase: Phase, keys: list[str]) -> str:
    """The phase's trials, best objective first (failed trials last)."""
    lines = ["| rank | trial | " + " | ".join(keys) + " | epochs | status | objective | acc_labelfree | "
             "acc_best_oracle |", "|---" * (len(keys) + 7) + "|"]
    ranked = sorted(phase.records, key=lambda record: -record.get("objective", float("-inf")))
    for rank, record in enumerate(ranked, 1):
        values = [f"{record['params'][key]:.4g}" for key in keys]
        scores = [f"{record['objective']:.4f}" if "objective" in record else "—"]
        scores += [f"{record[key]:.1f}" if key in record else "—" for key in ("acc_labelfree", "acc_best_oracle")]
        lines.append(f"| {rank} | {record.get('trial_id', '')} | " + " | ".join(values)
                     + f" | {record.get('epoch', -1)} | {record['status']} | " + " | ".join(scores) + " |")
    return "\n".join(lines)


def headline(setup: Setup, phase: Phase) -> str:
    """What the search ran: trial counts by status and the objective."""
    plan, selection = setup.plan, setup.options.objective
    selector = plan.fixed.get("labelfree_selector", SRDCConfig.labelfree_selector)
    statuses = [record["status"] for record in phase.records]
    return (f"search {setup.name}: {len(statuses)} trials on {setup.search_dataset}, "
            f"{statuses.count(TrialStatus.FINISHED)} ran all {plan.epochs} epochs, "
            f"{statuses.count(TrialStatus.STOPPED)} stopped early by ASHA, {statuses.count(TrialStatus.DIVERGED)} "
            f"diverged, {statuses.count(TrialStatus.FAILED)} failed, {statuses.count(TrialStatus.UNFINISHED)} "
            f"unfinished. Objective {selection}: the mean over "
            f"{len(plan.tasks)} task(s) x {len(plan.seeds)} seed(s) of "
            + SELECTIONS[selection].objective.format(selector=selector))


def best_lines(setup: Setup, phase: Phase) -> list[str]:
    """The best config, and the one the other selection would pick among the same trials."""
    best = phase.best()
    if not best:
        return ["no trial ran all epochs: no best config"]
    other = next(name for name in SEARCH_SELECTIONS if name != setup.options.objective)
    (alternative,) = phase.best(metric=f"objective_{other}")
    return [f"best config: {params_text(best[0]['params'])} (trial {best[0]['trial_id']}, objective "
            f"{best[0]['objective']:.4f})",
            f"  the {other} objective would pick {params_text(alternative['params'])} (trial "
            f"{alternative['trial_id']}, acc_best_oracle {alternative['acc_best_oracle']:.1f}, acc_labelfree "
            f"{alternative['acc_labelfree']:.1f})"]


def describe(outcome: SearchOutcome) -> str:
    """The closing report: the trials, the best config, the promotion, the re-run's tables, wall times."""
    setup, keys = outcome.setup, list(outcome.setup.plan.grid)
    launch = setup.launch
    lines = [headline(setup, outcome.search), "", trials_table(outcome.search, keys), ""]
    if outcome.interrupted:
        lines.append(f"interrupted: continue it with: {resume_command(launch)}")
    lines += best_lines(setup, outcome.search)
    walls = [f"search {outcome.search.wall_s:.0f} s"]
    if outcome.promoted is not None:
        lines += ["", f"promoted to full fine-tuning on {setup.plan.dataset} "
                      f"({launch.storage_path}/{outcome.promoted.name}):", "", trials_table(outcome.promoted, keys), ""]
        walls.append(f"promotion {outcome.promoted.wall_s:.0f} s")
    if outcome.winner is not None:
        lines.append(f"winner: {params_text(outcome.winner['params'])} (trial {outcome.winner['trial_id']}); "
                     f"re-run on seeds {', '.join(map(str, setup.options.rerun_seeds))}:")
    if outcome.rerun is not None:
        lines += ["", outcome.rerun.describe(), ""]
        walls.append(f"re-run {outcome.rerun_wall_s:.0f} s")
    lines.append("wall times: " + ", ".join(walls))
    if not outcome.search.interrupted:
        lines.append(f"the search's files (Optuna trials, importances and plots, accuracy against each searched "
                     f"parameter, this report): {search_folder(setup)}/")
    lines.append(f"Optuna study: {setup.optuna_url} (study {setup.name}); MLflow: {launch.tracking_uri}, experiment "
                 f"{launch.experiment!r}, parent run {outcome.parent_run_id or '(not reachable now)'} "
                 f"(artifacts under search/)")
    return "\n".join(lines)
