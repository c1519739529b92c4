"""Optuna searches over SRDC's hyper-parameters with Ray Tune: TPE proposes configs, ASHA stops weak trials early.

A :class:`~srdc.harness.declarations.Search` wraps a study whose ``grid`` holds Tune search domains; the study's
tasks and seeds are what ONE trial trains in lockstep (:mod:`srdc.harness.trainable`). :func:`run_search` runs up
to three phases, each a Tune experiment under the launch's storage, all tracked in MLflow:

1. **search** (Tune experiment NAME, MLflow parent NAME): ``--num-samples`` trials proposed by ``OptunaSearch``
   with a seeded TPE sampler (``--n-startup-trials`` random ones first), at most ``--max-concurrent`` at once
   (``ConcurrencyLimiter``), stopped early by ``ASHAScheduler`` (``time_attr`` epoch). A trial reports after every
   epoch the mean over its runs of the ``objective``: label-free by default (the best value so far of the
   validator behind ``acc_labelfree``), the paper's protocol with ``--objective oracle`` (the best target
   accuracy so far). The Optuna study is kept in ``NAME/optuna.db``; its trials, parameter importances and their
   plots, and the trials' accuracies against each searched parameter (:func:`srdc.figures.study.search_chart`) go
   into ``NAME/results/`` and to the MLflow parent as artifacts (``search/``). With ``--dataset features`` the runs
   train the head on cached backbone features (extracted once into ``--features-dir``): minutes.
2. **promotion** (only with ``--promote K``; Tune experiment NAME-promoted, same MLflow parent): the K best
   finished configs run again as full fine-tuning trials on the study's image dataset, same tasks and seeds.
3. **re-run** (study NAME-rerun): the winner (the best promoted config, else the best searched one) on fresh
   ``--rerun-seeds`` on the image dataset, through :func:`srdc.harness.outcome.run_study` with a :class:`Study`
   and a :class:`Launch` made here, tabled with both the oracle and the label-free epoch selection.

``--resume`` continues an interrupted search with its original settings (``Tuner.restore``: the searcher, the
scheduler and every trial come back; finished trials are not evaluated again, unfinished ones continue from
their last epoch), then runs or continues the later phases.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srdc.base import parse_task
from srdc.config import SRDCConfig
from srdc.errors import SRDCInputError
from srdc.figures.study import SEARCH_FILE, search_chart
from srdc.harness.declarations import Search, Study
from srdc.harness.options import (
    FEATURES,
    OBJECTIVES,
    Launch,
    SearchOptions,
    preflight,
    read_launch,
    resume_command,
    save_launch,
)
from srdc.harness.outcome import (
    EXIT_INTERRUPTED,
    StudyOutcome,
    announce,
    announce_threads,
    find_parent_run,
    run_study,
)
from srdc.harness.plan import Plan, check_plan, lockstep_space, plan_study
from srdc.harness.tuner import Experiment, TrialStatus, fit, ray_session
from srdc.tracking import TrackingUnavailable, open_tracker
from srdc.trialfiles import OPTUNA_DB, RESULTS_FOLDER

logger = logging.getLogger(__name__)

OBJECTIVE_TEXT = {"labelfree": "the best label-free validator value so far ({selector}; no target labels)",
                  "oracle": "the best target accuracy so far (target labels: the paper's protocol)"}
FEATURE_SEED = 0  # a backbone without pretrained weights is initialised from it (smoke tests)
PROGRESS_METRICS = {"epoch": "epoch", "objective": "objective", "acc_labelfree": "labelfree",
                    "acc_best_oracle": "best(oracle)"}


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
        return self.options.grace_period or max(1, self.plan.epochs // 10)


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


# -- the phases' experiments --------------------------------------------------------------------------------------
def feature_tasks(setup: Setup) -> dict[str, str]:
    """Each task as a ``features`` task (``DIR/A.npz->DIR/W.npz``); a missing domain's features are extracted
    first with the study's backbone (``backbone``/``weights`` config fields; ``auto``: the dataset's default)."""
    import torch

    from srdc.data import get_dataset
    from srdc.extract import ExtractionRequest, run_extraction

    plan = setup.plan
    default_folder = f"{setup.launch.storage_path}/features/{plan.dataset}"
    folder = Path(setup.options.features_dir or default_folder).expanduser().resolve()
    backbone = plan.fixed.get("backbone", SRDCConfig.backbone)
    if backbone == "auto":
        backbone = get_dataset(plan.dataset).default_backbone
    paths = {}
    for domain in sorted({domain for task in plan.tasks for domain in parse_task(task)}):
        paths[domain] = folder / f"{domain}.npz"
        if not paths[domain].is_file():
            torch.manual_seed(FEATURE_SEED)
            request = ExtractionRequest(
                dataset=plan.dataset, domain=domain, root=plan.fixed["data_root"], out=paths[domain],
                backbone=backbone, weights=plan.fixed.get("weights", SRDCConfig.weights),
                image_size=plan.fixed.get("image_size"), num_workers=plan.fixed.get("num_workers", 0),
                path_prefix=plan.fixed.get("path_prefix"))
            run_extraction(request, progress=False)
            print(f"extracted {backbone} features of {plan.dataset} {domain} into {paths[domain]}")
    return {task: "->".join(str(paths[domain]) for domain in parse_task(task)) for task in setup.plan.tasks}


def trial_space(setup: Setup, tier: str) -> dict[str, Any]:
    """The param space of a search (``tier``: ``features`` or the study's dataset) or promoted trial."""
    if tier == FEATURES:
        space = lockstep_space(setup.plan, feature_tasks(setup), FEATURES, setup.options.objective)
        return {**space, "backbone": "identity"}
    runs = {task: task for task in setup.plan.tasks}
    return lockstep_space(setup.plan, runs, tier, setup.options.objective)


def search_params(setup: Setup) -> dict[str, Any]:
    """The MLflow parent's params: the study's and the search's settings."""
    options = setup.options
    return {**setup.plan.study_params, "objective": options.objective, "num_samples": setup.num_samples,
            "search_dataset": setup.search_dataset, "sampler": "TPESampler", "n_startup_trials": setup.startup_trials(),
            "sampler_seed": options.sampler_seed, "asha.grace_period": setup.grace_period(),
            "asha.reduction_factor": options.reduction_factor, "max_concurrent": setup.launch.max_concurrent,
            "promote": options.promote, "rerun_seeds": list(options.rerun_seeds), "optuna_storage": setup.optuna_url}


def phase_experiment(setup: Setup, name: str, param_space: dict[str, Any], **tune_options: Any) -> Experiment:
    """A phase's Tune experiment, logged into the search's MLflow parent."""
    return Experiment(name=name, param_space=param_space, epochs=setup.plan.epochs, tracking=setup.name,
                      tracking_params=search_params(setup), parameter_columns=list(setup.plan.grid),
                      metric_columns=dict(PROGRESS_METRICS), **tune_options)


def search_experiment(setup: Setup) -> Experiment:
    """The search: OptunaSearch (seeded TPE, study in ``optuna.db``) behind a ConcurrencyLimiter, and ASHA."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    options = setup.options
    sampler = optuna.samplers.TPESampler(n_startup_trials=setup.startup_trials(), seed=options.sampler_seed)
    searcher = OptunaSearch(metric="objective", mode="max", sampler=sampler, study_name=setup.name,
                            storage=optuna.storages.RDBStorage(setup.optuna_url))
    scheduler = ASHAScheduler(time_attr="epoch", metric="objective", mode="max", max_t=setup.plan.epochs,
                              grace_period=setup.grace_period(), reduction_factor=options.reduction_factor)
    limited = ConcurrencyLimiter(searcher, max_concurrent=setup.launch.max_concurrent)
    return phase_experiment(setup, setup.name, trial_space(setup, setup.search_dataset),
                            num_samples=setup.num_samples, searcher=limited, scheduler=scheduler)


def promotion_experiment(setup: Setup, candidates: list[dict[str, Any]]) -> Experiment:
    """The promoted configs as full fine-tuning trials on the study's dataset (one trial each)."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    points = [candidate["params"] for candidate in candidates]
    generator = BasicVariantGenerator(points_to_evaluate=points, max_concurrent=setup.launch.max_concurrent)
    return phase_experiment(setup, setup.promoted_name, trial_space(setup, setup.plan.dataset),
                            num_samples=len(points), searcher=generator)


# -- running the phases ---------------------------------------------------------------------------------------
@dataclass
class Phase:
    """One finished (or interrupted) Tune experiment of the search: a record per trial."""

    name: str
    records: list[dict[str, Any]]
    interrupted: bool
    wall_s: float

    def best(self, count: int = 1, objective: str = "objective") -> list[dict[str, Any]]:
        """The ``count`` finished trials with the highest ``objective`` (another: ``objective_oracle``...)."""
        finished = [record for record in self.records if record["status"] == TrialStatus.FINISHED]
        return sorted(finished, key=lambda record: -record[objective])[:count]


def run_phase(setup: Setup, experiment: Experiment, expected: int) -> Phase:
    """Run a phase, or continue it when its folder holds one (finished trials are kept, unfinished ones go on)."""
    start = time.monotonic()
    records = fit(setup.launch, experiment)
    for record in records:
        record["params"] = {key: record[key] for key in setup.plan.grid}
    interrupted = len(records) < expected or any(r["status"] == TrialStatus.UNFINISHED for r in records)
    return Phase(experiment.name, records, interrupted, time.monotonic() - start)


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


def run_search(search: Search, launch: Launch) -> SearchOutcome:
    """Run (or with ``launch.resume`` continue) the search, the promotion and the re-run; see the module docstring."""
    warnings = preflight(launch)
    announce(warnings)
    setup = resolve(search, launch)
    if not launch.resume:
        check_plan(setup.plan)
        save_launch(launch)
    announce_threads(launch)
    with ray_session(launch.address):
        outcome = run_phases(setup)
    parent = find_parent_run(launch, setup.name)
    outcome.parent_run_id = parent[1] if parent is not None else None
    if not outcome.search.interrupted:
        log_to_parent(outcome, write_search_files(outcome))
    return outcome


def run_phases(setup: Setup) -> SearchOutcome:
    """Search, promote (``--promote K``), re-run the winner; stop after an interrupted phase."""
    outcome = SearchOutcome(setup, run_phase(setup, search_experiment(setup), setup.num_samples))
    if outcome.search.interrupted or not outcome.search.best():
        return outcome
    finalists = outcome.search
    if setup.options.promote:
        candidates = outcome.search.best(setup.options.promote)
        outcome.promoted = run_phase(setup, promotion_experiment(setup, candidates), len(candidates))
        if outcome.promoted.interrupted or not outcome.promoted.best():
            return outcome
        finalists = outcome.promoted
    outcome.winner = finalists.best()[0]
    start = time.monotonic()
    outcome.rerun = run_study(rerun_study(setup, outcome.winner), rerun_launch(setup))
    outcome.rerun_wall_s = time.monotonic() - start
    tag_rerun(setup)
    return outcome


# -- the search's files (the Optuna study's plots, the accuracy chart, the report), on its MLflow parent run ---------
def search_folder(setup: Setup) -> Path:
    """Where the search's files are: ``results/`` in its Tune experiment folder (a search's storage is local)."""
    return Path(setup.launch.path) / RESULTS_FOLDER


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


def tag_rerun(setup: Setup) -> None:
    """Tag the re-run study's parent run with the search it comes from (``srdc.search``)."""
    try:
        tracker = open_tracker(setup.launch.tracking_uri, setup.launch.experiment)
        parent = tracker.find_study(setup.rerun_name)
        if parent is not None:
            tracker.set_tag(parent.run_id, "srdc.search", setup.name)
    except TrackingUnavailable as error:
        logger.warning("could not tag the re-run's parent run in MLflow (%s)", error)


# -- the printed report -----------------------------------------------------------------------------------------
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
    plan, objective = setup.plan, setup.options.objective
    selector = plan.fixed.get("labelfree_selector", SRDCConfig.labelfree_selector)
    statuses = [record["status"] for record in phase.records]
    return (f"search {setup.name}: {len(statuses)} trials on {setup.search_dataset}, "
            f"{statuses.count(TrialStatus.FINISHED)} ran all {plan.epochs} epochs, "
            f"{statuses.count(TrialStatus.STOPPED)} stopped early by ASHA, {statuses.count(TrialStatus.DIVERGED)} "
            f"diverged, {statuses.count(TrialStatus.FAILED)} failed, {statuses.count(TrialStatus.UNFINISHED)} "
            f"unfinished. Objective {objective}: the mean over "
            f"{len(plan.tasks)} task(s) x {len(plan.seeds)} seed(s) of "
            + OBJECTIVE_TEXT[objective].format(selector=selector))


def best_lines(setup: Setup, phase: Phase) -> list[str]:
    """The best config, and the one the other objective would pick among the same trials."""
    best = phase.best()
    if not best:
        return ["no trial ran all epochs: no best config"]
    other = next(name for name in OBJECTIVES if name != setup.options.objective)
    (pick,) = phase.best(objective=f"objective_{other}")
    return [f"best config: {params_text(best[0]['params'])} (trial {best[0]['trial_id']}, objective "
            f"{best[0]['objective']:.4f})",
            f"  the {other} objective would pick {params_text(pick['params'])} (trial {pick['trial_id']}, "
            f"acc_best_oracle {pick['acc_best_oracle']:.1f}, acc_labelfree {pick['acc_labelfree']:.1f})"]


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
