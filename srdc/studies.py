"""The study runner shared by every ``studies/*.py`` script: a study declares its grid, :func:`main` runs it.

A study file only declares a :class:`Study` (tasks x variants x seeds, plus any extra config dimensions) and
calls ``sys.exit(main(STUDY))``. The runner builds the Ray Tune param space (one trial per grid cell; a trial
config is a flat dict of :class:`srdc.config.SRDCConfig` fields plus ``study``), runs it with
:func:`srdc.tune.train_srdc` (checkpoint every epoch, crashed trials retried from their last checkpoint),
mirrors it into MLflow with :class:`srdc.tracking.MLflowStudyCallback`, and prints the mean±std tables of
:mod:`srdc.report` built from Tune's own results, then where the MLflow runs are.

``--smoke-test`` runs the same grid shape on the embedded data with a tiny budget (:class:`SmokeTest`).
``--resume`` continues an interrupted study with ``Tuner.restore``: finished trials are not rerun, unfinished
and errored ones continue from their last checkpoint under their own trial id (so into their own MLflow run).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
import requests
from mlflow.exceptions import MlflowException
from ray import tune
from ray.tune.search.sample import Domain

from srdc import cli, report
from srdc.config import VARIANTS, SRDCConfig
from srdc.data import load_task
from srdc.data.base import parse_task
from srdc.errors import SRDCInputError
from srdc.tracking import DEFAULT_EXPERIMENT, MLflowStudyCallback, StudyStore, limit_http_retries, resolve_tracking_uri
from srdc.tune import config_from_trial, train_srdc

DEFAULT_STORAGE = "ray_results"
# the launch settings, saved beside Tune's files so that --resume needs only --storage-path/--study-name
LAUNCH_FILE = "srdc_study.json"
EXIT_INTERRUPTED = 130
# the grid's own dimensions; everything else in a trial config is an SRDCConfig field
GRID_KEYS = ("task", "variant", "seed")
# what the progress table shows of each trial's latest result
PROGRESS_METRICS = {"epoch": "epoch", "acc_target": "acc", "acc_best_oracle": "best(oracle)",
                    "acc_labelfree": "labelfree", "infomax": "infomax"}
PRINTED_SELECTIONS = ("oracle", "labelfree")
# launch settings that --resume may repeat but not change
_LOCATING = ("storage_path", "study_name", "smoke_test", "resume")

Trainable = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class SmokeTest:
    """How ``--smoke-test`` shrinks a study: the same grid on ``dataset`` with ``domains`` mapped, tiny budget.

    ``domains`` maps each domain of the study's tasks (as written there, e.g. ``A``) to a domain of ``dataset``.
    ``config`` is applied to every smoke trial (after the study's own ``config``).
    """

    domains: Mapping[str, str]
    dataset: str = "embedded"
    epochs: int = 2
    config: Mapping[str, Any] = field(default_factory=lambda: {"max_samples": 200, "batch_size": 32})

    def task(self, task: str) -> str:
        """The smoke task standing for ``task`` (``A->W`` -> ``digits->digits_photo``)."""
        source, target = parse_task(task)
        missing = [domain for domain in (source, target) if domain not in self.domains]
        if missing:
            raise SRDCInputError(f"the smoke test maps no domain for {', '.join(missing)} (task {task}); "
                                 f"add it to SmokeTest(domains=...)")
        return f"{self.domains[source]}->{self.domains[target]}"


# Office-31's A/D/W stand-ins: three disjoint embedded domains (see srdc/data/embedded.py)
OFFICE31_SMOKE = SmokeTest(domains={"A": "digits", "D": "digits_color", "W": "digits_photo"})


@dataclass(frozen=True)
class Study:
    """A study: one Tune trial per cell of ``tasks`` x ``variants`` x ``seeds`` x ``grid``.

    * ``grid``: extra config dimensions, ``{field: values}``; a list of values is a grid dimension, a Tune
      search domain (``tune.loguniform(1e-3, 1e-1)``) is sampled ``num_samples`` times (with ``searcher``,
      a zero-argument factory such as ``lambda: OptunaSearch(metric="acc_labelfree", mode="max")``).
    * ``config``: fixed config fields of every trial (``{"setting": "inductive", "epochs": 200}``).
    * ``task_config``: config fields of single tasks, ``{"W->A": {"mu_init": "target"}}``.
    * ``rows``: the config field that makes the rows of the printed tables (the other grid fields split them).
    * ``smoke``: the ``--smoke-test`` mapping (``None``: the study has none).
    * ``data_root``: the default of ``--data-root``.
    """

    name: str
    dataset: str
    tasks: tuple[str, ...]
    variants: tuple[str, ...] = ("srdc",)
    seeds: tuple[int, ...] = (0, 1, 2)
    grid: Mapping[str, Sequence[Any] | Domain] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    task_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    paper_table: str = ""
    rows: str = "variant"
    smoke: SmokeTest | None = None
    num_samples: int = 1
    searcher: Callable[[], Any] | None = None
    description: str = ""
    data_root: str = "data"

    def __post_init__(self) -> None:
        names = {f.name for f in fields(SRDCConfig)}
        for task in self.tasks:
            parse_task(task)
        unknown_variants = sorted(set(self.variants) - set(VARIANTS))
        if unknown_variants:
            raise SRDCInputError(f"study {self.name}: unknown variant(s) {', '.join(unknown_variants)}; "
                                 f"known: {', '.join(VARIANTS)}")
        per_task = {key for values in self.task_config.values() for key in values}
        for where, keys in (("grid", set(self.grid)), ("config", set(self.config)), ("task_config", per_task)):
            bad = sorted(keys - names)
            if bad:
                raise SRDCInputError(f"study {self.name}: {where} names unknown config field(s) {', '.join(bad)}")
            taken = sorted(keys & {*GRID_KEYS, "source", "target"})
            if taken:
                raise SRDCInputError(f"study {self.name}: {where} may not set {', '.join(taken)}; "
                                     f"those are the study's own dimensions")
        clashes = sorted(set(self.grid) & (set(self.config) | per_task))
        if clashes:
            raise SRDCInputError(f"study {self.name}: {', '.join(clashes)} is both a grid dimension and fixed")
        stray = sorted(set(self.task_config) - set(self.tasks))
        if stray:
            raise SRDCInputError(f"study {self.name}: task_config names task(s) not in tasks: {', '.join(stray)}")


@dataclass(frozen=True)
class Plan:
    """A study resolved against the command line: exactly what Tune runs."""

    name: str
    dataset: str
    tasks: tuple[str, ...]
    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    grid: Mapping[str, Sequence[Any] | Domain]
    fixed: dict[str, Any]
    task_config: dict[str, dict[str, Any]]
    rows: str
    study_params: dict[str, Any]


@dataclass(frozen=True)
class PerTask:
    """A config value that depends on the trial's task (``tune.sample_from``; picklable for ``Tuner.restore``)."""

    key: str
    values: Mapping[str, Any]
    default: Any

    def __call__(self, config: dict[str, Any]) -> Any:
        return self.values.get(config["task"], self.default)


# -- the command line -----------------------------------------------------------------------------------------
def build_parser(study: Study) -> argparse.ArgumentParser:
    """The options every study script takes."""
    parser = argparse.ArgumentParser(
        prog=Path(sys.argv[0]).name,
        description=f"Study {study.name}" + (f" (paper {study.paper_table})" if study.paper_table else "")
        + f": {study.dataset} {', '.join(study.tasks)} x {', '.join(study.variants)} x seeds "
        f"{', '.join(map(str, study.seeds))}. {study.description}",
    )
    parser.add_argument("--smoke-test", action="store_true",
                        help="the same grid shape on the embedded data, tiny budget (minutes on a CPU)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the study's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="(default: the study's)")
    parser.add_argument("--tasks", nargs="+", default=None, help="a subset of the study's tasks")
    parser.add_argument("--variants", nargs="+", default=None, help="a subset of the study's variants")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="a config field for every trial, e.g. --set num_workers=4 --set bf16=true")
    parser.add_argument("--data-root", default=study.data_root,
                        help=f"where the datasets are (default: {study.data_root})")
    parser.add_argument("--storage-path", default=DEFAULT_STORAGE,
                        help="Tune's results and checkpoints: a local folder, a shared NFS path, s3:// or gs:// "
                             f"(default: ./{DEFAULT_STORAGE})")
    parser.add_argument("--study-name", default=None,
                        help=f"Tune experiment and MLflow study name (default: {study.name}, with --smoke-test "
                             f"{study.name}-smoke)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help=f"MLflow experiment ({DEFAULT_EXPERIMENT})")
    parser.add_argument("--gpus-per-trial", type=float, default=None,
                        help="GPUs per trial, fractions allowed (default: 1 when the Ray cluster has GPUs, else 0)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial (default: 1)")
    parser.add_argument("--max-concurrent", type=int, default=None,
                        help="trials at once (default: as many as the resources allow)")
    parser.add_argument("--max-failures", type=int, default=2,
                        help="retries of a crashed trial, each from its last checkpoint (default: 2)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted study STORAGE/NAME with its original settings: finished "
                             "trials are kept, unfinished and errored ones continue from their last checkpoint")
    return parser


def study_name(study: Study, args: argparse.Namespace) -> str:
    """The Tune experiment's and MLflow study's name: ``--study-name``, else the study's (``-smoke`` added)."""
    return args.study_name or (f"{study.name}-smoke" if args.smoke_test else study.name)


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["lr=0.02", "bf16=true"]`` -> ``{"lr": 0.02, "bf16": True}``, typed like ``srdc-train``'s options."""
    names = {f.name for f in fields(SRDCConfig)}
    parser = cli.build_parser()
    values: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise SRDCInputError(f"--set {item!r}: expected FIELD=VALUE with FIELD a config field")
        if key in (*GRID_KEYS, "source", "target", "dataset", "epochs", "data_root"):
            raise SRDCInputError(f"--set {key}: use --tasks/--variants/--seeds/--epochs/--data-root or the study")
        values[key] = getattr(parser.parse_args([f"--{key}", text]), key)
    return values


def _subset(chosen: list[str] | None, declared: tuple[str, ...], what: str) -> tuple[str, ...]:
    if chosen is None:
        return declared
    unknown = [item for item in chosen if item not in declared]
    if unknown:
        raise SRDCInputError(f"--{what} {' '.join(unknown)}: not in the study's {what} ({', '.join(declared)})")
    return tuple(chosen)


# -- the plan and Tune's param space --------------------------------------------------------------------------
def fixed_fields(study: Study, args: argparse.Namespace) -> dict[str, Any]:
    """The config every trial shares: the study's, then the smoke test's, ``--epochs``, then ``--set``."""
    overrides = parse_overrides(args.overrides)
    grid_clash = sorted(set(overrides) & set(study.grid))
    if grid_clash:
        raise SRDCInputError(f"--set {', '.join(grid_clash)}: a grid dimension of study {study.name}")
    fixed = {"study": study_name(study, args), "dataset": study.dataset, "data_root": _absolute(args.data_root),
             "epochs": SRDCConfig.epochs, **study.config}
    if args.smoke_test:
        if study.smoke is None:
            raise SRDCInputError(f"study {study.name} declares no smoke test")
        fixed.update({"dataset": study.smoke.dataset, **study.smoke.config, "epochs": study.smoke.epochs})
    if args.epochs is not None:
        fixed["epochs"] = args.epochs
    return {**fixed, **overrides}


def plan_study(study: Study, args: argparse.Namespace) -> Plan:
    """Resolve ``study`` against the command line (smoke mapping, subsets, epochs, ``--set``)."""
    tasks = _subset(args.tasks, study.tasks, "tasks")
    variants = _subset(args.variants, study.variants, "variants")
    seeds = tuple(args.seeds) if args.seeds is not None else study.seeds
    fixed = fixed_fields(study, args)
    name, dataset = fixed["study"], fixed["dataset"]
    rename = study.smoke.task if args.smoke_test else (lambda task: task)
    overridden = set(parse_overrides(args.overrides))
    task_config = {rename(task): {k: v for k, v in values.items() if k not in overridden}
                   for task, values in study.task_config.items() if task in tasks}
    params = {"study": name, "dataset": dataset, "paper_table": study.paper_table, "smoke_test": args.smoke_test,
              "tasks": [rename(task) for task in tasks], "variants": list(variants), "seeds": list(seeds),
              "epochs": fixed["epochs"], **{f"grid.{key}": _describe(values) for key, values in study.grid.items()}}
    return Plan(name=name, dataset=dataset, tasks=tuple(map(rename, tasks)), variants=variants, seeds=seeds,
                grid=dict(study.grid), fixed=fixed, task_config=task_config, rows=study.rows, study_params=params)


def _absolute(path: str) -> str:
    """A local path made absolute (trials run in their own working directory); URIs unchanged."""
    return path if "://" in path else str(Path(path).expanduser().resolve())


def _describe(values: Sequence[Any] | Domain) -> str:
    """A grid dimension as a parent-run param: ``[0.5, 1.0]`` or ``LogUniform (0.001, 0.1)``."""
    if isinstance(values, Domain):
        return f"{values.get_sampler()} {values.domain_str}"
    return json.dumps(list(values))


def _dimension(values: Sequence[Any] | Domain) -> Any:
    """A Tune domain stays as it is; one value is a constant; several are a grid dimension."""
    if isinstance(values, Domain):
        return values
    values = list(values)
    return values[0] if len(values) == 1 else tune.grid_search(values)


def param_space(plan: Plan) -> dict[str, Any]:
    """Tune's ``param_space``: fixed fields, the grid dimensions, and per-task fields via ``tune.sample_from``."""
    space: dict[str, Any] = dict(plan.fixed)
    dims = {"task": plan.tasks, "variant": plan.variants, "seed": plan.seeds, **plan.grid}
    space.update({key: _dimension(values) for key, values in dims.items()})
    for key, per_task in per_task_fields(plan).items():
        space[key] = per_task({"task": plan.tasks[0]}) if len(plan.tasks) == 1 else tune.sample_from(per_task)
    return space


def per_task_fields(plan: Plan) -> dict[str, PerTask]:
    """The fields some task sets (``task_config``); the other tasks get the fixed or default value."""
    keys = sorted({key for values in plan.task_config.values() for key in values})
    return {key: PerTask(key, {task: config[key] for task, config in plan.task_config.items() if key in config},
                         plan.fixed.get(key, getattr(SRDCConfig, key))) for key in keys}


def grid_configs(plan: Plan) -> list[dict[str, Any]]:
    """Every trial config of the grid (sampled dimensions left out): what the study will run."""
    dims = {"task": plan.tasks, "variant": plan.variants, "seed": plan.seeds,
            **{key: list(values) for key, values in plan.grid.items() if not isinstance(values, Domain)}}
    configs = []
    for cell in itertools.product(*dims.values()):
        config = {**plan.fixed, **dict(zip(dims, cell, strict=True))}
        config.update({key: per_task(config) for key, per_task in per_task_fields(plan).items()})
        configs.append(config)
    return configs


def check_plan(plan: Plan) -> None:
    """Fail before launching: every grid cell must make a valid config, and every task's data must load."""
    configs = [config_from_trial(trial) for trial in grid_configs(plan)]
    for config in {config.task_name: config for config in configs}.values():
        load_task(config)


# -- the launch file (what --resume restores besides Tune's own state) ----------------------------------------
def experiment_path(args: argparse.Namespace, name: str) -> str:
    """Where Tune keeps the study: ``STORAGE/NAME`` (a local path made absolute, or a URI)."""
    return f"{_absolute(args.storage_path).rstrip('/')}/{name}"


def save_launch(path: str, args: argparse.Namespace) -> None:
    """Write the launch settings into the experiment folder ``path`` (local, NFS, ``s3://``, ``gs://``)."""
    filesystem, folder = pyarrow.fs.FileSystem.from_uri(path)
    filesystem.create_dir(folder, recursive=True)
    with filesystem.open_output_stream(f"{folder}/{LAUNCH_FILE}") as out:
        out.write(json.dumps(vars(args), indent=2, sort_keys=True).encode())


def load_launch(path: str, args: argparse.Namespace, defaults: argparse.Namespace) -> argparse.Namespace:
    """The saved launch settings of the study at ``path``; options given now must not contradict them."""
    filesystem, folder = pyarrow.fs.FileSystem.from_uri(path)
    try:
        with filesystem.open_input_stream(f"{folder}/{LAUNCH_FILE}") as stream:
            saved = json.loads(stream.read().decode())
    except FileNotFoundError as error:
        raise SRDCInputError(f"--resume: {path} has no {LAUNCH_FILE}; it was not started by a study script") from error
    resolved = vars(resolve_locations(args))
    changed = sorted(key for key, value in vars(args).items()
                     if key not in _LOCATING and value != getattr(defaults, key) and resolved[key] != saved.get(key))
    if changed:
        raise SRDCInputError(f"--resume continues {path} with its original settings; drop "
                             + ", ".join(f"--{key.replace('_', '-')}" for key in changed))
    return argparse.Namespace(**{**saved, **{key: resolved[key] for key in _LOCATING}})


def resolve_locations(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with absolute local paths and the tracking URI resolved, as they are saved for ``--resume``."""
    return argparse.Namespace(**{**vars(args), "storage_path": _absolute(args.storage_path),
                                 "data_root": _absolute(args.data_root),
                                 "tracking_uri": resolve_tracking_uri(args.tracking_uri)})


# -- running ----------------------------------------------------------------------------------------------------
@dataclass
class StudyOutcome:
    """What a study run ended with."""

    plan: Plan
    path: str
    records: list[dict[str, Any]]
    tables: str
    tracking_uri: str
    experiment: str
    parent_run: tuple[str, str] | None
    interrupted: bool

    @property
    def counts(self) -> dict[str, int]:
        statuses = [record["status"] for record in self.records]
        return {status: statuses.count(status) for status in ("FINISHED", "FAILED", "RUNNING")}

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 1 if self.counts["FAILED"] else 0


def trial_resources(args: argparse.Namespace) -> dict[str, float]:
    """CPU and GPU per trial; CPU is always given (``{"gpu": 0.5}`` alone would ask for no CPU)."""
    gpus = args.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return {"cpu": args.cpus_per_trial, "gpu": gpus}


def build_tuner(plan: Plan, args: argparse.Namespace, trainable: Trainable, study: Study) -> tune.Tuner:
    """A fresh Tuner for ``plan`` (checkpoints, retries, progress table, MLflow callback)."""
    tracking = MLflowStudyCallback(plan.name, args.experiment, args.tracking_uri, plan.study_params)
    reporter = tune.CLIReporter(metric_columns=PROGRESS_METRICS,
                                parameter_columns=[*GRID_KEYS, *plan.grid], max_report_frequency=30)
    run_config = tune.RunConfig(
        name=plan.name,
        storage_path=args.storage_path,
        failure_config=tune.FailureConfig(max_failures=args.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[tracking],
        progress_reporter=reporter,
        verbose=1,
        # a reused actor's trial directory is its working directory: sync it to the storage trial folder
        sync_config=tune.SyncConfig(sync_artifacts=True),
    )
    # reuse_actors: one worker process per concurrent slot, not per trial (it saves importing torch each time)
    tune_config = tune.TuneConfig(max_concurrent_trials=args.max_concurrent, num_samples=study.num_samples,
                                  search_alg=study.searcher() if study.searcher else None, reuse_actors=True)
    return tune.Tuner(tune.with_resources(trainable, trial_resources(args)), param_space=param_space(plan),
                      tune_config=tune_config, run_config=run_config)


def study_args(study: Study, argv: list[str] | None) -> tuple[argparse.Namespace, str]:
    """The command line, locations resolved (with ``--resume``: the saved launch's), and the experiment path."""
    parser = build_parser(study)
    args = parser.parse_args(argv)
    name = study_name(study, args)
    path = experiment_path(args, name)
    exists = tune.Tuner.can_restore(path)
    if args.resume and not exists:
        raise SRDCInputError(f"--resume: no study {name} in {path}; drop --resume to start it")
    if exists and not args.resume:
        raise SRDCInputError(f"{path} already holds study {name}; pass --resume to continue it, or --study-name")
    if args.resume:
        return load_launch(path, args, parser.parse_args([])), path
    return resolve_locations(args), path


def fit(study: Study, plan: Plan, args: argparse.Namespace, path: str, trainable: Trainable) -> tune.ResultGrid:
    """Start (or continue, ``Tuner.restore``) the Tune experiment at ``path`` and wait for it."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the CLIReporter progress table of build_tuner
    # every epoch is checkpointed; with epochs of seconds (--smoke-test) Tune would warn at each snapshot
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    limit_http_retries()
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init()  # a local instance, or the cluster of $RAY_ADDRESS / of `ray start` on this machine
    try:
        if args.resume:
            # resume_errored: an errored trial continues from its checkpoint under its own trial id (and MLflow run),
            # which gives what a restart would, since resuming is exact; restart_errored would make a new trial
            tuner = tune.Tuner.restore(path, tune.with_resources(trainable, trial_resources(args)),
                                       resume_unfinished=True, resume_errored=True)
        else:
            save_launch(path, args)
            tuner = build_tuner(plan, args, trainable, study)
        return tuner.fit()
    finally:
        if started_ray:
            ray.shutdown()


def run_study(study: Study, argv: list[str] | None = None, trainable: Trainable = train_srdc) -> StudyOutcome:
    """Run (or with ``--resume`` continue) ``study`` as the command line ``argv`` asks; see the module docstring.

    ``trainable`` is for tests that wrap :func:`srdc.tune.train_srdc` (fault injection).
    """
    args, path = study_args(study, argv)
    plan = plan_study(study, args)
    if not args.resume:
        check_plan(plan)
    records = study_records(fit(study, plan, args, path, trainable))
    interrupted = any(record["status"] == "RUNNING" for record in records)
    return StudyOutcome(plan, path, records, summary_tables(plan, records), args.tracking_uri, args.experiment,
                        find_parent_run(args.tracking_uri, args.experiment, plan.name), interrupted)


# -- the end: tables and where the runs are -------------------------------------------------------------------
def trial_status(config: dict[str, Any], metrics: dict[str, Any], error: Exception | None) -> str:
    """FINISHED when the trial reported its last epoch, FAILED when it gave up, else RUNNING (interrupted)."""
    if error is not None:
        return "FAILED"
    return "FINISHED" if metrics.get("epoch", -1) >= config["epochs"] else "RUNNING"


def study_records(results: tune.ResultGrid) -> list[dict[str, Any]]:
    """One record per trial for :func:`srdc.report.aggregate`: its config, status and final accuracies."""
    records = []
    for result in results:
        config, metrics = dict(result.config or {}), dict(result.metrics or {})
        record = {**config, "status": trial_status(config, metrics, result.error), "path": result.path}
        record.update({key: metrics[key] for key in ("acc_last", "acc_best_oracle", "acc_labelfree",
                                                     "epoch", "trial_id") if key in metrics})
        record.setdefault("labelfree_selector", config.get("labelfree_selector", SRDCConfig.labelfree_selector))
        records.append(record)
    return records


def summary_tables(plan: Plan, records: list[dict[str, Any]]) -> str:
    """The mean±std tables (oracle and label-free selection), one per value of the grid fields besides rows."""
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


def find_parent_run(tracking_uri: str, experiment: str, name: str) -> tuple[str, str] | None:
    """The experiment id and run id of the study's MLflow parent run; ``None`` when MLflow cannot be read now."""
    try:
        parent = StudyStore(tracking_uri, experiment, name).find_parent()
    except (MlflowException, requests.exceptions.RequestException, OSError):
        return None
    return (parent.info.experiment_id, parent.info.run_id) if parent is not None else None


def describe(outcome: StudyOutcome) -> str:
    """The closing lines: counts, tables, where the Tune results and the MLflow runs are."""
    plan, counts, uri = outcome.plan, outcome.counts, outcome.tracking_uri
    lines = [f"study {plan.name}: {len(outcome.records)} trials, {counts['FINISHED']} finished, "
             f"{counts['FAILED']} failed, {counts['RUNNING']} unfinished; Tune results: {outcome.path}", "",
             outcome.tables]
    if outcome.interrupted:
        lines.append(f"interrupted: continue it with the same command and --resume "
                     f"(--storage-path {outcome.path.rsplit('/', 1)[0]} --study-name {plan.name})")
    parent = outcome.parent_run[1] if outcome.parent_run else "(not reachable now)"
    lines.append(f"MLflow: tracking URI {uri}, experiment {outcome.experiment!r}, parent run {parent} "
                 f"(tag srdc.study={plan.name}; one child run per trial)")
    if not uri.startswith("http"):
        lines.append(f"  browse: mlflow ui --backend-store-uri {uri}  # then http://127.0.0.1:5000")
    elif outcome.parent_run:
        lines.append(f"  browse: {uri}/#/experiments/{outcome.parent_run[0]}/runs/{outcome.parent_run[1]}")
    sync = "" if outcome.parent_run else f" --sync --storage-path {outcome.path}"
    lines.append(f"  table: srdc-report --study {plan.name} --tracking-uri {uri} --experiment {outcome.experiment}"
                 f"{sync}")
    return "\n".join(lines)


def main(study: Study, argv: list[str] | None = None) -> int:
    """A study script's entry point: run, print the tables and the MLflow location; the exit status."""
    try:
        outcome = run_study(study, argv)
    except SRDCInputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe(outcome))
    return outcome.exit_code
