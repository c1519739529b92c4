"""Optuna searches over SRDC's hyper-parameters with Ray Tune: TPE proposes configs, ASHA stops weak trials early.

A :class:`Search` wraps a :class:`srdc.studies.Study` whose ``grid`` holds Tune search domains (``lr``,
``lambda_scale``, ...); the study's tasks and seeds are what ONE trial runs. :func:`main` runs up to three
phases, each a Tune experiment under ``--storage-path``, all tracked in MLflow:

1. **search** (Tune experiment NAME, MLflow parent NAME): ``--num-samples`` trials proposed by Ray Tune's
   ``OptunaSearch`` with a seeded Optuna TPE sampler (``--n-startup-trials`` random trials first), at most
   ``--max-concurrent`` at once (``ConcurrencyLimiter``), stopped early by ``ASHAScheduler`` (``time_attr``
   epoch) when weak. A trial trains one run per (task, seed) in lockstep (:class:`MultiRun`) and reports after
   every epoch the mean over its runs of the ``objective`` (:func:`run_objective`): label-free by default (the
   validator behind ``acc_labelfree``: the best infomax so far), the paper's protocol with ``--objective
   oracle`` (the best target accuracy so far). The Optuna study is kept in ``NAME/optuna.db``; its trial
   history and parameter importances go to the MLflow parent as artifacts. With ``--dataset features`` the
   runs train the head on cached backbone features (extracted once into ``--features-dir``): minutes.
2. **promotion** (only with ``--promote K``; Tune experiment NAME-promoted, same MLflow parent): the K best
   finished configs run again as full fine-tuning trials on the study's image dataset, same tasks and seeds.
3. **re-run** (study NAME-rerun): the winner (the best promoted config, else the best searched one) on fresh
   ``--rerun-seeds`` on the image dataset through the normal study runner (:func:`srdc.studies.run_study`),
   tabled with both the oracle and the label-free epoch selection.

``--resume`` continues an interrupted search with its original settings (``Tuner.restore``: the searcher,
the scheduler and every trial come back; finished trials are not evaluated again, unfinished ones continue
from their last epoch), then runs or continues the later phases.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import optuna
import ray
import requests
import torch
from mlflow.exceptions import MlflowException
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.basic_variant import BasicVariantGenerator
from ray.tune.search.optuna import OptunaSearch
from ray.tune.search.sample import Domain

from srdc import studies
from srdc.config import SRDCConfig
from srdc.data import load_task
from srdc.data.base import get_dataset, parse_task
from srdc.data.features import ExtractionRequest, run_extraction
from srdc.errors import SRDCInputError
from srdc.runio import read_checkpoint, save_run, write_history, write_summary
from srdc.selection import LABELFREE_KEYS, summarize
from srdc.studies import Plan, StudyOutcome
from srdc.tracking import MLflowStudyCallback, StudyStore, limit_http_retries
from srdc.trainer import Trainer

logger = logging.getLogger(__name__)

OBJECTIVES = ("labelfree", "oracle")
OBJECTIVE_TEXT = {"labelfree": "the best label-free validator value so far ({selector}; no target labels)",
                  "oracle": "the best target accuracy so far (target labels: the paper's protocol)"}
# trial-config keys that describe the trial, not a run: the runs' tasks and seeds, the objective, display tags
SEARCH_KEYS = frozenset({"study", "tasks", "seeds", "objective", "task", "seed"})
MEAN_METRICS = ("acc_target", "infomax", "clustering_objective")
SUMMARY_METRICS = ("acc_last", "acc_best_oracle", "acc_labelfree")
RUN_METRICS = ("acc_target", "infomax", "acc_best_oracle", "acc_labelfree")
OPTUNA_DB = "optuna.db"
FEATURES = "features"
FEATURE_SEED = 0  # a backbone without pretrained weights is initialised from it (smoke tests)
FINISHED, STOPPED, FAILED, UNFINISHED = "FINISHED", "STOPPED", "FAILED", "UNFINISHED"
PROGRESS_METRICS = {"epoch": "epoch", "objective": "objective", "acc_labelfree": "labelfree",
                    "acc_best_oracle": "best(oracle)"}

T = TypeVar("T")
RngState = dict[str, Any]


# -- one trial: every (task, seed) run in lockstep -------------------------------------------------------------
def global_rng() -> RngState:
    """The process-wide random states a Trainer draws from (python, numpy, torch, CUDA)."""
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_global_rng(state: RngState) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Member:
    """One (task, seed) run of a trial with its own copy of the global random states: runs stepped in lockstep
    draw exactly the random numbers they would draw alone."""

    key: str
    trainer: Trainer
    rng: RngState

    def do(self, action: Callable[[Trainer], T]) -> T:
        """``action(trainer)`` with this run's random states in place."""
        set_global_rng(self.rng)
        try:
            return action(self.trainer)
        finally:
            self.rng = global_rng()


def run_key(config: SRDCConfig) -> str:
    """A run's name in metric keys and checkpoint folders: ``digits-digits_photo.seed0`` (features: file stems)."""
    names = [re.sub(r"[^\w.\- ]", "_", Path(side).name.removesuffix(".npz")) for side in (config.source, config.target)]
    return f"{names[0]}-{names[1]}.seed{config.seed}"


def run_objective(history: list[dict[str, Any]], objective: str, selector: str) -> float:
    """One run's objective after its latest epoch, higher is better: ``oracle``, its ``acc_best_oracle``;
    ``labelfree``, the best value of its label-free validator over epochs 1.. (negated for ``clustering``,
    which is better when lower): the value behind its ``acc_labelfree``."""
    if objective == "oracle":
        return summarize(history, selector)["acc_best_oracle"]
    key, better = LABELFREE_KEYS[selector]
    candidates = [row for row in history if row["epoch"] >= 1] or history
    value = better(row[key] for row in candidates)
    return value if better is max else -value


class MultiRun:
    """A search trial's runs: one :class:`Trainer` per (task, seed), trained epoch by epoch in lockstep.

    The trial config is a flat dict of :class:`SRDCConfig` fields plus ``tasks`` (a list of ``{"task": ...,
    FIELD: VALUE}``: each task with its own config fields), ``seeds``, ``objective`` and the display keys of
    ``SEARCH_KEYS``. The seeds of one task share its data.
    """

    def __init__(self, trial_config: dict[str, Any]) -> None:
        self.objective = trial_config["objective"]
        if self.objective not in OBJECTIVES:
            raise SRDCInputError(f"unknown objective {self.objective!r}; choose one of: {', '.join(OBJECTIVES)}")
        base = {key: value for key, value in trial_config.items() if key not in SEARCH_KEYS}
        self.members: list[Member] = []
        for entry in trial_config["tasks"]:
            configs = [SRDCConfig.from_dict({**base, **entry, "seed": seed}) for seed in trial_config["seeds"]]
            data = load_task(configs[0])
            for config in configs:
                trainer = Trainer(config, data)
                self.members.append(Member(run_key(config), trainer, global_rng()))

    @property
    def epoch(self) -> int:
        return self.members[0].trainer.epoch

    @property
    def started(self) -> bool:
        """Whether epoch 0 (the untrained models) is evaluated."""
        return self.members[0].trainer.plan is not None

    @property
    def done(self) -> bool:
        return all(member.trainer.done for member in self.members)

    def initialise(self) -> None:
        for member in self.members:
            member.do(Trainer.initialise)

    def step(self) -> None:
        """Train every run one epoch."""
        for member in self.members:
            member.do(Trainer.step)

    def metrics(self, epoch: int) -> dict[str, Any]:
        """The report of ``epoch``: the objective (mean over runs), both objectives, the means of the runs'
        metrics and running selections, the total wall time, and each run's metrics (``KEY.acc_target``...)."""
        histories = [member.trainer.history[:epoch + 1] for member in self.members]
        selectors = [member.trainer.config.labelfree_selector for member in self.members]
        summaries = [summarize(history, selector) for history, selector in zip(histories, selectors, strict=True)]
        objectives = {name: statistics.mean(run_objective(history, name, selector)
                                            for history, selector in zip(histories, selectors, strict=True))
                      for name in OBJECTIVES}
        metrics: dict[str, Any] = {"epoch": epoch, "objective": objectives[self.objective],
                                   **{f"objective_{name}": value for name, value in objectives.items()}}
        metrics.update({key: statistics.mean(history[-1][key] for history in histories) for key in MEAN_METRICS})
        metrics.update({key: statistics.mean(summary[key] for summary in summaries) for key in SUMMARY_METRICS})
        metrics["wall_s"] = sum(row["wall_s_epoch"] for history in histories for row in history)
        for member, history, summary in zip(self.members, histories, summaries, strict=True):
            values = {**summary, **history[-1]}
            metrics.update({f"{member.key}.{key}": values[key] for key in RUN_METRICS})
        return metrics

    def history(self) -> list[dict[str, Any]]:
        """The report of every epoch so far."""
        return [self.metrics(epoch) for epoch in range(self.epoch + 1)]

    def summary(self) -> dict[str, Any]:
        """What the trial directory's ``summary.json`` holds: the latest report, ``epochs``, each run's summary."""
        runs = {member.key: {k: v for k, v in member.trainer.summary().items() if k != "config"}
                for member in self.members}
        return {**self.metrics(self.epoch), "epochs": self.epoch, "runs": runs}

    def save(self, folder: Path) -> None:
        """Every run's complete state (and its history and summary) into ``folder/KEY``."""
        for member in self.members:
            member.do(lambda trainer, out=folder / member.key: save_run(out, trainer))

    def load(self, folder: Path) -> None:
        """Continue every run from ``folder`` (written by :meth:`save`)."""
        for member in self.members:
            state = read_checkpoint(folder / member.key)
            member.do(lambda trainer, saved=state: trainer.load_state_dict(saved))


def report_epoch(runs: MultiRun, trial_dir: Path, history: list[dict[str, Any]]) -> None:
    """Add the latest epoch's report to ``history``, write it and the summary into ``trial_dir``, and report it
    with a checkpoint of every run."""
    history.append(runs.metrics(runs.epoch))
    write_history(trial_dir, history)
    write_summary(trial_dir, runs.summary())
    with tempfile.TemporaryDirectory(prefix="srdc-search-checkpoint-") as folder:
        runs.save(Path(folder))
        tune.report(history[-1], checkpoint=tune.Checkpoint.from_directory(folder))


def train_search_trial(trial_config: dict[str, Any]) -> None:
    """The Ray Tune function trainable of search and promoted trials: a :class:`MultiRun` reported and
    checkpointed after every epoch; a retried or restored trial continues from its last checkpoint."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    runs = MultiRun(trial_config)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            runs.load(Path(folder))
    trial_dir = Path(tune.get_context().get_trial_dir())
    trial_dir.mkdir(parents=True, exist_ok=True)
    history = runs.history() if runs.started else []
    if not runs.started:
        runs.initialise()
        report_epoch(runs, trial_dir, history)
    while not runs.done:
        runs.step()
        report_epoch(runs, trial_dir, history)


# -- the declaration and the command line ---------------------------------------------------------------------
@dataclass(frozen=True)
class Search:
    """A search: ``study.grid`` holds the Tune search domains; ``study.tasks`` x ``study.seeds`` is what one
    trial runs (its objective is the mean over them); the rest of ``study`` is fixed.

    ``num_samples``/``smoke_samples``: trials of the search / of ``--smoke-test``. ``rerun_seeds``: the fresh
    seeds the winner is re-run on. ``max_concurrent``: trials at once (the concurrency limit).
    """

    study: studies.Study
    num_samples: int = 40
    smoke_samples: int = 8
    rerun_seeds: tuple[int, ...] = (100, 101, 102)
    max_concurrent: int = 4

    def __post_init__(self) -> None:
        name = self.study.name
        if not self.study.grid or not all(isinstance(v, Domain) for v in self.study.grid.values()):
            raise SRDCInputError(f"search {name}: study.grid must map each searched field to a Tune domain")
        if len(self.study.variants) != 1:
            raise SRDCInputError(f"search {name}: one variant per search, got {', '.join(self.study.variants)}")


def default_startup_trials(num_samples: int) -> int:
    """Random trials before TPE models the results: a quarter of the budget, 3 to 10 (Optuna's default of 10
    would make a small search random)."""
    return min(10, max(3, num_samples // 4))


def build_parser(search: Search) -> argparse.ArgumentParser:
    """The study runner's options (``--seeds``: the seeds of every trial) and the search's own."""
    study = search.study
    parser = studies.build_parser(study)
    parser.description = (f"Optuna search {study.name}: {', '.join(study.grid)} on {study.dataset} "
                          f"{', '.join(study.tasks)} (objective: the mean over tasks and seeds "
                          f"{', '.join(map(str, study.seeds))}). {study.description}")
    parser.add_argument("--objective", choices=OBJECTIVES, default="labelfree",
                        help="labelfree (default): the best label-free validator value (acc_labelfree's); "
                             "oracle: the best target accuracy (target labels, the paper's protocol)")
    parser.add_argument("--num-samples", type=int, default=None,
                        help=f"trials (default {search.num_samples}; with --smoke-test {search.smoke_samples})")
    parser.add_argument("--dataset", choices=(study.dataset, FEATURES), default=study.dataset,
                        help=f"{FEATURES}: search on cached backbone features (the head trains; minutes), "
                             f"extracted once into --features-dir (default: {study.dataset}'s images)")
    parser.add_argument("--features-dir", default=None,
                        help="the DOMAIN.npz feature files (default: STORAGE/features/DATASET); missing ones "
                             "are extracted with the study's backbone")
    parser.add_argument("--promote", type=int, default=0, metavar="K",
                        help="run the K best configs again as full fine-tuning trials (with --dataset features)")
    parser.add_argument("--rerun-seeds", type=int, nargs="+", default=list(search.rerun_seeds),
                        help="the fresh seeds the winning config is re-run on (default: %(default)s)")
    parser.add_argument("--n-startup-trials", type=int, default=None,
                        help="random trials before TPE (default: a quarter of --num-samples, 3 to 10)")
    parser.add_argument("--sampler-seed", type=int, default=0, help="the TPE sampler's seed (default 0)")
    parser.add_argument("--grace-period", type=int, default=None,
                        help="ASHA: epochs before a trial may be stopped (default: a tenth of the epochs, >= 1)")
    parser.add_argument("--reduction-factor", type=int, default=2,
                        help="ASHA: 1/factor of the trials go on at each rung (default 2)")
    parser.set_defaults(max_concurrent=search.max_concurrent)
    parser.epilog = (f"Here --max-concurrent defaults to {search.max_concurrent}: the searcher's concurrency limit "
                     f"(TPE proposes from finished trials), and --seeds are the seeds of every trial.")
    return parser


@dataclass(frozen=True)
class Setup:
    """A search resolved against the command line."""

    plan: Plan
    args: argparse.Namespace
    num_samples: int
    storage: str

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def epochs(self) -> int:
        return int(self.plan.fixed["epochs"])

    @property
    def path(self) -> str:
        return f"{self.storage}/{self.name}"

    @property
    def promoted_path(self) -> str:
        return f"{self.storage}/{self.name}-promoted"

    @property
    def rerun_name(self) -> str:
        return f"{self.name}-rerun"

    @property
    def search_dataset(self) -> str:
        """What the search trains on: ``features``, or the study's dataset (its smoke stand-in with --smoke-test)."""
        return FEATURES if self.args.dataset == FEATURES else self.plan.dataset

    @property
    def optuna_url(self) -> str:
        return f"sqlite:///{self.path}/{OPTUNA_DB}"

    @property
    def tracking_uri(self) -> str:
        return self.args.tracking_uri

    def startup_trials(self) -> int:
        return self.args.n_startup_trials or default_startup_trials(self.num_samples)

    def grace_period(self) -> int:
        return self.args.grace_period or max(1, self.epochs // 10)


def resolve(search: Search, argv: list[str] | None) -> Setup:
    """Parse ``argv``, locations resolved (with ``--resume``: the saved launch settings), and check it."""
    parser = build_parser(search)
    args = parser.parse_args(argv)
    name = studies.study_name(search.study, args)
    path = studies.experiment_path(args, name)
    if "://" in path:
        raise SRDCInputError("a search keeps its Optuna study beside Tune's results: --storage-path must be local")
    if args.resume:
        if not tune.Tuner.can_restore(path):
            raise SRDCInputError(f"--resume: no search {name} in {path}; drop --resume to start it")
        args = studies.load_launch(path, args, parser.parse_args([]))
    else:
        args = studies.resolve_locations(args)
    storage = args.storage_path.rstrip("/")
    plan = studies.plan_study(search.study, args)
    reused = sorted(set(args.rerun_seeds) & set(plan.seeds))
    if reused:
        raise SRDCInputError(f"--rerun-seeds must be fresh: {', '.join(map(str, reused))} are searched seeds")
    if args.promote and args.dataset != FEATURES:
        raise SRDCInputError("--promote K runs the best feature-tier configs on images: add --dataset features")
    num_samples = args.num_samples or (search.smoke_samples if args.smoke_test else search.num_samples)
    setup = Setup(plan, args, num_samples, storage)
    if not args.resume:
        taken = [path for path in (setup.path, setup.promoted_path, f"{storage}/{setup.rerun_name}")
                 if Path(path).exists()]
        if taken:
            raise SRDCInputError(f"{', '.join(taken)} already exist(s); pass --resume to continue search {name}, "
                                 f"or --study-name")
    return setup


# -- param spaces -------------------------------------------------------------------------------------------------
def feature_tasks(setup: Setup) -> dict[str, str]:
    """Each task as a ``features`` task (``DIR/A.npz->DIR/W.npz``); a missing domain's features are extracted
    first with the study's backbone (``backbone``/``weights`` config fields; ``auto``: the dataset's default)."""
    plan, args = setup.plan, setup.args
    folder = Path(args.features_dir or f"{setup.storage}/features/{plan.dataset}").expanduser().resolve()
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
    return {task: "->".join(str(paths[domain]) for domain in parse_task(task)) for task in plan.tasks}


def trial_space(setup: Setup, tier: str) -> dict[str, Any]:
    """Tune's param space of the search (``tier``: ``features`` or the study's dataset) or of a promotion."""
    plan = setup.plan
    runs = feature_tasks(setup) if tier == FEATURES else {task: task for task in plan.tasks}
    fixed = {**plan.fixed, "dataset": tier}
    if tier == FEATURES:
        fixed["backbone"] = "identity"
    tasks = [{"task": runs[task], **plan.task_config.get(task, {})} for task in plan.tasks]
    return {**fixed, **plan.grid, "variant": plan.variants[0], "tasks": tasks, "seeds": list(plan.seeds),
            "objective": setup.args.objective, "task": " + ".join(plan.tasks),
            "seed": "+".join(map(str, plan.seeds))}


def search_params(setup: Setup) -> dict[str, Any]:
    """The MLflow parent's params: the study's and the search's settings."""
    args = setup.args
    return {**setup.plan.study_params, "objective": args.objective, "num_samples": setup.num_samples,
            "search_dataset": setup.search_dataset, "sampler": "TPESampler", "n_startup_trials": setup.startup_trials(),
            "sampler_seed": args.sampler_seed, "asha.grace_period": setup.grace_period(),
            "asha.reduction_factor": args.reduction_factor, "max_concurrent": args.max_concurrent,
            "promote": args.promote, "rerun_seeds": list(args.rerun_seeds), "optuna_storage": setup.optuna_url}


# -- running the phases -------------------------------------------------------------------------------------------
def run_config(setup: Setup, name: str) -> tune.RunConfig:
    """Checkpoints, retries, the progress table, the MLflow callback (the search's parent for every phase)."""
    args = setup.args
    tracking = MLflowStudyCallback(setup.name, args.experiment, setup.tracking_uri, search_params(setup))
    reporter = tune.CLIReporter(metric_columns=PROGRESS_METRICS, parameter_columns=list(setup.plan.grid),
                                max_report_frequency=30)
    return tune.RunConfig(name=name, storage_path=setup.storage,
                          failure_config=tune.FailureConfig(max_failures=args.max_failures),
                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1), callbacks=[tracking],
                          progress_reporter=reporter, verbose=1, sync_config=tune.SyncConfig(sync_artifacts=True))


def trainable(args: argparse.Namespace) -> Any:
    return tune.with_resources(train_search_trial, studies.trial_resources(args))


def search_tuner(setup: Setup) -> tune.Tuner:
    """The search: OptunaSearch (seeded TPE, study in ``optuna.db``) behind a ConcurrencyLimiter, and ASHA."""
    args = setup.args
    sampler = optuna.samplers.TPESampler(n_startup_trials=setup.startup_trials(), seed=args.sampler_seed)
    searcher = OptunaSearch(metric="objective", mode="max", sampler=sampler, study_name=setup.name,
                            storage=optuna.storages.RDBStorage(setup.optuna_url))
    scheduler = ASHAScheduler(time_attr="epoch", metric="objective", mode="max", max_t=setup.epochs,
                              grace_period=setup.grace_period(), reduction_factor=args.reduction_factor)
    tune_config = tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, max_concurrent=args.max_concurrent),
                                  scheduler=scheduler, num_samples=setup.num_samples, reuse_actors=True)
    return tune.Tuner(trainable(args), param_space=trial_space(setup, setup.search_dataset), tune_config=tune_config,
                      run_config=run_config(setup, setup.name))


def promotion_tuner(setup: Setup, candidates: list[dict[str, Any]]) -> tune.Tuner:
    """The promoted configs as full fine-tuning trials on the study's dataset (one trial each)."""
    points = [candidate["params"] for candidate in candidates]
    generator = BasicVariantGenerator(points_to_evaluate=points, max_concurrent=setup.args.max_concurrent)
    tune_config = tune.TuneConfig(search_alg=generator, num_samples=len(points), reuse_actors=True)
    return tune.Tuner(trainable(setup.args), param_space=trial_space(setup, setup.plan.dataset),
                      tune_config=tune_config, run_config=run_config(setup, Path(setup.promoted_path).name))


@dataclass
class Phase:
    """One finished (or interrupted) Tune experiment of the search: a record per trial."""

    name: str
    path: str
    records: list[dict[str, Any]]
    interrupted: bool
    wall_s: float

    def best(self, count: int = 1, objective: str = "objective") -> list[dict[str, Any]]:
        """The ``count`` finished trials with the highest ``objective`` (another: ``objective_oracle``...)."""
        finished = [record for record in self.records if record["status"] == FINISHED]
        return sorted(finished, key=lambda record: -record[objective])[:count]


def trial_status(result: tune.Result, epochs: int) -> str:
    """FINISHED (every epoch), STOPPED (early, by ASHA: Tune marked its last result done), FAILED or UNFINISHED
    (interrupted)."""
    metrics = result.metrics or {}
    if result.error is not None:
        return FAILED
    if metrics.get("epoch", -1) >= epochs:
        return FINISHED
    return STOPPED if metrics.get("done") else UNFINISHED


def trial_records(results: tune.ResultGrid, setup: Setup) -> list[dict[str, Any]]:
    """One record per trial: id, searched params, status, epochs, objectives, mean accuracies."""
    records = []
    for result in results:
        config, metrics = dict(result.config or {}), dict(result.metrics or {})
        epoch = int(metrics.get("epoch", -1))
        status = trial_status(result, setup.epochs)
        record = {"trial_id": metrics.get("trial_id", ""), "status": status, "epoch": epoch, "path": result.path,
                  "params": {key: config[key] for key in setup.plan.grid}}
        scores = ("objective", *(f"objective_{name}" for name in OBJECTIVES), *SUMMARY_METRICS)
        record.update({key: metrics[key] for key in scores if key in metrics})
        records.append(record)
    return records


def fit_phase(setup: Setup, path: str, expected: int, make_tuner: Callable[[], tune.Tuner]) -> Phase:
    """Run a phase, or continue it when ``path`` holds one (finished trials are kept, unfinished ones continue)."""
    start = time.monotonic()
    if tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, trainable(setup.args), resume_unfinished=True, resume_errored=True)
    else:
        tuner = make_tuner()
    records = trial_records(tuner.fit(), setup)
    interrupted = len(records) < expected or any(record["status"] == UNFINISHED for record in records)
    return Phase(Path(path).name, path, records, interrupted, time.monotonic() - start)


def rerun_argv(setup: Setup) -> list[str]:
    """The study runner's command line for the re-run (``--resume`` when it exists already)."""
    args = setup.args
    argv = ["--storage-path", setup.storage, "--study-name", setup.rerun_name, "--tracking-uri", setup.tracking_uri,
            "--experiment", args.experiment, "--data-root", args.data_root, "--cpus-per-trial",
            str(args.cpus_per_trial), "--max-failures", str(args.max_failures)]
    if args.gpus_per_trial is not None:
        argv += ["--gpus-per-trial", str(args.gpus_per_trial)]
    if tune.Tuner.can_restore(f"{setup.storage}/{setup.rerun_name}"):
        argv.append("--resume")
    return argv


def rerun_study(setup: Setup, winner: dict[str, Any]) -> studies.Study:
    """The winning config on fresh seeds, on the study's (image) dataset."""
    plan = setup.plan
    fixed = {key: value for key, value in plan.fixed.items() if key not in ("study", "dataset", "data_root")}
    return studies.Study(
        name=setup.rerun_name, dataset=plan.dataset, tasks=plan.tasks, variants=plan.variants,
        seeds=tuple(setup.args.rerun_seeds), config={**fixed, **winner["params"]}, task_config=plan.task_config,
        smoke=None, description=f"the best config of search {setup.name} (trial {winner['trial_id']})")


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
            return studies.EXIT_INTERRUPTED
        return 1 if self.rerun is None else self.rerun.exit_code


def run_search(search: Search, argv: list[str] | None = None) -> SearchOutcome:
    """Run (or with ``--resume`` continue) the search, the promotion and the re-run; see the module docstring."""
    setup = resolve(search, argv)
    if not setup.args.resume:
        studies.check_plan(setup.plan)
        studies.save_launch(setup.path, setup.args)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    limit_http_retries()
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init()
    try:
        outcome = run_phases(setup)
    finally:
        if started_ray:
            ray.shutdown()
    parent = studies.find_parent_run(setup.tracking_uri, setup.args.experiment, setup.name)
    outcome.parent_run_id = parent[1] if parent is not None else None
    if not outcome.search.interrupted:
        log_to_parent(outcome)
    return outcome


def run_phases(setup: Setup) -> SearchOutcome:
    """Search, promote (``--promote K``), re-run the winner; stop after an interrupted phase."""
    outcome = SearchOutcome(setup, fit_phase(setup, setup.path, setup.num_samples, lambda: search_tuner(setup)))
    if outcome.search.interrupted or not outcome.search.best():
        return outcome
    finalists = outcome.search
    if setup.args.promote:
        candidates = outcome.search.best(setup.args.promote)
        outcome.promoted = fit_phase(setup, setup.promoted_path, len(candidates),
                                     lambda: promotion_tuner(setup, candidates))
        if outcome.promoted.interrupted or not outcome.promoted.best():
            return outcome
        finalists = outcome.promoted
    outcome.winner = finalists.best()[0]
    start = time.monotonic()
    outcome.rerun = studies.run_study(rerun_study(setup, outcome.winner), rerun_argv(setup))
    outcome.rerun_wall_s = time.monotonic() - start
    tag_rerun(setup)
    return outcome


# -- MLflow: the Optuna study's plots and the search's report on the parent run -------------------------------------
def optuna_files(setup: Setup, folder: Path) -> list[Path]:
    """The Optuna study's trials (CSV), parameter importances (JSON) and, with matplotlib, their plots."""
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


def log_to_parent(outcome: SearchOutcome) -> None:
    """Log the Optuna study's files, the winner and the printed report to the search's parent run."""
    setup = outcome.setup
    if outcome.parent_run_id is None:
        logger.warning("MLflow is not reachable: the Optuna study's plots stay in %s only", setup.optuna_url)
        return
    client = StudyStore(setup.tracking_uri, setup.args.experiment, setup.name).client
    with tempfile.TemporaryDirectory(prefix="srdc-search-") as folder:
        files = optuna_files(setup, Path(folder))
        (Path(folder) / "search_report.md").write_text(describe(outcome) + "\n")
        files.append(Path(folder) / "search_report.md")
        if outcome.winner is not None:
            files.append(Path(folder) / "best_config.json")
            files[-1].write_text(json.dumps(outcome.winner["params"], indent=2) + "\n")
        try:
            for path in files:
                client.log_artifact(outcome.parent_run_id, str(path), artifact_path="search")
        except (MlflowException, requests.exceptions.RequestException, OSError) as error:
            logger.warning("could not log the search's files to MLflow (%s)", error)


def tag_rerun(setup: Setup) -> None:
    """Tag the re-run study's parent run with the search it comes from (``srdc.search``)."""
    try:
        store = StudyStore(setup.tracking_uri, setup.args.experiment, setup.rerun_name)
        parent = store.find_parent()
        if parent is not None:
            store.client.set_tag(parent.info.run_id, "srdc.search", setup.name)
    except (MlflowException, requests.exceptions.RequestException, OSError) as error:
        logger.warning("could not tag the re-run's parent run in MLflow (%s)", error)


# -- the printed report -------------------------------------------------------------------------------------------
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
        scores = [f"{record[key]:.4f}" if key in record else "—" for key in ("objective",)]
        scores += [f"{record[key]:.1f}" if key in record else "—" for key in ("acc_labelfree", "acc_best_oracle")]
        lines.append(f"| {rank} | {record['trial_id']} | " + " | ".join(values) + f" | {record['epoch']} | "
                     f"{record['status']} | " + " | ".join(scores) + " |")
    return "\n".join(lines)


def headline(setup: Setup, phase: Phase) -> str:
    """What the search ran: trial counts by status and the objective."""
    plan, objective = setup.plan, setup.args.objective
    selector = plan.fixed.get("labelfree_selector", SRDCConfig.labelfree_selector)
    statuses = [record["status"] for record in phase.records]
    return (f"search {setup.name}: {len(statuses)} trials on {setup.search_dataset}, {statuses.count(FINISHED)} ran "
            f"all {setup.epochs} epochs, {statuses.count(STOPPED)} stopped early by ASHA, {statuses.count(FAILED)} "
            f"failed, {statuses.count(UNFINISHED)} unfinished. Objective {objective}: the mean over "
            f"{len(plan.tasks)} task(s) x {len(plan.seeds)} seed(s) of "
            + OBJECTIVE_TEXT[objective].format(selector=selector))


def best_lines(setup: Setup, phase: Phase) -> list[str]:
    """The best config, and the one the other objective would pick among the same trials."""
    best = phase.best()
    if not best:
        return ["no trial ran all epochs: no best config"]
    other = next(name for name in OBJECTIVES if name != setup.args.objective)
    (pick,) = phase.best(objective=f"objective_{other}")
    return [f"best config: {params_text(best[0]['params'])} (trial {best[0]['trial_id']}, objective "
            f"{best[0]['objective']:.4f})",
            f"  the {other} objective would pick {params_text(pick['params'])} (trial {pick['trial_id']}, "
            f"acc_best_oracle {pick['acc_best_oracle']:.1f}, acc_labelfree {pick['acc_labelfree']:.1f})"]


def describe(outcome: SearchOutcome) -> str:
    """The closing report: the trials, the best config, the promotion, the re-run's tables, wall times."""
    setup, keys = outcome.setup, list(outcome.setup.plan.grid)
    lines = [headline(setup, outcome.search), "", trials_table(outcome.search, keys), ""]
    if outcome.interrupted:
        lines.append(f"interrupted: continue it with --resume --storage-path {setup.storage} --study-name "
                     f"{setup.name}")
    lines += best_lines(setup, outcome.search)
    walls = [f"search {outcome.search.wall_s:.0f} s"]
    if outcome.promoted is not None:
        lines += ["", f"promoted to full fine-tuning on {setup.plan.dataset} ({outcome.promoted.path}):", "",
                  trials_table(outcome.promoted, keys), ""]
        walls.append(f"promotion {outcome.promoted.wall_s:.0f} s")
    if outcome.winner is not None:
        lines.append(f"winner: {params_text(outcome.winner['params'])} (trial {outcome.winner['trial_id']}); "
                     f"re-run on seeds {', '.join(map(str, setup.args.rerun_seeds))}:")
    if outcome.rerun is not None:
        lines += ["", studies.describe(outcome.rerun), ""]
        walls.append(f"re-run {outcome.rerun_wall_s:.0f} s")
    lines.append("wall times: " + ", ".join(walls))
    lines.append(f"Optuna study: {setup.optuna_url} (study {setup.name}); MLflow: {setup.tracking_uri}, experiment "
                 f"{setup.args.experiment!r}, parent run {outcome.parent_run_id or '(not reachable now)'} "
                 f"(artifacts under search/)")
    return "\n".join(lines)


def main(search: Search, argv: list[str] | None = None) -> int:
    """A search script's entry point: run, print the report; the exit status."""
    try:
        outcome = run_search(search, argv)
    except SRDCInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe(outcome))
    return outcome.exit_code
