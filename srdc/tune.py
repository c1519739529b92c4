"""The Ray Tune function trainable: one trial is one SRDC run, reported and checkpointed after every epoch.

A trial config is a flat dict of :class:`srdc.config.SRDCConfig` fields plus the study-level keys in
``STUDY_KEYS`` (dropped before the config is built). Each report carries the history row of the epoch (epoch
0 is the untrained model), the running model-selection results of :meth:`Trainer.summary` and a checkpoint of
the complete training state, so a retried or resumed trial continues bit for bit from its last epoch.
``summary.json`` and ``history.jsonl`` are rewritten in the trial directory after every epoch (the MLflow
callback logs them as artifacts). Ray's ``get_trial_dir()`` is the driver's copy of the trial folder in a fresh
worker and the worker's working directory in a reused one; the study runner syncs the latter to the trial
folder in storage (``SyncConfig(sync_artifacts=True)``). Every checkpoint holds both files as well.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray.tune

from srdc.config import SRDCConfig
from srdc.runio import read_checkpoint, save_run, write_history, write_summary
from srdc.trainer import Trainer

# trial-config keys that describe the study, not the run
STUDY_KEYS = frozenset({"study"})
# running results of Trainer.summary() reported with every epoch
SUMMARY_METRICS = ("acc_last", "acc_best_oracle", "acc_labelfree", "best_oracle_epoch", "labelfree_epoch", "wall_s")

EpochHook = Callable[[Trainer], None]


def config_from_trial(trial_config: dict[str, Any]) -> SRDCConfig:
    """The run's config: the trial config without the study-level keys (unknown keys are an error)."""
    return SRDCConfig.from_dict({key: value for key, value in trial_config.items() if key not in STUDY_KEYS})


def epoch_metrics(row: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """What one report holds: the epoch's history row and the running summary metrics."""
    return {**row, **{key: summary[key] for key in SUMMARY_METRICS}}


def restore_latest(trainer: Trainer) -> None:
    """Load the trial's latest checkpoint into ``trainer`` (after a failure or a ``Tuner.restore``), if any."""
    checkpoint = ray.tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            trainer.load_state_dict(read_checkpoint(Path(folder)))


def report_epoch(trainer: Trainer, trial_dir: Path) -> None:
    """Write summary/history into ``trial_dir`` and report the last epoch with a checkpoint of the whole state."""
    summary = trainer.summary()
    write_history(trial_dir, trainer.history)
    write_summary(trial_dir, summary)
    with tempfile.TemporaryDirectory(prefix="srdc-checkpoint-") as folder:
        save_run(Path(folder), trainer)
        checkpoint = ray.tune.Checkpoint.from_directory(folder)
        ray.tune.report(epoch_metrics(trainer.history[-1], summary), checkpoint=checkpoint)


def run_trial(trial_config: dict[str, Any], after_epoch: EpochHook | None = None) -> None:
    """Train (or continue) the trial's run, reporting every epoch; ``after_epoch(trainer)`` follows each report.

    ``after_epoch`` lets a test trainable wrap this one (fault injection); the study harness passes none.
    """
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # not a line per checkpoint in the study's console
    trainer = Trainer(config_from_trial(trial_config))
    restore_latest(trainer)
    trial_dir = Path(ray.tune.get_context().get_trial_dir())
    trial_dir.mkdir(parents=True, exist_ok=True)
    if trainer.plan is None:
        trainer.initialise()
        report_epoch(trainer, trial_dir)
    while not trainer.done:
        trainer.step()
        report_epoch(trainer, trial_dir)
        if after_epoch is not None:
            after_epoch(trainer)


def train_srdc(trial_config: dict[str, Any]) -> None:
    """The Ray Tune function trainable of every study (``tune.with_resources(train_srdc, ...)``)."""
    run_trial(trial_config)
