"""``--dry-run``: what a study or search would run and what it would cost, printed; nothing runs, nothing is
written (no launch file, no Ray trial, no MLflow run, not even the storage folder).

For each Tune experiment the command would start (a study: one; a search: the search, the promotion with
``--promote K``, the winner's re-run) the dry run lists the trials, the resources per trial, how many run at
once, and the estimated wall time and GPU-hours (CPU-hours for CPU trials) from the per-epoch cost table
(:mod:`srdc.harness.costs`); a search's phases are the ones it would run
(:meth:`srdc.harness.search_setup.Setup.phases`):

* a run's time: over its epochs, the iterations the method draws (one pass over the larger drawn domain, or the
  draw's own count; :meth:`srdc.trainer.Trainer.train_epoch`) times the cost of an iteration of one or two
  batches, plus ``epochs + 1`` preparation passes over source, target (and the inductive target test half);
* a trial's time: the sum of its runs' (a search trial trains its runs in lockstep, one after the other in each
  epoch); with a fraction g < 1 of a GPU, 1/g as long (the figures are measured with one trial alone on its
  GPU, on in-memory data: trials sharing a GPU share its time);
* trials at once: the cluster's GPUs / GPUs per trial, its CPUs / CPUs per trial (when counted),
  ``--max-concurrent`` and the number of trials, whichever is least; the wall time starts the trials in the
  grid's order whenever one ends (Tune's FIFO); GPU-hours are each trial's time x its GPUs;
* a search: every trial running all its epochs (ASHA stops some early: an upper bound).

The cluster: ``--plan-gpus N`` (N GPUs; CPUs not counted); else a Ray session already running in this process,
or the cluster at ``--address``/``$RAY_ADDRESS`` (joined to read its resources; nothing is started on it); else
this machine's CPUs and GPUs, counted without starting Ray (what a local Ray instance would have).

A configuration the cost table has no row for gets no estimate, but a line naming the row and the benchmark
command that measures it. A GPU without a row of its own is planned with another GPU's figures, and the output
says whose. Not counted: a trial's start (imports, loading data, building the model), checkpoint writes, a data
loader slower than the GPU (JPEG decoding needs enough ``--cpus-per-trial``), Tune's own overhead.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch

from srdc.batches import batches_per_pass
from srdc.config import SRDCConfig
from srdc.data import Domain, get_dataset, load_one_domain
from srdc.data.benchmarks import BENCHMARKS
from srdc.errors import SRDCInputError
from srdc.harness.costs import (
    COSTS_FILE,
    CPU,
    CostKey,
    CostRow,
    dtype_name,
    find_row,
    input_size,
    load_costs,
    measure_command,
)
from srdc.harness.declarations import Search, Study, is_grid
from srdc.harness.options import FEATURES, Launch
from srdc.harness.plan import Plan, grid_configs, lockstep_space, plan_study
from srdc.harness.search_setup import RERUN, PhaseSpec, Setup, rerun_launch, rerun_study, resolve
from srdc.harness.trainable import run_configs
from srdc.harness.tuner import ray_session
from srdc.methods import method_class

HOUR = 3600.0
TABLE_NAME = "/".join(COSTS_FILE.parts[-3:])  # srdc/harness/epoch_costs.json
ACCELERATOR = "accelerator_type:"  # Ray's resource naming a node's GPU model


# -- the cluster ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cluster:
    """What trials are placed on: GPUs, CPUs (``None``: not counted), the GPU model (``None``: not known)."""

    gpus: float
    cpus: float | None
    gpu_name: str | None
    where: str

    def describe(self) -> str:
        cpus = "CPUs not counted" if self.cpus is None else f"{self.cpus:g} CPUs"
        model = f" ({self.gpu_name})" if self.gpu_name and self.gpus else ""
        return f"{self.where}: {self.gpus:g} GPUs{model}, {cpus}"


def local_gpu_name() -> str | None:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def check_reachable(address: str) -> None:
    """Fail at once (``ConnectionError``) when nothing listens at ``HOST:PORT`` (``ray.init`` would retry for
    minutes); other address forms (``auto``) are left to Ray."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if host and port.isdigit():
        socket.create_connection((host, int(port)), timeout=5).close()


def find_cluster(launch: Launch) -> Cluster:
    """The cluster the dry run plans for (see the module docstring)."""
    if launch.plan_gpus is not None:
        return Cluster(launch.plan_gpus, None, local_gpu_name(), "planned with --plan-gpus")
    if ray.is_initialized() or launch.address:
        where = "the running Ray session" if ray.is_initialized() else f"the Ray cluster at {launch.address}"
        try:
            if not ray.is_initialized():
                check_reachable(launch.address)
            with ray_session(launch.address):
                resources = ray.cluster_resources()
        except OSError as error:  # ConnectionError, a timeout, an unknown host
            raise SRDCInputError(f"--address {launch.address}: no Ray cluster answers ({error}); start it, or plan "
                                 f"without it: drop --address/$RAY_ADDRESS, or --plan-gpus N") from None
        models = sorted(key.removeprefix(ACCELERATOR) for key in resources if key.startswith(ACCELERATOR))
        return Cluster(resources.get("GPU", 0.0), resources.get("CPU", 0.0), models[0] if models else None, where)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return Cluster(float(torch.cuda.device_count()), float(cpus), local_gpu_name(),
                   "this machine (no --address or $RAY_ADDRESS; counted here, no Ray started)")


def at_once(trials: int, resources: dict[str, float], cluster: Cluster, max_concurrent: int | None) -> tuple[int, str]:
    """How many trials run at once, and what limits it."""
    limits = [(trials, f"{trials} trials")]
    if resources["gpu"] > 0:
        limits.append((math.floor(cluster.gpus / resources["gpu"] + 1e-9),
                       f"{cluster.gpus:g} GPUs / {resources['gpu']:g} per trial"))
    if cluster.cpus is not None:
        limits.append((math.floor(cluster.cpus / resources["cpu"] + 1e-9),
                       f"{cluster.cpus:g} CPUs / {resources['cpu']:g} per trial"))
    if max_concurrent is not None:
        limits.append((max_concurrent, f"--max-concurrent {max_concurrent}"))
    count, reason = min(limits, key=lambda limit: limit[0])
    if count < 1:
        raise SRDCInputError(f"{cluster.describe()} cannot hold one trial of {resources['cpu']:g} CPU and "
                             f"{resources['gpu']:g} GPU; change --gpus-per-trial/--cpus-per-trial or the cluster")
    return count, reason


# -- what a run costs -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunData:
    """The sizes a run's cost depends on: images per domain, classes, backbone, the input side."""

    source: int
    target: int
    target_test: int
    classes: int
    backbone: str
    image_size: int | None

    @property
    def prepared_images(self) -> int:
        """The images of one preparation pass."""
        return self.source + self.target + self.target_test


@dataclass(frozen=True)
class Segment:
    """Consecutive epochs with the same draw: ``iterations`` of ``batches`` mini-batches each."""

    epochs: int
    iterations: int
    batches: int


class DataFacts:
    """Domain sizes and classes: a benchmark's registered image counts (no data needed), any other dataset's
    domains loaded once from the data root (digits, embedded, user data)."""

    def __init__(self) -> None:
        self.loaded: dict[tuple[Any, ...], Domain] = {}

    def domain(self, config: SRDCConfig, name: str) -> tuple[int, int, Domain | None]:
        """``(images, classes, the loaded domain or None)`` of domain ``name``."""
        bench = BENCHMARKS.get(config.dataset)
        if bench is not None and bench.domain(name).count is not None:
            return bench.domain(name).count, len(bench.classes), None
        key = (config.dataset, name, config.data_root, config.image_size, config.max_samples)
        if key not in self.loaded:
            # counting images needs no decoded-image cache (which would be built)
            self.loaded[key] = load_one_domain(config.dataset, name, dataclasses.replace(config, image_cache="off"))
        domain = self.loaded[key]
        return len(domain), domain.num_classes, domain

    def run(self, config: SRDCConfig) -> RunData:
        """What ``config``'s run trains and prepares on (``max_samples`` and the 50/50 inductive split applied
        as counts: within a few images of the stratified ones)."""
        source, classes, loaded = self.domain(config, config.source)
        target = self.domain(config, config.target)[0]
        if config.max_samples is not None:
            source, target = min(source, config.max_samples), min(target, config.max_samples)
        test = 0
        if config.setting == "inductive":
            target, test = round(target / 2), target - round(target / 2)
        spec = get_dataset(config.dataset)
        backbone = spec.default_backbone if config.backbone == "auto" else config.backbone
        return RunData(source, target, test, classes, backbone, input_size(config, spec.default_backbone, loaded))


def schedule(config: SRDCConfig, data: RunData) -> list[Segment]:
    """The run's epochs as segments of equal draws, from the method's own :meth:`~srdc.methods.Method.draw`."""
    method = method_class(config.variant)(config, data.classes, {}, torch.device("cpu"))
    segments: list[Segment] = []
    for epoch in range(config.epochs):
        draw = method.draw(epoch)
        drawn = [size for size, taken in ((data.source, draw.source), (data.target, draw.target)) if taken]
        iterations = draw.iterations if draw.iterations is not None else \
            max(batches_per_pass(size, config.batch_size) for size in drawn)
        if segments and (segments[-1].iterations, segments[-1].batches) == (iterations, len(drawn)):
            segments[-1] = Segment(segments[-1].epochs + 1, iterations, len(drawn))
        else:
            segments.append(Segment(1, iterations, len(drawn)))
    return segments


def run_seconds(config: SRDCConfig, data: RunData, segments: list[Segment], row: CostRow) -> float:
    """The run's training iterations and its ``epochs + 1`` preparation passes, in seconds."""
    train = sum(segment.epochs * segment.iterations * row.iteration_s(segment.batches) for segment in segments)
    return train + (config.epochs + 1) * data.prepared_images * row.prepare_s_per_image


def segments_text(segments: list[Segment]) -> str:
    """``44x2`` (44 iterations of 2 batches every epoch) or ``7x1 (20 ep), 44x2 (180 ep)``."""
    if len(segments) == 1:
        return f"{segments[0].iterations}x{segments[0].batches}"
    return ", ".join(f"{s.iterations}x{s.batches} ({s.epochs} ep)" for s in segments)


# -- an experiment's plan -----------------------------------------------------------------------------------------
@dataclass
class TrialPlan:
    """One trial: what the table shows of it, its runs' draws, its time (``None``: no cost row)."""

    label: tuple[str, ...]
    iterations: str
    seconds: float | None


@dataclass
class ExperimentPlan:
    """One Tune experiment of the command: its trials, resources, concurrency and estimate."""

    name: str
    what: str
    epochs: int
    columns: tuple[str, ...]
    trials: list[TrialPlan]
    resources: dict[str, float]
    at_once: int
    limit: str
    rows: list[CostRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def estimated(self) -> bool:
        return bool(self.trials) and all(trial.seconds is not None for trial in self.trials)

    @property
    def unit(self) -> str:
        return "GPU" if self.resources["gpu"] > 0 else "CPU"

    @property
    def device_hours(self) -> float:
        """GPU-hours (CPU-hours for CPU trials): each trial's time x what it holds."""
        held = self.resources["gpu"] or self.resources["cpu"]
        return sum(trial.seconds or 0.0 for trial in self.trials) * held / HOUR

    @property
    def wall_s(self) -> float:
        """Trials started in order whenever one of the ``at_once`` slots frees."""
        slots = [0.0] * self.at_once
        for trial in self.trials:
            heapq.heappush(slots, heapq.heappop(slots) + (trial.seconds or 0.0))
        return max(slots)

    def describe(self) -> str:
        gpu = f", {self.resources['gpu']:g} GPU" if self.resources["gpu"] else ", no GPU"
        waves = math.ceil(len(self.trials) / self.at_once)
        lines = [f"{self.name}: {self.what}, {self.epochs} epochs each",
                 f"  resources per trial: {self.resources['cpu']:g} CPU{gpu}",
                 f"  at once: {self.at_once} ({self.limit}), {waves} wave(s)"]
        for row in self.rows:
            lines += [f"  per-epoch costs: {row.key.describe()}: {row.iteration_s_one_batch:.3g} s per one-batch "
                      f"iteration, {row.iteration_s_two_batches:.3g} s per two-batch iteration, "
                      f"{row.prepare_s_per_image * 1000:.3g} ms per image of the preparation pass",
                      f"    {provenance(row)}"]
        lines += [f"  note: {note}" for note in self.notes]
        lines += [f"  no estimate: {missing}" for missing in self.missing]
        lines += ["", *trial_table(self), ""]
        if self.estimated:
            lines.append(f"  total: {len(self.trials)} trials, {self.device_hours:.1f} {self.unit}-hours, wall time "
                         f"{self.wall_s / HOUR:.1f} h with {self.at_once} at once")
        else:
            lines.append(f"  total: {len(self.trials)} trials, no estimate")
        return "\n".join(lines)


def provenance(row: CostRow) -> str:
    """Where a row's figures come from, in one line (the whole provenance is in the table)."""
    where = row.provenance.get("source") or row.provenance.get("command", "")
    return f"{row.status}, date {row.provenance.get('date', 'not recorded')}: {where} (more in {TABLE_NAME})"


def trial_table(plan: ExperimentPlan) -> list[str]:
    """A row per distinct trial (seeds merged): how many, iterations x batches per epoch, s/epoch, h/trial."""
    groups: dict[tuple[str, ...], list[TrialPlan]] = {}
    for trial in plan.trials:
        groups.setdefault(trial.label, []).append(trial)
    unit = f"{plan.unit}-h"
    lines = ["  | " + " | ".join(plan.columns) + f" | trials | iterations x batches / epoch | s / epoch | h / trial "
             f"| {unit} |", "  |" + "---|" * (len(plan.columns) + 5)]
    held = plan.resources["gpu"] or plan.resources["cpu"]
    for label, trials in groups.items():
        seconds = trials[0].seconds
        cost = ["—", "—", "—"] if seconds is None else \
            [f"{seconds / plan.epochs:.1f}", f"{seconds / HOUR:.2f}", f"{len(trials) * seconds * held / HOUR:.1f}"]
        lines.append("  | " + " | ".join(label) + f" | {len(trials)} | {trials[0].iterations} | "
                     + " | ".join(cost) + " |")
    return lines


class Estimator:
    """Prices trials against the cost table for one cluster."""

    def __init__(self, rows: list[CostRow], cluster: Cluster) -> None:
        self.rows = rows
        self.cluster = cluster
        self.facts = DataFacts()

    def trial(self, label: tuple[str, ...], configs: list[SRDCConfig], gpus: float,
              experiment: ExperimentPlan) -> TrialPlan:
        """One trial of ``configs`` (its runs) on ``gpus`` GPUs; the rows used and the missing ones go to
        ``experiment``."""
        seconds: float | None = 0.0
        texts = []
        for config in configs:
            data = self.facts.run(config)
            segments = schedule(config, data)
            texts.append(segments_text(segments))
            row = self.row(config, data, gpus > 0, experiment)
            seconds = None if row is None or seconds is None else seconds + run_seconds(config, data, segments, row)
        if seconds is not None and gpus > 0:
            seconds /= min(gpus, 1.0)
        return TrialPlan(label, " / ".join(dict.fromkeys(texts)), seconds)

    def row(self, config: SRDCConfig, data: RunData, gpu: bool, experiment: ExperimentPlan) -> CostRow | None:
        device = (self.cluster.gpu_name or "gpu") if gpu else CPU
        key = CostKey(data.backbone, data.image_size, config.batch_size,
                      dtype_name(config.uses_bf16(gpu), config.uses_channels_last(gpu), gpu), device)
        row, note = find_row(self.rows, key)
        if row is None:
            missing = (f"{TABLE_NAME} has no row for {key.describe()}; measure it"
                       f"{' on such a GPU' if gpu else ''}: {measure_command(key)}")
            if missing not in experiment.missing:
                experiment.missing.append(missing)
            return None
        if row not in experiment.rows:
            experiment.rows.append(row)
        if note and note not in experiment.notes:
            experiment.notes.append(note)
        return row


def new_experiment(name: str, what: str, epochs: int, columns: tuple[str, ...], trials: int, launch: Launch,
                   cluster: Cluster, max_concurrent: int | None) -> ExperimentPlan:
    resources = launch.trial_resources(cluster.gpus)
    if launch.plan_gpus is not None and resources["gpu"] == 0:
        raise SRDCInputError("--plan-gpus plans GPU trials, but --gpus-per-trial 0 runs them on CPUs; drop one")
    count, limit = at_once(trials, resources, cluster, max_concurrent)
    return ExperimentPlan(name, what, epochs, columns, [], resources, count, limit)


def study_experiment(plan: Plan, launch: Launch, estimator: Estimator, max_concurrent: int | None) -> ExperimentPlan:
    """A study's one experiment: a trial per grid cell."""
    grid = [key for key, values in plan.grid.items() if is_grid(values)]
    dims = [(len(plan.tasks), "tasks"), (len(plan.variants), "variants"), (len(plan.seeds), "seeds"),
            *((len(plan.grid[key]), key) for key in grid)]
    configs = grid_configs(plan)
    what = f"{len(configs)} trials = " + " x ".join(f"{count} {name.removesuffix('s') if count == 1 else name}"
                                                     for count, name in dims)
    experiment = new_experiment(plan.name, what, plan.epochs, ("task", "variant", *grid), len(configs), launch,
                                estimator.cluster, max_concurrent)
    for config in configs:
        label = tuple(str(config[key]) for key in ("task", "variant", *grid))
        experiment.trials.append(estimator.trial(label, run_configs(config), experiment.resources["gpu"], experiment))
    return experiment


def lockstep_experiment(setup: Setup, phase: PhaseSpec, estimator: Estimator) -> ExperimentPlan:
    """A search or promotion phase: its trials, each training the study's tasks x seeds in lockstep on its dataset."""
    plan, launch, dataset, trials = setup.plan, setup.launch, phase.dataset, phase.trials
    what = (f"{trials} trials, each {len(plan.tasks)} task(s) x {len(plan.seeds)} seed(s) in lockstep on "
            f"{dataset}")
    experiment = new_experiment(phase.name, what, plan.epochs, ("tasks", "variant"), trials, launch,
                                estimator.cluster, launch.max_concurrent)
    label = (" + ".join(plan.tasks), plan.variants[0])
    if dataset == FEATURES:
        experiment.missing.append("the features tier (the head on cached backbone features) is not in the cost "
                                  "table; it takes minutes, plus extracting the features once")
        experiment.trials = [TrialPlan(label, "—", None) for _ in range(trials)]
        return experiment
    space = lockstep_space(plan, {task: task for task in plan.tasks}, dataset, setup.options.objective)
    configs = run_configs({key: value for key, value in space.items() if key not in plan.grid})
    trial = estimator.trial(label, configs, experiment.resources["gpu"], experiment)
    experiment.trials = [trial] * trials
    return experiment


def search_experiments(search: Search, launch: Launch, estimator: Estimator) -> list[ExperimentPlan]:
    """Each phase the search would run (:meth:`~srdc.harness.search_setup.Setup.phases`): the search, the promotion
    (``--promote K``) and the winner's re-run."""
    setup = resolve(search, launch)
    experiments = []
    for phase in setup.phases():
        if phase.kind == RERUN:
            rerun = rerun_launch(setup)
            rerun_plan = plan_study(rerun_study(setup, {"params": {}, "trial_id": "the winner"}), rerun)
            experiments.append(study_experiment(rerun_plan, rerun, estimator, rerun.max_concurrent))
        else:
            experiments.append(lockstep_experiment(setup, phase, estimator))
    return experiments


# -- the dry run ---------------------------------------------------------------------------------------------------
@dataclass
class DryRun:
    """What ``--dry-run`` prints: the cluster and every experiment's plan."""

    title: str
    cluster: Cluster
    experiments: list[ExperimentPlan]
    resumed: bool = False

    def describe(self) -> str:
        lines = [f"dry run of {self.title}: nothing was run or written",
                 f"cluster: {self.cluster.describe()}"]
        if self.resumed:
            lines.append("--resume: planned as if no trial had run (finished trials would be kept)")
        lines += ["", *(experiment.describe() + "\n" for experiment in self.experiments)]
        if len(self.experiments) > 1 and all(e.estimated for e in self.experiments):
            hours = {unit: sum(e.device_hours for e in self.experiments if e.unit == unit) for unit in ("GPU", "CPU")}
            spent = ", ".join(f"{value:.1f} {unit}-hours" for unit, value in hours.items() if value)
            wall = sum(e.wall_s for e in self.experiments) / HOUR
            lines.append(f"all {len(self.experiments)} experiments, one after another: {spent}, wall time {wall:.1f} h")
        return "\n".join(lines).rstrip() + "\n"


def dry_run(declaration: Study | Search, launch: Launch, costs: Path = COSTS_FILE) -> DryRun:
    """Plan ``declaration`` as ``launch`` asks, against the cost table at ``costs``; runs and writes nothing."""
    cluster = find_cluster(launch)
    estimator = Estimator(load_costs(costs), cluster)
    if isinstance(declaration, Search):
        experiments = search_experiments(declaration, launch, estimator)
        title = f"search {experiments[0].name}"
    else:
        plan = plan_study(declaration, launch)
        experiments = [study_experiment(plan, launch, estimator, launch.max_concurrent)]
        paper = f" (paper {declaration.paper_table})" if declaration.paper_table else ""
        title = f"study {plan.name}{paper}"
    return DryRun(title, cluster, experiments, launch.resume)

