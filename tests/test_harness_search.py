"""The Optuna search: a trial's runs in lockstep and its objective, the command line, and the smoke search end to
end (ASHA stopping weak trials, one MLflow child per trial, interrupted and resumed; the two-tier variant)."""

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import optuna
import pytest
from conftest import assert_continued_after_interrupts, interrupt_when, read_jsonl
from mlflow import MlflowClient
from study_helpers import load_declaration

from srdc.config import SRDCConfig
from srdc.harness.main import main
from srdc.harness.options import resolve_launch
from srdc.harness.search import trial_space
from srdc.harness.search_setup import default_grace_period, default_startup_trials, resolve
from srdc.schedules import lambda_at, progress_at

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "studies" / "search_lambda_lr.py"
SMOKE_NAME = "search_lambda_lr-smoke"


SEARCH = load_declaration("search_lambda_lr", "SEARCH")


def test_the_objective_is_label_free_unless_asked_and_small_searches_are_not_random(tmp_path):
    storage = ["--storage-path", str(tmp_path)]

    def setup_of(*argv):
        return resolve(SEARCH, resolve_launch(SEARCH.study, list(argv), SEARCH))

    setup = setup_of("--smoke-test", *storage)
    assert setup.options.objective == "labelfree"
    assert trial_space(setup, setup.search_dataset)["search_objective"] == "labelfree"
    assert setup_of("--smoke-test", "--objective", "oracle", *storage).options.objective == "oracle"
    assert (setup.num_samples, setup.startup_trials(), setup.grace_period()) == (8, 3, 2)
    assert [default_startup_trials(n) for n in (8, 20, 40, 200)] == [3, 5, 10, 10]
    space = trial_space(setup, setup.search_dataset)
    assert space["seeds"] == [0, 1] and space["dataset"] == "embedded" and space["epochs"] == 3
    assert space["tasks"] == [{"task": "digits->digits_photo"}, {"task": "digits_color->digits", "mu_init": "target"}]


def test_asha_never_stops_a_trial_before_it_has_trained_with_lambda(tmp_path):
    assert [default_grace_period(e) for e in (1, 2, 3, 10, 25, 200)] == [1, 2, 2, 2, 2, 20]
    for unit in ("epoch", "iteration"):
        for epochs in (3, 10, 200):
            # the searched schedule that ramps slowest and lowest: lambda_scale 0.1, lambda_gamma 1
            config = SRDCConfig(epochs=epochs, lambda_scale=0.1, lambda_gamma=1.0, schedule_unit=unit)
            lambdas = [lambda_at(config, progress_at(config, epoch, 0, 10)) for epoch in range(epochs)]
            assert lambdas[0] == 0.0 and all(value > 0 for value in lambdas[1:])  # the first epoch starts at 0
            trained = lambdas[:default_grace_period(epochs)]  # the epochs a trial has trained when ASHA may stop it
            assert any(value > 0 for value in trained), (unit, epochs)
    setup = resolve(SEARCH, resolve_launch(SEARCH.study, ["--smoke-test", "--storage-path", str(tmp_path),
                                                          "--grace-period", "1"], SEARCH))
    assert setup.grace_period() == 1  # asked for explicitly, it is kept


@pytest.mark.parametrize(("argv", "message"), [
    (["--promote", "2"], "add --dataset features"),
    (["--rerun-seeds", "1", "7"], "must be fresh"),
    (["--resume"], "no study search_lambda_lr-smoke"),
])
def test_bad_input_exits_2_with_one_message(argv, message, tmp_path, capsys):
    assert main(SEARCH, ["--smoke-test", "--storage-path", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err


# -- end to end ---------------------------------------------------------------------------------------------------

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

    interrupt_when(driver, tmp_path / "first.log", lambda: told_so_far(storage) >= 3, 400, "three finished trials")
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
    for trial_id, (_, rows) in after.items():  # the interrupted trials continued (ASHA may stop any of them early)
        assert_continued_after_interrupts(rows, f"trial {trial_id}", last_epoch=rows[-1]["epoch"])
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
