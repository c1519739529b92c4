"""Helpers shared by the harness tests: load what a script in studies/ declares, and plan it; train a run bare; a
trainable that crashes once; a study's MLflow child runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from srdc.harness.declarations import Study
from srdc.harness.options import build_parser, launch_from_args
from srdc.harness.plan import Plan, plan_study
from srdc.harness.trainable import run_trial
from srdc.trainer import Trainer
from srdc.trial_config import run_configs

if TYPE_CHECKING:
    from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[2]


def load_declaration(name: str, attribute: str = "STUDY") -> Any:
    """The ``attribute`` (``STUDY``, ``SEARCH``) that ``studies/NAME.py`` declares, without running it."""
    spec = importlib.util.spec_from_file_location(name, REPO / "studies" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, attribute)


def plan_of(study: Study, *argv: str) -> Plan:
    """What the study's script would run for the command line ``argv``."""
    return plan_study(study, launch_from_args(study, build_parser(study).parse_args(list(argv))))


def bare_history(config: dict) -> list[dict]:
    """The history of the same run trained in this process, without Ray (one thread, like a 1-CPU trial)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(run_configs(config)[0])
        trainer.fit()
    finally:
        torch.set_num_threads(threads)
    return trainer.history


def crash_once_after(epoch: int, marker: Path):
    """A trainable that wraps the real one and raises once, right after reporting ``epoch``."""

    def crashing_trainable(config: dict) -> None:
        def crash(trainer: Trainer) -> None:
            if trainer.epoch == epoch and not marker.exists():
                marker.touch()
                raise RuntimeError(f"injected failure after epoch {epoch}")

        run_trial(config, after_epoch=crash)

    return crashing_trainable


def children(client: MlflowClient, experiment: str) -> list:
    """The MLflow child runs (one per trial) in ``experiment``."""
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id], "tags.`srdc.role` = 'child'")


def epochs_logged(client: MlflowClient, run) -> list[int]:
    """The epochs (steps) the MLflow ``run`` logged, sorted; one logged twice appears twice."""
    return sorted(metric.step for metric in client.get_metric_history(run.info.run_id, "epoch"))
