"""Optuna searches over SRDC's hyper-parameters with Ray Tune: TPE proposes configs, ASHA stops weak trials early.

A :class:`~srdc.harness.declarations.Search` wraps a study whose ``grid`` holds Tune search domains; the study's
tasks and seeds are what ONE trial trains in lockstep (:mod:`srdc.harness.trainable`). :func:`run_search` runs up
to three phases, each a sweep (what one ``Tuner`` runs) under the launch's storage, all tracked in MLflow:

1. **search** (sweep NAME, MLflow parent NAME): ``--num-samples`` trials proposed by ``OptunaSearch``
   with a seeded TPE sampler (``--n-startup-trials`` random ones first), at most ``--max-concurrent`` at once
   (``ConcurrencyLimiter``), stopped early by ``ASHAScheduler`` (``time_attr`` epoch). A trial reports after every
   epoch the mean over its runs of the ``objective``: label-free by default (the best value so far of the
   validator behind ``acc_labelfree``), the paper's protocol with ``--objective oracle`` (the best target
   accuracy so far). The Optuna study is kept in ``NAME/optuna.db``; its trials, parameter importances and their
   plots, and the trials' accuracies against each searched parameter (:func:`srdc.figures.study.search_chart`) go
   into ``NAME/results/`` and to the MLflow parent as artifacts (``search/``). With ``--dataset features`` the runs
   train the head on cached backbone features (extracted once into ``--features-dir``): minutes.
2. **promotion** (only with ``--promote K``; sweep NAME-promoted, same MLflow parent): the K best
   finished configs run again as full fine-tuning trials on the study's image dataset, same tasks and seeds.
3. **re-run** (study NAME-rerun): the winner (the best promoted config, else the best searched one) on fresh
   ``--rerun-seeds`` on the image dataset, through :func:`srdc.harness.outcome.run_study` with a :class:`Study`
   and a :class:`Launch` made for it, tabled with both the oracle and the label-free epoch selection.

This module runs the phases. The search resolved against its launch and its list of phases (which ``--dry-run``
plans too) are in :mod:`srdc.harness.search_setup`; what it ends with and its printed report in
:mod:`srdc.harness.search_report`; its files (the Optuna study's export...) in :mod:`srdc.harness.search_files`.

``--resume`` continues an interrupted search with its original settings (``Tuner.restore``: the searcher, the
scheduler and every trial come back; finished trials are not evaluated again, unfinished ones continue from
their last epoch), then runs or continues the later phases.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from srdc.base import TrialStatus, parse_task
from srdc.config import SRDCConfig
from srdc.harness.console import library_level
from srdc.harness.declarations import Search
from srdc.harness.lease import study_lease
from srdc.harness.options import FEATURES, Launch, preflight, save_launch
from srdc.harness.outcome import announce, announce_start, find_parent_run, run_study
from srdc.harness.plan import check_plan, lockstep_space
from srdc.harness.search_files import log_to_parent, write_search_files
from srdc.harness.search_report import Phase, SearchOutcome
from srdc.harness.search_setup import PROMOTION, PhaseSpec, Setup, rerun_launch, rerun_study, resolve
from srdc.harness.tuner import Sweep, fit, ray_session
from srdc.tracking import TrackingUnavailable, open_tracker

logger = logging.getLogger(__name__)

FEATURE_SEED = 0  # a backbone without pretrained weights is initialised from it (smoke tests)
PROGRESS_METRICS = {"epoch": "epoch", "objective": "objective", "acc_labelfree": "labelfree",
                    "acc_best_oracle": "best(oracle)"}


# -- the phases' sweeps -------------------------------------------------------------------------------------------
def feature_tasks(setup: Setup) -> dict[str, str]:
    """Each task as a ``features`` task (``DIR/A.npz->DIR/W.npz``); a missing domain's features are extracted
    first with the study's backbone (``backbone``/``weights`` config fields; ``auto``: the dataset's default)."""
    import torch

    from srdc.data import DATASETS
    from srdc.extract import ExtractionRequest, run_extraction

    plan = setup.plan
    default_folder = f"{setup.launch.storage_path}/features/{plan.dataset}"
    folder = Path(setup.options.features_dir or default_folder).expanduser().resolve()
    backbone = plan.fixed.get("backbone", SRDCConfig.backbone)
    if backbone == "auto":
        backbone = DATASETS.lookup(plan.dataset).default_backbone
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


def phase_sweep(setup: Setup, name: str, param_space: dict[str, Any], **tune_options: Any) -> Sweep:
    """A phase's sweep of ``num_samples`` trials (among ``tune_options``), logged into the search's MLflow parent."""
    return Sweep(name=name, param_space=param_space, epochs=setup.plan.epochs, tracking=setup.name,
                      tracking_params=search_params(setup), planned=tune_options["num_samples"],
                      parameter_columns=list(setup.plan.grid),
                      metric_columns=dict(PROGRESS_METRICS), **tune_options)


def search_sweep(setup: Setup, phase: PhaseSpec) -> Sweep:
    """The search: OptunaSearch (seeded TPE, study in ``optuna.db``) behind a ConcurrencyLimiter, and ASHA."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(library_level(setup.launch.verbose))
    options = setup.options
    sampler = optuna.samplers.TPESampler(n_startup_trials=setup.startup_trials(), seed=options.sampler_seed)
    searcher = OptunaSearch(metric="objective", mode="max", sampler=sampler, study_name=setup.name,
                            storage=optuna.storages.RDBStorage(setup.optuna_url))
    scheduler = ASHAScheduler(time_attr="epoch", metric="objective", mode="max", max_t=setup.plan.epochs,
                              grace_period=setup.grace_period(), reduction_factor=options.reduction_factor)
    limited = ConcurrencyLimiter(searcher, max_concurrent=setup.launch.max_concurrent)
    return phase_sweep(setup, phase.name, trial_space(setup, phase.dataset),
                       num_samples=phase.trials, searcher=limited, scheduler=scheduler)


def promotion_sweep(setup: Setup, phase: PhaseSpec, candidates: list[dict[str, Any]]) -> Sweep:
    """The promoted configs as full fine-tuning trials on the study's dataset (one trial each)."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    points = [candidate["params"] for candidate in candidates]
    generator = BasicVariantGenerator(points_to_evaluate=points, max_concurrent=setup.launch.max_concurrent)
    return phase_sweep(setup, phase.name, trial_space(setup, phase.dataset),
                       num_samples=len(points), searcher=generator)


# -- running the phases ---------------------------------------------------------------------------------------
def run_phase(setup: Setup, sweep: Sweep, expected: int) -> Phase:
    """Run a phase, or continue it when its folder holds one (finished trials are kept, unfinished ones go on)."""
    start = time.monotonic()
    records = fit(setup.launch, sweep)
    for record in records:
        record["params"] = {key: record[key] for key in setup.plan.grid}
    interrupted = len(records) < expected or any(r["status"] == TrialStatus.UNFINISHED for r in records)
    return Phase(sweep.name, records, interrupted, time.monotonic() - start)


def run_search(search: Search, launch: Launch) -> SearchOutcome:
    """Run (or with ``launch.resume`` continue) the search, the promotion and the re-run; see the module docstring."""
    warnings = preflight(launch)
    announce(warnings)
    setup = resolve(search, launch)
    if not launch.resume:
        check_plan(setup.plan)
    with study_lease(launch.path):
        if not launch.resume:
            save_launch(launch)
        promoted = f", the best {setup.options.promote} promoted" if setup.options.promote else ""
        announce_start(launch, f"search {setup.name}: {setup.num_samples} trials{promoted}, then the winner's re-run")
        with ray_session(launch.address, launch.verbose, launch.dashboard):
            outcome = run_phases(setup)
        parent = find_parent_run(launch, setup.name)
        outcome.parent_run_id = parent[1] if parent is not None else None
        if not outcome.search.interrupted:
            log_to_parent(outcome, write_search_files(outcome))
    return outcome


def run_phases(setup: Setup) -> SearchOutcome:
    """Run the search's phases (:meth:`~srdc.harness.search_setup.Setup.phases`): search, promote (``--promote K``),
    re-run the winner; stop after an interrupted phase, or one that finished no trial."""
    first, *later = setup.phases()
    outcome = SearchOutcome(setup, run_phase(setup, search_sweep(setup, first), first.trials))
    finalists = outcome.search
    for phase in later:
        if finalists.interrupted or not finalists.best():
            break
        if phase.kind == PROMOTION:
            candidates = finalists.best(phase.trials)
            outcome.promoted = finalists = run_phase(setup, promotion_sweep(setup, phase, candidates),
                                                     len(candidates))
        else:  # the re-run, the last phase
            outcome.winner = finalists.best()[0]
            start = time.monotonic()
            outcome.rerun = run_study(rerun_study(setup, outcome.winner), rerun_launch(setup))
            outcome.rerun_wall_s = time.monotonic() - start
            tag_rerun(setup)
    return outcome


def tag_rerun(setup: Setup) -> None:
    """Tag the re-run study's parent run with the search it comes from (``srdc.search``)."""
    try:
        tracker = open_tracker(setup.launch.tracking_uri, setup.launch.experiment)
        parent = tracker.find_study(setup.rerun_name)
        if parent is not None:
            tracker.set_tag(parent.run_id, "srdc.search", setup.name)
    except TrackingUnavailable as error:
        logger.warning("could not tag the re-run's parent run in MLflow (%s)", error)
