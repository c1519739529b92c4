"""``--dry-run``: what a study or search would run and what it would cost, printed; nothing runs, nothing is
written (no launch file, no Ray trial, no MLflow run, not even the storage folder).

For each sweep (what one ``Tuner`` runs) the command would start (a study: one; a search: the search, the promotion
with ``--promote K``, the winner's re-run) the dry run lists the trials, the resources per trial, how many run at
once, and the estimated wall time and GPU-hours (CPU-hours for CPU trials) from the per-epoch cost table
(:mod:`srdc.harness.costs`), each trial priced by :mod:`srdc.harness.estimate` (its runs' iterations, as the
trainer draws them, and preparation passes; a fraction of a GPU makes it longer); a search's phases are the ones
it would run (:meth:`srdc.harness.search_setup.Setup.phases`):

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
loader slower than the GPU (JPEG decoding needs enough ``--cpus-per-trial``: a GPU trial of image files with fewer
than 2 CPUs or no loader worker gets a warning), Tune's own overhead.
"""

from __future__ import annotations

import heapq
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import ray
import torch

from srdc.config import SRDCConfig
from srdc.data.benchmarks import BENCHMARKS
from srdc.errors import SRDCInputError
from srdc.harness.costs import COSTS_FILE, CostRow, load_costs
from srdc.harness.declarations import Search, Study, is_grid
from srdc.harness.estimate import TABLE_NAME, Estimator, Pricing
from srdc.harness.options import FEATURES, Launch
from srdc.harness.plan import Plan, grid_configs, lockstep_space, plan_study
from srdc.harness.search_setup import RERUN, PhaseSpec, Setup, rerun_launch, rerun_study, resolve
from srdc.harness.tuner import ray_session
from srdc.trial_config import run_configs

HOUR = 3600.0
ACCELERATOR = "accelerator_type:"  # Ray's resource naming a node's GPU model
IMAGE_FILES = {*BENCHMARKS, "folder", "imagelist"}  # the datasets whose loaders decode image files


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


# -- a sweep's plan -----------------------------------------------------------------------------------------------
@dataclass
class TrialPlan:
    """One trial: what the table shows of it, its runs' draws, its time (``None``: no cost row)."""

    label: tuple[str, ...]
    iterations: str
    seconds: float | None


@dataclass
class SweepPlan:
    """One sweep of the command: its trials, resources, concurrency and estimate."""

    name: str
    what: str
    epochs: int
    columns: tuple[str, ...]
    trials: list[TrialPlan]
    resources: dict[str, float]
    at_once: int
    limit: str
    pricing: Pricing = field(default_factory=Pricing)
    warnings: list[str] = field(default_factory=list)

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
        for row in self.pricing.rows:
            lines += [f"  per-epoch costs: {row.key.describe()}: {row.iteration_s_one_batch:.3g} s per one-batch "
                      f"iteration, {row.iteration_s_two_batches:.3g} s per two-batch iteration, "
                      f"{row.prepare_s_per_image * 1000:.3g} ms per image of the preparation pass",
                      f"    {provenance(row)}"]
        lines += [f"  note: {note}" for note in self.pricing.notes]
        lines += [f"  no estimate: {missing}" for missing in self.pricing.missing]
        lines += [f"  warning: {warning}" for warning in self.warnings]
        lines += ["", *trial_table(self), ""]
        if self.estimated:
            lines.append(f"  total: {len(self.trials)} trials, {device_time(self.device_hours, self.unit)}, wall time "
                         f"{duration(self.wall_s)} with {self.at_once} at once")
        else:
            lines.append(f"  total: {len(self.trials)} trials, no estimate")
        return "\n".join(lines)


def duration(seconds: float) -> str:
    """A wall time as printed: in hours from one hour on (``2.2 h``), else in minutes (``48 min``) or seconds."""
    if seconds >= HOUR:
        return f"{seconds / HOUR:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def device_time(hours: float, unit: str) -> str:
    """Device time as printed: ``16.5 GPU-hours``, under one hour ``12 GPU-minutes`` (or seconds)."""
    if hours >= 1:
        return f"{hours:.1f} {unit}-hours"
    seconds = hours * HOUR
    return f"{seconds / 60:.0f} {unit}-minutes" if seconds >= 60 else f"{seconds:.0f} {unit}-seconds"


def provenance(row: CostRow) -> str:
    """Where a row's figures come from, in one line (the whole provenance is in the table)."""
    where = row.provenance.get("source") or row.provenance.get("command", "")
    return f"{row.status}, date {row.provenance.get('date', 'not recorded')}: {where} (more in {TABLE_NAME})"


def trial_table(plan: SweepPlan) -> list[str]:
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


def new_sweep(name: str, what: str, epochs: int, columns: tuple[str, ...], trials: int, launch: Launch,
              cluster: Cluster, max_concurrent: int | None) -> SweepPlan:
    resources = launch.trial_resources(cluster.gpus)
    if launch.plan_gpus is not None and resources["gpu"] == 0:
        raise SRDCInputError("--plan-gpus plans GPU trials, but --gpus-per-trial 0 runs them on CPUs; drop one")
    count, limit = at_once(trials, resources, cluster, max_concurrent)
    return SweepPlan(name, what, epochs, columns, [], resources, count, limit)


def trial_plan(label: tuple[str, ...], configs: list[SRDCConfig], sweep: SweepPlan,
               estimator: Estimator) -> TrialPlan:
    """One trial of ``configs`` (its runs) at the sweep's GPUs per trial, priced into its ``pricing``; a loader
    too weak for the GPU goes to its ``warnings``."""
    cost = estimator.trial(configs, sweep.resources["gpu"], sweep.pricing)
    warning = loader_warning(configs, sweep.resources)
    if warning is not None and warning not in sweep.warnings:
        sweep.warnings.append(warning)
    return TrialPlan(label, cost.iterations, cost.seconds)


def loader_warning(configs: list[SRDCConfig], resources: dict[str, float]) -> str | None:
    """A line when a GPU trial decodes image files with fewer than 2 CPUs or no loader worker: one process cannot
    decode images at the pace the GPU figures assume (docs/cluster.md, "The data loader")."""
    workers = [config.num_workers for config in configs if config.dataset in IMAGE_FILES]
    if resources["gpu"] == 0 or not workers or (resources["cpu"] >= 2 and min(workers) > 0):
        return None
    return (f"{resources['cpu']:g} CPU and {min(workers)} loader workers per trial: too few to decode images at the "
            f"GPU's pace planned here (it takes longer); give each trial --cpus-per-trial N+1 --set num_workers=N")


def study_sweep(plan: Plan, launch: Launch, cluster: Cluster, estimator: Estimator,
                max_concurrent: int | None) -> SweepPlan:
    """A study's one sweep: a trial per grid cell."""
    grid = [key for key, values in plan.grid.items() if is_grid(values)]
    dims = [(len(plan.tasks), "tasks"), (len(plan.variants), "variants"), (len(plan.seeds), "seeds"),
            *((len(plan.grid[key]), key) for key in grid)]
    configs = grid_configs(plan)
    what = f"{len(configs)} trials = " + " x ".join(f"{count} {name.removesuffix('s') if count == 1 else name}"
                                                     for count, name in dims)
    sweep = new_sweep(plan.name, what, plan.epochs, ("task", "variant", *grid), len(configs), launch, cluster,
                      max_concurrent)
    for config in configs:
        label = tuple(str(config[key]) for key in ("task", "variant", *grid))
        sweep.trials.append(trial_plan(label, run_configs(config), sweep, estimator))
    return sweep


def lockstep_sweep(setup: Setup, phase: PhaseSpec, cluster: Cluster, estimator: Estimator) -> SweepPlan:
    """A search or promotion phase: its trials, each training the study's tasks x seeds in lockstep on its dataset."""
    plan, launch, dataset, trials = setup.plan, setup.launch, phase.dataset, phase.trials
    what = (f"{trials} trials, each {len(plan.tasks)} task(s) x {len(plan.seeds)} seed(s) in lockstep on "
            f"{dataset}")
    sweep = new_sweep(phase.name, what, plan.epochs, ("tasks", "variant"), trials, launch, cluster,
                      launch.max_concurrent)
    label = (" + ".join(plan.tasks), plan.variants[0])
    if dataset == FEATURES:
        sweep.pricing.missing.append("the features tier (the head on cached backbone features) is not in the "
                                     "cost table; it takes minutes, plus extracting the features once")
        sweep.trials = [TrialPlan(label, "—", None) for _ in range(trials)]
        return sweep
    space = lockstep_space(plan, {task: task for task in plan.tasks}, dataset, setup.options.objective)
    configs = run_configs({key: value for key, value in space.items() if key not in plan.grid})
    sweep.trials = [trial_plan(label, configs, sweep, estimator)] * trials
    return sweep


def search_sweeps(search: Search, launch: Launch, cluster: Cluster, estimator: Estimator) -> list[SweepPlan]:
    """Each phase the search would run (:meth:`~srdc.harness.search_setup.Setup.phases`): the search, the promotion
    (``--promote K``) and the winner's re-run."""
    setup = resolve(search, launch)
    sweeps = []
    for phase in setup.phases():
        if phase.kind == RERUN:
            rerun = rerun_launch(setup)
            rerun_plan = plan_study(rerun_study(setup, {"params": {}, "trial_id": "the winner"}), rerun)
            sweeps.append(study_sweep(rerun_plan, rerun, cluster, estimator, rerun.max_concurrent))
        else:
            sweeps.append(lockstep_sweep(setup, phase, cluster, estimator))
    return sweeps


# -- the dry run ---------------------------------------------------------------------------------------------------
@dataclass
class DryRun:
    """What ``--dry-run`` prints: the cluster and every sweep's plan."""

    title: str
    cluster: Cluster
    sweeps: list[SweepPlan]
    resumed: bool = False

    def describe(self) -> str:
        lines = [f"dry run of {self.title}: nothing was run or written",
                 f"cluster: {self.cluster.describe()}"]
        if self.resumed:
            lines.append("--resume: planned as if no trial had run (finished trials would be kept)")
        lines += ["", *(sweep.describe() + "\n" for sweep in self.sweeps)]
        if len(self.sweeps) > 1 and all(sweep.estimated for sweep in self.sweeps):
            hours = {unit: sum(sweep.device_hours for sweep in self.sweeps if sweep.unit == unit)
                     for unit in ("GPU", "CPU")}
            spent = ", ".join(device_time(value, unit) for unit, value in hours.items() if value)
            wall = sum(sweep.wall_s for sweep in self.sweeps)
            lines.append(f"all {len(self.sweeps)} sweeps, one after another: {spent}, wall time {duration(wall)}")
        return "\n".join(lines).rstrip() + "\n"


def dry_run(declaration: Study | Search, launch: Launch, costs: Path = COSTS_FILE) -> DryRun:
    """Plan ``declaration`` as ``launch`` asks, against the cost table at ``costs``; runs and writes nothing."""
    cluster = find_cluster(launch)
    estimator = Estimator(load_costs(costs), cluster.gpu_name)
    if isinstance(declaration, Search):
        sweeps = search_sweeps(declaration, launch, cluster, estimator)
        title = f"search {sweeps[0].name}"
    else:
        plan = plan_study(declaration, launch)
        sweeps = [study_sweep(plan, launch, cluster, estimator, launch.max_concurrent)]
        paper = f" (paper {declaration.paper_table})" if declaration.paper_table else ""
        title = f"study {plan.name}{paper}"
    return DryRun(title, cluster, sweeps, launch.resume)

