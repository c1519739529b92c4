"""The Optuna search: a trial's runs in lockstep and its objective, the command line, and the smoke search end to
end (ASHA stopping weak trials, one MLflow child per trial, interrupted and resumed; the two-tier variant)."""

import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import optuna
import pytest
import torch
from conftest import read_jsonl, without_timings
from mlflow import MlflowClient
from study_helpers import load_declaration

from srdc.config import SRDCConfig
from srdc.search import (
    MultiRun,
    default_startup_trials,
    main,
    resolve,
    run_objective,
    trial_space,
)
from srdc.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "studies" / "search_lambda_lr.py"
SMOKE_NAME = "search_lambda_lr-smoke"
RUN = {"dataset": "embedded", "variant": "srdc", "epochs": 2, "max_samples": 100, "batch_size": 32, "lr": 0.02}
TASKS = [{"task": "digits->digits_photo"}, {"task": "digits_color->digits", "mu_init": "target"}]


SEARCH = load_declaration("search_lambda_lr", "SEARCH")


def trial_config(tasks: list[dict], seeds: list[int], objective: str = "labelfree") -> dict:
    """A search trial's config as Tune hands it to the trainable."""
    return {**RUN, "tasks": tasks, "seeds": seeds, "objective": objective, "study": "t", "task": "", "seed": ""}


def train(runs: MultiRun, epochs: int | None = None) -> MultiRun:
    runs.initialise()
    while not runs.done and (epochs is None or runs.epoch < epochs):
        runs.step()
    return runs


def one_thread() -> None:
    torch.set_num_threads(1)  # like a 1-CPU trial; sums in float must see the same thread count


def test_a_trials_objective_is_the_mean_over_separate_single_seed_runs(monkeypatch):
    one_thread()
    runs = train(MultiRun(trial_config(TASKS, [0, 1])))
    alone = []
    for entry in TASKS:
        for seed in (0, 1):
            trainer = Trainer(SRDCConfig.from_dict({**RUN, **entry, "seed": seed}))
            trainer.fit()
            alone.append(trainer)

    assert [without_timings(m.trainer.history) for m in runs.members] == [without_timings(t.history) for t in alone]
    report = runs.metrics(2)
    best_infomax = [max(row["infomax"] for row in trainer.history if row["epoch"] >= 1) for trainer in alone]
    assert report["objective"] == report["objective_labelfree"] == statistics.mean(best_infomax)
    assert report["objective_oracle"] == statistics.mean(t.summary()["acc_best_oracle"] for t in alone)
    assert report["acc_labelfree"] == statistics.mean(t.summary()["acc_labelfree"] for t in alone)
    assert report["digits_color-digits.seed1.acc_target"] == alone[3].history[2]["acc_target"]
    assert [row["epoch"] for row in runs.history()] == [0, 1, 2]


def test_a_trial_continued_from_its_checkpoint_matches_the_uninterrupted_one(tmp_path):
    one_thread()
    config = trial_config(TASKS[:1], [0, 1], "oracle")
    whole = train(MultiRun(config))
    first = train(MultiRun(config), epochs=1)
    first.save(tmp_path)
    second = MultiRun(config)
    second.load(tmp_path)
    assert second.started and second.epoch == 1
    train(second)
    assert without_timings(second.history()) == without_timings(whole.history())
    assert second.metrics(2)["objective"] == whole.metrics(2)["objective_oracle"]


def test_the_objectives_read_the_history_as_the_epoch_selections_do():
    history = [{"epoch": 0, "infomax": 0.9, "clustering_objective": 0.1, "acc_target": 95.0},
               {"epoch": 1, "infomax": 0.2, "clustering_objective": 3.0, "acc_target": 80.0},
               {"epoch": 2, "infomax": 0.5, "clustering_objective": 2.0, "acc_target": 30.0}]
    assert run_objective(history, "labelfree", "infomax") == 0.5  # epoch 0 (untrained) is no candidate
    assert run_objective(history, "labelfree", "clustering") == -2.0  # lower is better: negated
    assert run_objective(history, "oracle", "infomax") == 80.0


def test_the_objective_is_label_free_unless_asked_and_small_searches_are_not_random(tmp_path):
    storage = ["--storage-path", str(tmp_path)]
    setup = resolve(SEARCH, ["--smoke-test", *storage])
    assert setup.args.objective == "labelfree"
    assert trial_space(setup, setup.search_dataset)["objective"] == "labelfree"
    assert resolve(SEARCH, ["--smoke-test", "--objective", "oracle", *storage]).args.objective == "oracle"
    assert (setup.num_samples, setup.startup_trials(), setup.grace_period()) == (8, 3, 1)
    assert [default_startup_trials(n) for n in (8, 20, 40, 200)] == [3, 5, 10, 10]
    space = trial_space(setup, setup.search_dataset)
    assert space["seeds"] == [0, 1] and space["dataset"] == "embedded" and space["epochs"] == 3
    assert space["tasks"] == [{"task": "digits->digits_photo"}, {"task": "digits_color->digits", "mu_init": "target"}]


@pytest.mark.parametrize(("argv", "message"), [
    (["--promote", "2"], "add --dataset features"),
    (["--rerun-seeds", "1", "7"], "must be fresh"),
    (["--resume"], "no search"),
])
def test_bad_input_exits_2_with_one_message(argv, message, tmp_path, capsys):
    assert main(SEARCH, ["--smoke-test", "--storage-path", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


# -- end to end ---------------------------------------------------------------------------------------------------
def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def optuna_db(storage: Path) -> Path:
    return storage / SMOKE_NAME / "optuna.db"


def told_so_far(storage: Path) -> int:
    """How many trials the running search has told Optuna (read-only: the driver may be creating the tables)."""
    try:
        with closing(sqlite3.connect(f"file:{optuna_db(storage)}?mode=ro", uri=True)) as db:
            return db.execute("SELECT COUNT(*) FROM trials WHERE state != 'RUNNING'").fetchone()[0]
    except sqlite3.OperationalError:  # no file or no table yet
        return 0


def optuna_trials(storage: Path) -> list[optuna.trial.FrozenTrial]:
    """The Optuna study's trials (once no search process writes to it)."""
    return optuna.load_study(study_name=SMOKE_NAME, storage=f"sqlite:///{optuna_db(storage)}").get_trials()


def searched(values: dict) -> tuple[float, ...]:
    return tuple(values[key] for key in ("lr", "lambda_scale", "lambda_gamma"))


def tune_trials(storage: Path, name: str) -> dict[str, tuple[dict, list[dict]]]:
    """Each trial's config and reported results (Tune's params.json and result.json), by trial id."""
    trials = {}
    for folder in sorted(path.parent for path in (storage / name).glob("*/result.json")):
        rows = read_jsonl(folder / "result.json")
        if rows:
            trials[rows[0]["trial_id"]] = (json.loads((folder / "params.json").read_text()), rows)
    return trials


def children(client: MlflowClient, experiment: str, study: str) -> list:
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return client.search_runs([experiment_id], f"tags.study = '{study}'")


def parent_of(client: MlflowClient, experiment: str, study: str):
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs([experiment_id], f"tags.`srdc.study` = '{study}'")
    return parent


@pytest.mark.slow
def test_the_smoke_search_stops_weak_trials_tracks_each_and_resumes_without_rerunning_finished_ones(
        tmp_path, mlflow_server, ray_cluster, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    experiment, storage = "test_search_resume", tmp_path / "ray"
    argv = ["--smoke-test", "--tasks", "A->W", "--max-concurrent", "2", "--storage-path", str(storage),
            "--tracking-uri", mlflow_server, "--experiment", experiment]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    with open(tmp_path / "first.log", "w") as log:
        driver = subprocess.Popen([sys.executable, str(SCRIPT), *argv], stdout=log, stderr=subprocess.STDOUT,
                                  env=env, cwd=tmp_path)

    def three_told_to_optuna() -> bool:
        assert driver.poll() is None, (tmp_path / "first.log").read_text()
        return told_so_far(storage) >= 3

    try:
        wait_for(three_told_to_optuna, 400, "three finished trials")
        driver.send_signal(signal.SIGINT)
        assert driver.wait(timeout=120) == 130, (tmp_path / "first.log").read_text()
    finally:
        if driver.poll() is None:
            driver.kill()
    told = {trial.number: trial for trial in optuna_trials(storage) if trial.state.is_finished()}
    assert 3 <= len(told) < 8, "the interruption came after the search"
    before = tune_trials(storage, SMOKE_NAME)
    finished = {trial_id: rows for trial_id, (config, rows) in before.items()
                if searched(config) in {searched(trial.params) for trial in told.values()}}
    assert len(finished) == len(told)

    assert main(SEARCH, [*argv, "--resume"]) == 0
    out = capsys.readouterr().out

    trials = optuna_trials(storage)
    assert len(trials) == 8 and all(trial.state == optuna.trial.TrialState.COMPLETE for trial in trials)
    for number, trial in told.items():  # told before the interruption: not evaluated again
        assert (trials[number].params, trials[number].value) == (trial.params, trial.value)
        assert trials[number].intermediate_values == trial.intermediate_values
    after = tune_trials(storage, SMOKE_NAME)
    assert len(after) == 8
    assert all(after[trial_id][1] == rows for trial_id, rows in finished.items())
    for trial_id, (_, rows) in after.items():  # the interrupted trials continued: no epoch reported twice
        assert [row["epoch"] for row in rows] == list(range(len(rows))), f"trial {trial_id} restarted"
    last_epochs = sorted(rows[-1]["epoch"] for _, rows in after.values())
    assert last_epochs[-1] == 3 and last_epochs[0] < 3, f"ASHA stopped no trial: {last_epochs}"

    client = MlflowClient(mlflow_server)
    parent = parent_of(client, experiment, SMOKE_NAME)
    runs = children(client, experiment, SMOKE_NAME)
    assert sorted(run.data.tags["trial_id"] for run in runs) == sorted(after)
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for run in runs)
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "search")} >= {
        "search/optuna_trials.csv", "search/optuna_importances.json", "search/best_config.json"}

    full = {trial_id: trial for trial_id, trial in after.items() if trial[1][-1]["epoch"] == 3}
    best_id = max(full, key=lambda trial_id: full[trial_id][1][-1]["objective"])
    config, rows = full[best_id]
    best_line = next(line for line in out.splitlines() if line.startswith("best config:"))
    assert f"trial {best_id}" in best_line and f"lr={config['lr']:.4g}" in best_line
    assert f"objective {rows[-1]['objective']:.4f}" in best_line
    assert "oracle = epoch chosen with target labels" in out and "labelfree = epoch chosen without" in out
    rerun = children(client, experiment, f"{SMOKE_NAME}-rerun")
    assert sorted(int(run.data.tags["seed"]) for run in rerun) == [100, 101, 102]
    assert all(float(run.data.params["lr"]) == config["lr"] for run in rerun)


@pytest.mark.slow
def test_the_two_tier_search_promotes_its_best_feature_configs_to_fine_tuning_in_the_same_study(
        tmp_path, mlflow_server, ray_cluster, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    experiment, storage = "test_search_two_tier", tmp_path / "ray"
    argv = ["--smoke-test", "--tasks", "A->W", "--dataset", "features", "--num-samples", "4", "--grace-period", "3",
            "--promote", "2", "--rerun-seeds", "100", "--max-concurrent", "2", "--storage-path", str(storage),
            "--tracking-uri", mlflow_server, "--experiment", experiment]
    assert main(SEARCH, argv) == 0
    out = capsys.readouterr().out

    assert sorted(path.name for path in (storage / "features" / "embedded").glob("*.npz")) == [
        "digits.npz", "digits_photo.npz"]
    searched_trials = tune_trials(storage, SMOKE_NAME)
    promoted_trials = tune_trials(storage, f"{SMOKE_NAME}-promoted")
    assert len(searched_trials) == 4 and len(promoted_trials) == 2
    assert all(config["dataset"] == "features" and config["tasks"][0]["task"].endswith("digits_photo.npz")
               for config, _ in searched_trials.values())
    ranked = sorted(searched_trials.values(), key=lambda trial: -trial[1][-1]["objective"])
    assert {searched(config) for config, _ in ranked[:2]} == {searched(c) for c, _ in promoted_trials.values()}
    assert all(config["dataset"] == "embedded" and config["tasks"] == [{"task": "digits->digits_photo"}]
               for config, _ in promoted_trials.values())

    client = MlflowClient(mlflow_server)
    parent = parent_of(client, experiment, SMOKE_NAME)
    runs = children(client, experiment, SMOKE_NAME)
    assert sorted(run.data.tags["dataset"] for run in runs) == ["embedded"] * 2 + ["features"] * 4
    assert all(run.data.tags["mlflow.parentRunId"] == parent.info.run_id for run in runs)
    winner, _ = max(promoted_trials.values(), key=lambda trial: trial[1][-1]["objective"])
    (rerun,) = children(client, experiment, f"{SMOKE_NAME}-rerun")
    assert float(rerun.data.params["lr"]) == winner["lr"] and rerun.data.params["dataset"] == "embedded"
    assert "promoted to full fine-tuning on embedded" in out and f"lr={winner['lr']:.4g}" in out
