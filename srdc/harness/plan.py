"""A study resolved against its launch: exactly what Tune runs (the param space), checked before anything starts.

A trial config is a flat dict of :class:`srdc.config.SRDCConfig` fields plus ``study``; a search trial's holds the
runs it trains in lockstep (``tasks`` x ``seeds``, :mod:`srdc.harness.trainable`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from srdc.config import default_of
from srdc.data import check_task
from srdc.errors import SRDCInputError
from srdc.harness.declarations import Study, is_grid, tune_domain
from srdc.harness.options import Launch, parse_overrides
from srdc.methods import METHODS
from srdc.trial_config import run_configs


@dataclass(frozen=True)
class Plan:
    """A study resolved against a launch."""

    name: str
    dataset: str
    tasks: tuple[str, ...]
    variants: tuple[str, ...]
    seeds: tuple[int, ...]
    grid: Mapping[str, Sequence[Any] | Any]
    fixed: dict[str, Any]
    task_config: dict[str, dict[str, Any]]
    rows: str
    study_params: dict[str, Any]

    @property
    def epochs(self) -> int:
        return int(self.fixed["epochs"])


@dataclass(frozen=True)
class PerTask:
    """A config value that depends on the trial's task (``tune.sample_from``; picklable for ``Tuner.restore``)."""

    key: str
    values: Mapping[str, Any]
    default: Any

    def __call__(self, config: dict[str, Any]) -> Any:
        return self.values.get(config["task"], self.default)


def _subset(chosen: tuple[str, ...] | None, declared: tuple[str, ...], what: str) -> tuple[str, ...]:
    if chosen is None:
        return declared
    unknown = [item for item in chosen if item not in declared]
    if unknown:
        raise SRDCInputError(f"--{what} {' '.join(unknown)}: not in the study's {what} ({', '.join(declared)})")
    return tuple(chosen)


def fixed_fields(study: Study, launch: Launch) -> dict[str, Any]:
    """The config every trial shares: the study's, then the smoke test's, ``--epochs``, then ``--set``."""
    overrides = parse_overrides(launch.overrides)
    grid_clash = sorted(set(overrides) & set(study.grid))
    if grid_clash:
        raise SRDCInputError(f"--set {', '.join(grid_clash)}: a grid dimension of study {study.name}")
    fixed = {"study": launch.study_name, "dataset": study.dataset, "data_root": launch.data_root,
             "epochs": default_of("epochs"), **study.config}
    if launch.smoke_test:
        if study.smoke is None:
            raise SRDCInputError(f"study {study.name} declares no smoke test")
        fixed.update({"dataset": study.smoke.dataset, **study.smoke.config, "epochs": study.smoke.epochs})
    if launch.epochs is not None:
        fixed["epochs"] = launch.epochs
    return {**fixed, **overrides}


def plan_study(study: Study, launch: Launch) -> Plan:
    """Resolve ``study`` against ``launch`` (smoke mapping, subsets, epochs, ``--set``)."""
    tasks = _subset(launch.tasks, study.tasks, "tasks")
    variants = _subset(launch.variants, study.variants, "variants")
    seeds = launch.seeds if launch.seeds is not None else study.seeds
    fixed = fixed_fields(study, launch)
    rename = study.smoke.task if launch.smoke_test else (lambda task: task)
    overridden = set(parse_overrides(launch.overrides))
    task_config = {rename(task): {k: v for k, v in values.items() if k not in overridden}
                   for task, values in study.task_config.items() if task in tasks}
    grid = {key: tune_domain(values) for key, values in study.grid.items()}
    params = {"study": fixed["study"], "dataset": fixed["dataset"], "paper_table": study.paper_table,
              "smoke_test": launch.smoke_test, "tasks": [rename(task) for task in tasks], "variants": list(variants),
              "seeds": list(seeds), "epochs": fixed["epochs"],
              **{f"grid.{key}": _describe(values) for key, values in grid.items()}}
    if launch.smoke_test:
        params["stand_ins"] = json.dumps(study.smoke.stand_ins(tasks))
    return Plan(name=fixed["study"], dataset=fixed["dataset"], tasks=tuple(map(rename, tasks)), variants=variants,
                seeds=tuple(seeds), grid=grid, fixed=fixed, task_config=task_config, rows=study.rows,
                study_params=params)


def _describe(values: Any) -> str:
    """A grid dimension as a parent-run param: ``[0.5, 1.0]`` or ``LogUniform (0.001, 0.1)``."""
    if is_grid(values):
        return json.dumps(list(values))
    return f"{values.get_sampler()} {values.domain_str}"


def per_task_fields(plan: Plan) -> dict[str, PerTask]:
    """The fields some task sets (``task_config``); the other tasks get the fixed or default value."""
    keys = sorted({key for values in plan.task_config.values() for key in values})
    return {key: PerTask(key, {task: config[key] for task, config in plan.task_config.items() if key in config},
                         plan.fixed.get(key, default_of(key))) for key in keys}


def param_space(plan: Plan) -> dict[str, Any]:
    """Tune's ``param_space`` of a study: fixed fields, the grid dimensions, per-task fields (``sample_from``)."""
    from ray import tune

    def dimension(values: Any) -> Any:
        if not is_grid(values):
            return values  # a search domain, sampled by Tune
        values = list(values)
        return values[0] if len(values) == 1 else tune.grid_search(values)

    space: dict[str, Any] = dict(plan.fixed)
    dims = {"task": plan.tasks, "variant": plan.variants, "seed": plan.seeds, **plan.grid}
    space.update({key: dimension(values) for key, values in dims.items()})
    for key, per_task in per_task_fields(plan).items():
        space[key] = per_task({"task": plan.tasks[0]}) if len(plan.tasks) == 1 else tune.sample_from(per_task)
    return space


def lockstep_space(plan: Plan, runs: Mapping[str, str], dataset: str, selection: str) -> dict[str, Any]:
    """Tune's ``param_space`` of a search trial: the study's fixed fields and searched domains, the runs it trains in
    lockstep, each task (``runs``: the plan's task -> the task as ``dataset`` names it) x each seed, and the
    ``selection`` it optimises."""
    fixed = {**plan.fixed, "dataset": dataset}
    tasks = [{"task": runs[task], **plan.task_config.get(task, {})} for task in plan.tasks]
    return {**fixed, **plan.grid, "variant": plan.variants[0], "tasks": tasks, "seeds": list(plan.seeds),
            "search_objective": selection, "task": " + ".join(plan.tasks), "seed": "+".join(map(str, plan.seeds))}


def grid_configs(plan: Plan) -> list[dict[str, Any]]:
    """Every trial config of the grid (sampled dimensions left out): what the study will run."""
    dims = {"task": plan.tasks, "variant": plan.variants, "seed": plan.seeds,
            **{key: list(values) for key, values in plan.grid.items() if is_grid(values)}}
    configs = []
    for cell in itertools.product(*dims.values()):
        config = {**plan.fixed, **dict(zip(dims, cell, strict=True))}
        config.update({key: per_task(config) for key, per_task in per_task_fields(plan).items()})
        configs.append(config)
    return configs


def check_plan(plan: Plan) -> None:
    """Fail before launching: every grid cell must make a valid config, and every task's data must be there with one
    label space (:func:`srdc.data.check_task`: from the files and metadata, no tensor loaded where the dataset can
    tell without)."""
    configs = [config for trial in grid_configs(plan) for config in run_configs(trial)]
    for config in configs:
        METHODS.check(config.variant)
    for config in {config.task_name: config for config in configs}.values():
        check_task(config)
