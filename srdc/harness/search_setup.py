"""A search (:class:`~srdc.harness.declarations.Search`) resolved against its launch (:class:`Setup`): its names,
trial counts, Optuna storage and folders, and its list of phases (:meth:`Setup.phases`), which both the run
(:func:`srdc.harness.search.run_phases`) and ``--dry-run`` (:mod:`srdc.harness.dryrun`) follow."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srdc.errors import SRDCInputError
from srdc.harness.declarations import Search, Study
from srdc.harness.options import FEATURES, Launch, SearchOptions, read_launch
from srdc.harness.plan import Plan, plan_study
from srdc.trialfiles import OPTUNA_DB, RESULTS_FOLDER

LAMBDA_BLIND_EPOCHS = 1
"""The epochs at a run's start whose lambda is 0 whatever the trial's schedule (:func:`default_grace_period`)."""

# the phases of a search, in order (:meth:`Setup.phases`)
SEARCH, PROMOTION, RERUN = "search", "promotion", "rerun"


@dataclass(frozen=True)
class PhaseSpec:
    """One phase of a search as its setup declares it: its ``kind`` (``search``, ``promotion``, ``rerun``), the
    name of its sweep (the re-run: of its study), the dataset its trials train on, and how many trials
    (``None`` for the re-run: its study's grid)."""

    kind: str
    name: str
    dataset: str
    trials: int | None = None


@dataclass(frozen=True)
class Setup:
    """A search resolved against its launch."""

    search: Search
    plan: Plan
    launch: Launch

    @property
    def options(self) -> SearchOptions:
        assert self.launch.search is not None
        return self.launch.search

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def num_samples(self) -> int:
        smoke = self.search.smoke_samples if self.launch.smoke_test else self.search.num_samples
        return self.options.num_samples or smoke

    @property
    def search_dataset(self) -> str:
        """What the search trains on: ``features``, or the study's dataset (its smoke stand-in with --smoke-test)."""
        return FEATURES if self.options.dataset == FEATURES else self.plan.dataset

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.launch.path}/{OPTUNA_DB}"

    @property
    def promoted_name(self) -> str:
        return f"{self.name}-promoted"

    @property
    def rerun_name(self) -> str:
        return f"{self.name}-rerun"

    def startup_trials(self) -> int:
        return self.options.n_startup_trials or default_startup_trials(self.num_samples)

    def grace_period(self) -> int:
        return self.options.grace_period or default_grace_period(self.plan.epochs)

    def phases(self) -> list[PhaseSpec]:
        """The search, the promotion (only with ``--promote K``), the winner's re-run: what runs, in order."""
        phases = [PhaseSpec(SEARCH, self.name, self.search_dataset, self.num_samples)]
        if self.options.promote:
            phases.append(PhaseSpec(PROMOTION, self.promoted_name, self.plan.dataset, self.options.promote))
        return [*phases, PhaseSpec(RERUN, self.rerun_name, self.plan.dataset)]


def default_grace_period(epochs: int) -> int:
    """ASHA's epochs before it may stop a trial: a tenth of the epochs, at least 2 (at most all of them). A run's
    first epoch trains with lambda_p at p = 0 (:func:`srdc.schedules.lambda_at`; with per-iteration steps, from 0
    upwards), which is 0 whatever the trial's lambda_scale and lambda_gamma: after one epoch the trials of a lambda
    search have trained (nearly) the same objective, and their results cannot rank their lambdas. Epoch 2 is the
    first trained with lambda > 0 in every trial.
    """
    return min(epochs, max(LAMBDA_BLIND_EPOCHS + 1, epochs // 10))


def default_startup_trials(num_samples: int) -> int:
    """Random trials before TPE models the results: a quarter of the budget, 3 to 10 (Optuna's default of 10
    would make a small search random)."""
    return min(10, max(3, num_samples // 4))


def resolve(search: Search, launch: Launch) -> Setup:
    """``search`` against ``launch``, checked (fresh re-run seeds, ``--promote`` with features, a local storage)."""
    if "://" in launch.path:
        raise SRDCInputError("a search keeps its Optuna study beside Tune's results: --storage-path must be local")
    setup = Setup(search, plan_study(search.study, launch), launch)
    reused = sorted(set(setup.options.rerun_seeds) & set(setup.plan.seeds))
    if reused:
        raise SRDCInputError(f"--rerun-seeds must be fresh: {', '.join(map(str, reused))} are searched seeds")
    if setup.options.promote and setup.options.dataset != FEATURES:
        raise SRDCInputError("--promote K runs the best feature-tier configs on images: add --dataset features")
    if not launch.resume:
        taken = [f"{launch.storage_path}/{name}" for name in (setup.promoted_name, setup.rerun_name)
                 if Path(f"{launch.storage_path}/{name}").exists()]
        if taken:
            raise SRDCInputError(f"{', '.join(taken)} already exist(s); pass --resume to continue search "
                                 f"{setup.name}, or --study-name")
    return setup


def rerun_study(setup: Setup, winner: dict[str, Any]) -> Study:
    """The winning config on fresh seeds, on the study's (image) dataset."""
    plan = setup.plan
    fixed = {key: value for key, value in plan.fixed.items() if key not in ("study", "dataset", "data_root")}
    return Study(name=setup.rerun_name, dataset=plan.dataset, tasks=plan.tasks, variants=plan.variants,
                 seeds=tuple(setup.options.rerun_seeds), config={**fixed, **winner["params"]},
                 task_config=plan.task_config, description=f"the best config of search {setup.name} "
                 f"(trial {winner['trial_id']})")


def rerun_launch(setup: Setup) -> Launch:
    """The re-run's launch: the search's locations and resources, its own study name, its whole grid."""
    name = setup.rerun_name
    saved = read_launch(f"{setup.launch.storage_path}/{name}")
    if saved is not None:
        return dataclasses.replace(saved, resume=True)
    return dataclasses.replace(setup.launch, study_name=name, smoke_test=False, epochs=None, seeds=None, tasks=None,
                               variants=None, overrides=(), max_concurrent=None, resume=False, search=None)


def search_folder(setup: Setup) -> Path:
    """Where the search's files are: ``results/`` in its sweep folder (a search's storage is local)."""
    return Path(setup.launch.path) / RESULTS_FOLDER
