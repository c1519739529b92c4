"""The trainable: what a trial trains (one run, or a search trial's runs in lockstep), what each epoch reports,
and a trial continued from its checkpoint."""

import statistics

import pytest
import torch
from conftest import without_timings

from srdc.config import SRDCConfig
from srdc.errors import SRDCInputError
from srdc.harness.trainable import Lockstep, run_configs
from srdc.trainer import Trainer

RUN = {"dataset": "embedded", "task": "digits->digits_photo", "variant": "srdc", "seed": 0, "epochs": 3,
       "max_samples": 200, "batch_size": 32}
LOCKSTEP_RUN = {"dataset": "embedded", "variant": "srdc", "epochs": 2, "max_samples": 100, "batch_size": 32,
                "lr": 0.02}
TASKS = [{"task": "digits->digits_photo"}, {"task": "digits_color->digits", "mu_init": "target"}]


def test_trial_config_drops_the_study_keys_and_rejects_unknown_fields():
    (config,) = run_configs({**RUN, "study": "ablation"})
    assert (config.source, config.target, config.epochs) == ("digits", "digits_photo", 3)
    with pytest.raises(SRDCInputError, match="unknown config field"):
        run_configs({**RUN, "lambda": 0.5})


def test_a_single_runs_report_is_its_history_row_and_running_summary():
    one_thread()
    runs = train(Lockstep({**RUN, "epochs": 1, "study": "s"}))
    (member,) = runs.members
    trainer = member.trainer
    metrics = runs.report(1)
    assert metrics["epoch"] == 1 and metrics["acc_target"] == trainer.history[-1]["acc_target"]
    assert {"loss_total", "lr", "lambda", "infomax", "wall_s_epoch"} <= set(metrics)
    summary = trainer.summary()
    for key in ("acc_last", "acc_best_oracle", "acc_labelfree", "best_oracle_epoch", "labelfree_epoch", "wall_s"):
        assert metrics[key] == summary[key], key
    assert "config" not in metrics and "objective" not in metrics
    assert runs.history() == trainer.history and runs.summary() == summary


def trial_config(tasks: list[dict], seeds: list[int], objective: str = "labelfree") -> dict:
    """A search trial's config as Tune hands it to the trainable."""
    return {**LOCKSTEP_RUN, "tasks": tasks, "seeds": seeds, "search_objective": objective, "study": "t", "task": "",
            "seed": ""}


def train(runs: Lockstep, epochs: int | None = None) -> Lockstep:
    runs.initialise()
    while not runs.done and (epochs is None or runs.epoch < epochs):
        runs.step()
    return runs


def one_thread() -> None:
    torch.set_num_threads(1)  # like a 1-CPU trial; sums in float must see the same thread count


def test_a_trials_objective_is_the_mean_over_separate_single_seed_runs(monkeypatch):
    one_thread()
    runs = train(Lockstep(trial_config(TASKS, [0, 1])))
    alone = []
    for entry in TASKS:
        for seed in (0, 1):
            trainer = Trainer(SRDCConfig.from_dict({**LOCKSTEP_RUN, **entry, "seed": seed}))
            trainer.fit()
            alone.append(trainer)

    assert [without_timings(m.trainer.history) for m in runs.members] == [without_timings(t.history) for t in alone]
    report = runs.report(2)
    best_infomax = [max(row["infomax"] for row in trainer.history if row["epoch"] >= 1) for trainer in alone]
    assert report["objective"] == report["objective_labelfree"] == statistics.mean(best_infomax)
    assert report["objective_oracle"] == statistics.mean(t.summary()["acc_best_oracle"] for t in alone)
    assert report["acc_labelfree"] == statistics.mean(t.summary()["acc_labelfree"] for t in alone)
    assert report["digits_color-digits.seed1.acc_target"] == alone[3].history[2]["acc_target"]
    assert [row["epoch"] for row in runs.history()] == [0, 1, 2]


def test_a_trial_continued_from_its_checkpoint_matches_the_uninterrupted_one(tmp_path):
    one_thread()
    config = trial_config(TASKS[:1], [0, 1], "oracle")
    whole = train(Lockstep(config))
    first = train(Lockstep(config), epochs=1)
    first.save(tmp_path)
    second = Lockstep(config)
    second.load(tmp_path)
    assert second.started and second.epoch == 1
    train(second)
    assert without_timings(second.history()) == without_timings(whole.history())
    assert second.report(2)["objective"] == whole.report(2)["objective_oracle"]
