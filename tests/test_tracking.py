"""MLflow tracking of studies against a real ``mlflow server`` (started from mlflow_server/start.sh).

Trials are simulated: a fake Tune trial (id, config, trial folder) and a helper that does what the trainable and
Tune do per epoch (write history.jsonl/summary.json, append result.json) before calling the callback's hooks.
"""

import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from srdc.tracking import (
    MLflowStudyCallback,
    SyncReport,
    epoch_row,
    resolve_tracking_uri,
    sync_study,
    trial_status,
)

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "tests"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real MLflow server (SQLite backend in a temp folder, job execution off); yields its URL."""
    home = tmp_path_factory.mktemp("mlflow_home")
    port = free_port()
    env = {**os.environ, "MLFLOW_HOME": str(home), "MLFLOW_PORT": str(port), "MLFLOW_WORKERS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    log = open(home / "server.log", "w")
    process = subprocess.Popen([str(REPO / "mlflow_server" / "start.sh")], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (home / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.read().strip() == b"OK":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not answer /health in 120 s"
            time.sleep(0.5)
        assert (home / "mlflow.db").is_file()
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


@pytest.fixture(autouse=True)
def fast_http(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


@dataclass
class FakeTrial:
    """What the callback uses of a ``ray.tune.experiment.Trial``."""

    trial_id: str
    config: dict
    local_path: str
    path: str | None = None


def make_trial(root: Path, trial_id: str, seed: int, epochs: int = 3, task=("A", "W"), variant="srdc"):
    config = {"dataset": "office31", "source": task[0], "target": task[1], "variant": variant, "seed": seed,
              "epochs": epochs, "lr": 0.01, "setting": "transductive", "image_size": None, "bf16": False}
    folder = root / f"train_{trial_id}_seed={seed}"
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(config))
    return FakeTrial(trial_id, config, str(folder))


def report(callback, trial: FakeTrial, epoch: int, accuracies: list[float]) -> dict:
    """One epoch: the trainable's files, Tune's result.json line, then the callback's on_trial_result."""
    folder = Path(trial.local_path)
    history = [{"epoch": e, "acc_target": acc, "loss_total": 1.0 / e} for e, acc in enumerate(accuracies[:epoch], 1)]
    best = max(history, key=lambda row: row["acc_target"])
    summary = {"acc_last": history[-1]["acc_target"], "acc_best_oracle": best["acc_target"],
               "acc_labelfree": history[-1]["acc_target"], "best_oracle_epoch": best["epoch"],
               "labelfree_epoch": epoch, "labelfree_selector": "infomax", "epochs": epoch, "wall_s": 1.0,
               "config": trial.config}
    (folder / "history.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
    (folder / "summary.json").write_text(json.dumps(summary))
    result = {**history[-1], "acc_last": summary["acc_last"], "acc_best_oracle": summary["acc_best_oracle"],
              "acc_labelfree": summary["acc_labelfree"], "best_oracle_epoch": best["epoch"],
              "labelfree_epoch": epoch, "lr": 0.01, "lambda": 0.5,
              # Tune's own keys: not metrics
              "training_iteration": epoch, "timestamp": int(time.time()), "pid": 123, "time_total_s": 2.0,
              "trial_id": trial.trial_id, "done": False, "config": trial.config, "date": "2026-01-01"}
    with open(folder / "result.json", "a") as out:
        out.write(json.dumps(result) + "\n")
    callback.on_trial_result(0, [], trial, dict(result))
    return result


def run_trial(callback, trial: FakeTrial, accuracies: list[float], first_epoch: int = 1, fail: bool = False):
    callback.on_trial_start(0, [], trial)
    for epoch in range(first_epoch, len(accuracies) + 1):
        report(callback, trial, epoch, accuracies)
    if fail:
        callback.on_trial_error(0, [], trial)
    else:
        callback.on_trial_complete(0, [], trial)


def runs_of(client: MlflowClient, study: str):
    """(parents, children) of ``study``."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    parents = client.search_runs([experiment.experiment_id],
                                 f"tags.`srdc.study` = '{study}' AND tags.`srdc.role` = 'parent'")
    children = client.search_runs([experiment.experiment_id], f"tags.study = '{study}'")
    return parents, {run.data.tags["trial_id"]: run for run in children}


def history(client: MlflowClient, run_id: str, key: str = "acc_target") -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


# -- pure helpers ------------------------------------------------------------------------------------------
def test_epoch_row_keeps_numeric_results_and_drops_tune_bookkeeping():
    row = epoch_row({"epoch": 3, "acc_target": 81.5, "lambda": 0.25, "best_oracle_epoch": 2, "timestamp": 1000,
                     "training_iteration": 3, "pid": 7, "time_total_s": 9.0, "done": True, "trial_id": "a_1",
                     "config": {"lr": 0.1}, "hostname": "h", "should_checkpoint": True})
    assert (row.step, row.timestamp_ms) == (3, 1_000_000)
    assert row.metrics == {"epoch": 3.0, "acc_target": 81.5, "lambda": 0.25, "best_oracle_epoch": 2.0}
    assert epoch_row({"training_iteration": 1, "acc_target": 50.0}) is None


def test_tracking_uri_flag_then_environment_then_local_sqlite(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert resolve_tracking_uri(None) == "http://tracking:5000"
    assert resolve_tracking_uri("http://other:5000") == "http://other:5000"


def test_trial_status_from_the_files_on_disk(tmp_path):
    config = {"epochs": 3}
    assert trial_status(tmp_path, config) is None
    (tmp_path / "summary.json").write_text(json.dumps({"epochs": 2}))
    assert trial_status(tmp_path, config) is None
    (tmp_path / "error.txt").write_text("Traceback")
    assert trial_status(tmp_path, config) == "FAILED"
    (tmp_path / "summary.json").write_text(json.dumps({"epochs": 3}))
    assert trial_status(tmp_path, config) == "FINISHED"


# -- against the server ------------------------------------------------------------------------------------
def test_callback_logs_one_parent_one_child_per_trial_metrics_and_artifacts(server, tmp_path):
    callback = MLflowStudyCallback("grid", EXPERIMENT, server, {"seeds": 2, "epochs": 3})
    callback.setup()
    done = make_trial(tmp_path, "t_00000", seed=0)
    failed = make_trial(tmp_path, "t_00001", seed=1)
    run_trial(callback, done, [50.0, 60.0, 55.0])
    run_trial(callback, failed, [40.0, 45.0], fail=True)
    callback.on_experiment_end([])

    client = MlflowClient(server)
    parents, children = runs_of(client, "grid")
    assert len(parents) == 1 and sorted(children) == ["t_00000", "t_00001"]
    parent = parents[0]
    assert parent.data.params == {"seeds": "2", "epochs": "3"}
    assert parent.info.status == "FINISHED"

    run = children["t_00000"]
    assert {key: run.data.tags[key] for key in ("study", "dataset", "task", "variant", "seed", "trial_id")} == \
        {"study": "grid", "dataset": "office31", "task": "A->W", "variant": "srdc", "seed": "0",
         "trial_id": "t_00000"}
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert run.data.params == {key: str(value) for key, value in done.config.items()}
    assert history(client, run.info.run_id) == [(1, 50.0), (2, 60.0), (3, 55.0)]
    assert history(client, run.info.run_id, "acc_best_oracle") == [(1, 50.0), (2, 60.0), (3, 60.0)]
    assert {key: run.data.metrics[key] for key in ("acc_last", "acc_best_oracle", "acc_labelfree")} == \
        {"acc_last": 55.0, "acc_best_oracle": 60.0, "acc_labelfree": 55.0}
    assert not {"pid", "timestamp", "time_total_s", "training_iteration"} & set(run.data.metrics)
    assert run.info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["history.jsonl", "summary.json"]
    copy = Path(client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path)))
    assert json.loads(copy.read_text())["acc_best_oracle"] == 60.0

    run = children["t_00001"]
    assert run.info.status == "FAILED"
    assert history(client, run.info.run_id) == [(1, 40.0), (2, 45.0)]


def test_restore_reattaches_runs_without_duplicate_runs_or_steps(server, tmp_path):
    first = MLflowStudyCallback("restored", EXPERIMENT, server, {"seeds": 2})
    first.setup()
    interrupted = make_trial(tmp_path, "r_00000", seed=0, epochs=3)
    errored = make_trial(tmp_path, "r_00001", seed=1, epochs=2)
    interrupted_accuracies = [50.0, 60.0, 70.0]
    first.on_trial_start(0, [], interrupted)
    for epoch in (1, 2):
        report(first, interrupted, epoch, interrupted_accuracies)
    run_trial(first, errored, [30.0], fail=True)  # its epoch 2 never came
    # the driver dies; Tuner.restore unpickles the callback and resumes both trials from epoch 2
    second = pickle.loads(pickle.dumps(first))
    second.setup()
    run_trial(second, interrupted, [50.0, 61.0, 70.0], first_epoch=2)  # epoch 2 is reported again
    run_trial(second, errored, [30.0, 35.0], first_epoch=2)
    second.on_experiment_end([])

    client = MlflowClient(server)
    parents, children = runs_of(client, "restored")
    assert len(parents) == 1 and sorted(children) == ["r_00000", "r_00001"]
    assert history(client, children["r_00000"].info.run_id) == [(1, 50.0), (2, 60.0), (3, 70.0)]
    assert history(client, children["r_00001"].info.run_id) == [(1, 30.0), (2, 35.0)]
    assert [run.info.status for run in children.values()] == ["FINISHED", "FINISHED"]
    assert parents[0].info.status == "FINISHED"


def test_outage_mid_run_keeps_epochs_and_sends_them_when_back(server, tmp_path, monkeypatch, caplog):
    callback = MLflowStudyCallback("outage", EXPERIMENT, server, {"seeds": 1}, retry_interval_s=0.0)
    callback.setup()
    trial = make_trial(tmp_path, "o_00000", seed=0, epochs=4)
    accuracies = [10.0, 20.0, 30.0, 40.0]
    callback.on_trial_start(0, [], trial)
    report(callback, trial, 1, accuracies)
    log_batch = MlflowClient.log_batch

    def unreachable(*args, **kwargs):
        raise MlflowException("API request failed with exception ConnectionError: connection refused")

    monkeypatch.setattr(MlflowClient, "log_batch", unreachable)
    with caplog.at_level(logging.WARNING, logger="srdc.tracking"):
        report(callback, trial, 2, accuracies)
        report(callback, trial, 3, accuracies)
        monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
        report(callback, trial, 4, accuracies)
        callback.on_trial_complete(0, [], trial)
    messages = [record.getMessage() for record in caplog.records]
    assert sum("unreachable" in message for message in messages) == 1
    assert sum("reachable again" in message for message in messages) == 1

    client = MlflowClient(server)
    _, children = runs_of(client, "outage")
    assert history(client, children["o_00000"].info.run_id) == [(1, 10.0), (2, 20.0), (3, 30.0), (4, 40.0)]
    assert children["o_00000"].info.status == "FINISHED"


def test_a_refusing_server_never_stops_the_study(server, tmp_path, caplog):
    client = MlflowClient(server)
    client.delete_experiment(client.create_experiment("deleted"))  # runs cannot be created in it
    callback = MLflowStudyCallback("refused", "deleted", server, {"seeds": 1})
    with caplog.at_level(logging.WARNING, logger="srdc.tracking"):
        callback.setup()
        run_trial(callback, make_trial(tmp_path, "x_00000", seed=0), [50.0, 60.0, 70.0])
        callback.on_experiment_end([])
    messages = [record.getMessage() for record in caplog.records]
    assert sum("refused the study's parent run" in message for message in messages) == 1
    assert client.search_runs([client.get_experiment_by_name("deleted").experiment_id], "",
                              run_view_type=3) == []


def test_server_down_never_stops_the_study_and_sync_backfills_it(server, tmp_path, caplog):
    down = f"http://127.0.0.1:{free_port()}"
    experiment_dir = tmp_path / "offline"
    callback = MLflowStudyCallback("offline", EXPERIMENT, down, {"seeds": 2})
    trials = [make_trial(experiment_dir, "f_00000", seed=0), make_trial(experiment_dir, "f_00001", seed=1)]
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="srdc.tracking"):
        callback.setup()
        run_trial(callback, trials[0], [70.0, 80.0, 75.0])
        run_trial(callback, trials[1], [72.0, 74.0, 76.0])
        callback.on_experiment_end([])
    assert time.monotonic() - started < 30
    messages = [record.getMessage() for record in caplog.records]
    assert sum("unreachable" in message for message in messages) == 1
    assert any("srdc-report --study offline --sync" in message for message in messages)

    assert sync_study(experiment_dir, "offline", server, EXPERIMENT) == \
        SyncReport(trials=2, runs_created=2, epochs_logged=6)
    client = MlflowClient(server)
    parents, children = runs_of(client, "offline")
    assert len(parents) == 1 and parents[0].data.params == {"seeds": "2"}
    assert parents[0].info.status == "FINISHED"
    run = children["f_00000"]
    assert history(client, run.info.run_id) == [(1, 70.0), (2, 80.0), (3, 75.0)]
    assert run.data.metrics["acc_best_oracle"] == 80.0 and run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["history.jsonl", "summary.json"]

    # idempotent: a second sync changes nothing
    before = {tid: (r.info.end_time, history(client, r.info.run_id)) for tid, r in children.items()}
    assert sync_study(experiment_dir, "offline", server, EXPERIMENT) == \
        SyncReport(trials=2, runs_created=0, epochs_logged=0)
    parents, children = runs_of(client, "offline")
    assert len(parents) == 1
    assert {tid: (r.info.end_time, history(client, r.info.run_id)) for tid, r in children.items()} == before


@pytest.mark.slow
def test_real_tuner_with_the_callback(server, ray_cluster, tmp_path):
    """A tiny real Ray Tune study: the callback is pickled with the Tuner and driven by Tune's hooks."""
    from ray import tune

    def trainable(config):
        folder = Path(tune.get_context().get_trial_dir())
        for epoch in (1, 2):
            accuracy = 50.0 + 10 * epoch + config["seed"]
            (folder / "summary.json").write_text(json.dumps(
                {"acc_last": accuracy, "acc_best_oracle": accuracy, "acc_labelfree": accuracy, "epochs": epoch}))
            (folder / "history.jsonl").write_text(json.dumps({"epoch": epoch, "acc_target": accuracy}) + "\n")
            tune.report({"epoch": epoch, "acc_target": accuracy, "acc_last": accuracy,
                         "acc_best_oracle": accuracy, "acc_labelfree": accuracy})

    param_space = {"dataset": "office31", "source": "A", "target": "W", "variant": "srdc", "epochs": 2,
                   "seed": tune.grid_search([0, 1])}
    callback = MLflowStudyCallback("ray", EXPERIMENT, server, {"seeds": 2})
    tuner = tune.Tuner(trainable, param_space=param_space,
                       run_config=tune.RunConfig(name="ray", storage_path=str(tmp_path), callbacks=[callback],
                                                 verbose=0))
    assert not tuner.fit().errors

    client = MlflowClient(server)
    parents, children = runs_of(client, "ray")
    assert len(parents) == 1 and len(children) == 2
    for run in children.values():
        seed = int(run.data.tags["seed"])
        assert history(client, run.info.run_id) == [(1, 60.0 + seed), (2, 70.0 + seed)]
        assert run.info.status == "FINISHED"
        assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["history.jsonl", "summary.json"]
    # Tune's files on disk agree: a sync finds nothing to add
    assert sync_study(tmp_path / "ray", "ray", server, EXPERIMENT) == SyncReport(2, 0, 0)
