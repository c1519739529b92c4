"""Tracking of studies: StudyLogger and MLflowTracker against a real ``mlflow server`` (mlflow_server/start.sh),
StudyLogger's offline logic against an in-memory tracker, and the backfill from Tune's files.

Trials are simulated: a fake trial (id, config, trial folder) and a helper that does what the trainable and Tune
do per epoch (write history.jsonl/summary.json, append result.json) before calling the logger, as the harness's
Tune callback does.
"""

import json
import logging
import os
import pickle
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import free_port
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from srdc.base import TrialStatus
from srdc.report_cli import main as report_main
from srdc.tracking import (
    EpochRow,
    MLflowTracker,
    StudyLogger,
    StudyRef,
    SyncReport,
    TrackingRefused,
    TrackingServerFailed,
    TrackingUnavailable,
    ended_run_status,
    epoch_row,
    local_folders,
    resolve_tracking_uri,
    sync_study,
)
from srdc.tracking.base import TUNE_KEYS
from srdc.tracking.mlflow_tracker import artifact_location, tracking_error
from srdc.trialfiles import TUNE_ERROR_FILE


@pytest.fixture(autouse=True)
def fast_http(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


@pytest.fixture
def experiment(request) -> str:
    """A fresh experiment name per test (the server is shared by the whole session)."""
    return f"tracking-{request.node.name}"


@dataclass
class FakeTrial:
    """What the harness's Tune callback hands the logger of a ``ray.tune.experiment.Trial``."""

    trial_id: str
    config: dict
    folder: Path

    @property
    def folders(self) -> list[Path]:
        return [self.folder]


def make_trial(root: Path, trial_id: str, seed: int, epochs: int = 3, task=("A", "W"), variant="srdc"):
    config = {"dataset": "office31", "source": task[0], "target": task[1], "variant": variant, "seed": seed,
              "epochs": epochs, "lr": 0.01, "setting": "transductive", "image_size": None, "bf16": False}
    folder = root / f"train_{trial_id}_seed={seed}"
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(config))
    return FakeTrial(trial_id, config, folder)


def report(logger: StudyLogger, trial: FakeTrial, epoch: int, accuracies: list[float]) -> dict:
    """One epoch: the trainable's files, Tune's result.json line, then the logger's trial_result."""
    history = [{"epoch": e, "acc_target": acc, "loss_total": 1.0 / e} for e, acc in enumerate(accuracies[:epoch], 1)]
    best = max(history, key=lambda row: row["acc_target"])
    summary = {"acc_last": history[-1]["acc_target"], "acc_best_oracle": best["acc_target"],
               "acc_labelfree": history[-1]["acc_target"], "acc_labelfree_entropy": best["acc_target"] - 1.0,
               "best_oracle_epoch": best["epoch"], "labelfree_epoch": epoch, "labelfree_selector": "infomax",
               "epochs": epoch, "wall_s": 1.0, "config": trial.config}
    (trial.folder / "history.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))
    (trial.folder / "summary.json").write_text(json.dumps(summary))
    result = {**history[-1], "acc_last": summary["acc_last"], "acc_best_oracle": summary["acc_best_oracle"],
              "acc_labelfree": summary["acc_labelfree"], "best_oracle_epoch": best["epoch"],
              "labelfree_epoch": epoch, "lr": 0.01, "lambda": 0.5,
              # Tune's own keys: not metrics
              "training_iteration": epoch, "timestamp": int(time.time()), "pid": 123, "time_total_s": 2.0,
              "trial_id": trial.trial_id, "done": False, "config": trial.config, "date": "2026-01-01"}
    with open(trial.folder / "result.json", "a") as out:
        out.write(json.dumps(result) + "\n")
    logger.trial_result(trial.trial_id, trial.config, trial.folders, dict(result))
    return result


def run_trial(logger: StudyLogger, trial: FakeTrial, accuracies: list[float], first_epoch: int = 1,
              fail: bool = False):
    logger.trial_started(trial.trial_id, trial.config, trial.folders)
    for epoch in range(first_epoch, len(accuracies) + 1):
        report(logger, trial, epoch, accuracies)
    status = TrialStatus.FAILED if fail else TrialStatus.FINISHED
    logger.trial_ended(trial.trial_id, trial.config, trial.folders, status)


def runs_of(client: MlflowClient, experiment: str, study: str):
    """(parents, children) of ``study``."""
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    parents = client.search_runs([experiment_id], f"tags.`srdc.study` = '{study}' AND tags.`srdc.role` = 'parent'")
    children = client.search_runs([experiment_id], f"tags.study = '{study}'")
    return parents, {run.data.tags["trial_id"]: run for run in children}


def history(client: MlflowClient, run_id: str, key: str = "acc_target") -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records]


# -- pure helpers ------------------------------------------------------------------------------------------
def test_epoch_row_keeps_numeric_results_and_drops_tune_bookkeeping():
    row = epoch_row({"epoch": 3, "acc_target": 81.5, "lambda": 0.25, "best_oracle_epoch": 2, "timestamp": 1000,
                     "training_iteration": 3, "pid": 7, "time_total_s": 9.0, "done": True, "trial_id": "a_1",
                     "config": {"lr": 0.1}, "hostname": "h", "should_checkpoint": True})
    assert (row.step, row.timestamp_ms) == (3, 1_000_000)
    assert row.metrics == {"epoch": 3.0, "acc_target": 81.5, "lambda": 0.25, "best_oracle_epoch": 2.0}
    assert epoch_row({"training_iteration": 1, "acc_target": 50.0}) is None


def test_tune_names_copied_without_importing_ray_match_ray():
    from ray.tune.result import AUTO_RESULT_KEYS, EXPR_ERROR_FILE

    assert set(AUTO_RESULT_KEYS) <= TUNE_KEYS
    assert TUNE_ERROR_FILE == EXPR_ERROR_FILE


def test_tracking_uri_flag_then_environment_then_local_sqlite(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert resolve_tracking_uri(None) == "http://tracking:5000"
    assert resolve_tracking_uri("http://other:5000") == "http://other:5000"


def test_an_embedded_stores_artifacts_go_beside_its_database_from_any_working_folder(tmp_path, monkeypatch):
    store, elsewhere = tmp_path / "x", tmp_path / "elsewhere"
    store.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = f"sqlite:///{store / 'db.sqlite'}"
    tracker = MLflowTracker(uri, "my study/1")
    parent_id = tracker.attach_study("s", {"seeds": "[0]"})
    run_id, _ = tracker.attach_trial("s", parent_id, "t_0", {"variant": "srdc", "source": "A", "target": "W",
                                                              "seed": 0})
    (tmp_path / "summary.json").write_text('{"epochs": 1}')
    tracker.log_files(run_id, [tmp_path / "summary.json"])
    folder = store / "mlruns" / "my_study_1"
    assert MlflowClient(uri).get_experiment_by_name("my study/1").artifact_location == folder.as_uri()
    assert (folder / run_id / "artifacts" / "summary.json").read_text() == '{"epochs": 1}'
    assert list(elsewhere.iterdir()) == []  # no ./mlruns where the study ran from


def test_only_an_embedded_sqlite_store_gets_an_artifact_location_its_relative_path_from_here(tmp_path,
                                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert artifact_location("sqlite:///runs/db.sqlite?timeout=20", "srdc-studies") == \
        (tmp_path.resolve() / "runs" / "mlruns" / "srdc-studies").as_uri()
    assert artifact_location("sqlite+pysqlite:////data/m.db", "e") == "file:///data/mlruns/e"
    for uri in ("http://mlflow:5000", "postgresql://mlflow@db/mlflow", "sqlite://"):
        assert artifact_location(uri, "e") is None


def test_trial_status_from_the_files_on_disk(tmp_path):
    config = {"epochs": 3}
    assert ended_run_status(tmp_path, config) is None
    (tmp_path / "summary.json").write_text(json.dumps({"epochs": 2}))
    assert ended_run_status(tmp_path, config) is None
    (tmp_path / "error.txt").write_text("Traceback")
    assert ended_run_status(tmp_path, config) == "FAILED"
    (tmp_path / "summary.json").write_text(json.dumps({"epochs": 3}))
    assert ended_run_status(tmp_path, config) == "FINISHED"


def test_local_folders_leave_out_remote_storage_and_missing_paths(tmp_path):
    assert local_folders(str(tmp_path), None, "s3://bucket/study/trial") == [tmp_path]


def test_names_that_cannot_be_looked_up_are_refused_at_once():
    from srdc.errors import SRDCInputError

    with pytest.raises(SRDCInputError, match="single quote"):
        StudyLogger("it's", "e", "http://127.0.0.1:1", {})


# -- StudyLogger with an in-memory tracker ---------------------------------------------------------------------
class MemoryTracker:
    """The part of the Tracker interface StudyLogger uses, in memory; refuses the trials in ``refused``."""

    def __init__(self, refused: set[str]) -> None:
        self.refused = refused
        self.status: dict[str, str] = {}
        self.rows: dict[str, list[EpochRow]] = {}
        self.summaries: dict[str, dict] = {}
        self.tags: list[tuple[str, str, str]] = []

    def attach_study(self, study, params):
        self.status["parent"] = "RUNNING"
        return "parent"

    def attach_trial(self, study, parent_id, trial_id, config):
        if trial_id in self.refused:
            raise TrackingRefused("INVALID_PARAMETER_VALUE: no such run")
        created = trial_id not in self.rows
        self.rows.setdefault(trial_id, [])
        self.status[trial_id] = "RUNNING"
        return trial_id, created

    def logged_steps(self, run_id):
        return {row.step for row in self.rows[run_id]}

    def log_rows(self, run_id, rows):
        self.rows[run_id] += rows

    def log_summary(self, run_id, summary):
        self.summaries[run_id] = summary

    def log_files(self, run_id, paths, artifact_path=None):
        pass

    def set_status(self, run_id, status):
        self.status[run_id] = status

    def set_tag(self, run_id, key, value):
        self.tags.append((run_id, key, value))


def test_a_trial_the_store_refuses_is_abandoned_and_the_others_go_on(tmp_path, caplog):
    tracker = MemoryTracker(refused={"bad"})
    logger = StudyLogger("memory", "e", "memory://", {"seeds": 2}, tracker_factory=lambda uri, name: tracker)
    with caplog.at_level(logging.WARNING, logger="srdc.tracking"):
        logger.setup()
        run_trial(logger, make_trial(tmp_path, "bad", seed=0), [50.0, 60.0])
        run_trial(logger, make_trial(tmp_path, "good", seed=1), [55.0, 65.0])
        logger.sweep_ended()
    assert [row.step for row in tracker.rows["good"]] == [1, 2] and "bad" not in tracker.rows
    assert tracker.status == {"parent": "FINISHED", "good": "FINISHED"}
    assert tracker.summaries["good"]["acc_best_oracle"] == 65.0
    assert sum("refused trial bad" in message for message in messages(caplog)) == 1
    assert any("1 trial(s) of study memory" in message and "srdc-report --study memory --sync" in message
               for message in messages(caplog))


def test_a_trials_run_is_tagged_with_its_nodes_once_per_move(tmp_path):
    tracker = MemoryTracker(refused=set())
    logger = StudyLogger("nodes", "e", "memory://", {"seeds": 1}, tracker_factory=lambda uri, name: tracker)
    trial = make_trial(tmp_path, "n", seed=0)
    logger.trial_started(trial.trial_id, trial.config, trial.folders)
    for epoch, node, nodes in [(0, "a", "a"), (1, "a", "a"), (2, "b", "a,b"), (3, "b", "a,b")]:
        logger.trial_result(trial.trial_id, trial.config, trial.folders,
                            {"epoch": epoch, "acc_target": 50.0, "node_id": node, "node_ids": nodes})
        logger.flush()  # results far apart: each is sent before the next arrives
    assert tracker.tags == [("n", "srdc.node", "a"), ("n", "srdc.nodes", "a"),
                            ("n", "srdc.node", "b"), ("n", "srdc.nodes", "a,b")]
    assert all(set(row.metrics) == {"epoch", "acc_target"} for row in tracker.rows["n"])  # tags, not metrics


class BlockingTracker(MemoryTracker):
    """Its ``log_rows`` waits for ``opened`` (a store that stalls) and counts its calls."""

    def __init__(self) -> None:
        super().__init__(refused=set())
        self.opened = threading.Event()
        self.calls: list[list[int]] = []

    def log_rows(self, run_id, rows):
        self.opened.wait(timeout=60)
        self.calls.append([row.step for row in rows])
        super().log_rows(run_id, rows)


def test_the_driver_never_waits_for_the_store_and_queued_epochs_go_out_together(tmp_path):
    tracker = BlockingTracker()
    logger = StudyLogger("queued", "e", "memory://", {"seeds": 1}, tracker_factory=lambda uri, name: tracker)
    logger.setup()
    trial = make_trial(tmp_path, "q", seed=0, epochs=6)
    logger.trial_started(trial.trial_id, trial.config, trial.folders)
    for epoch in range(1, 7):  # all six return while the store holds the first send
        logger.trial_result(trial.trial_id, trial.config, trial.folders, {"epoch": epoch, "acc_target": 10.0 * epoch})
    assert not tracker.opened.is_set() and tracker.rows.get("q", []) == []
    tracker.opened.set()
    logger.trial_ended(trial.trial_id, trial.config, trial.folders, TrialStatus.FINISHED)
    logger.sweep_ended()
    assert [row.step for row in tracker.rows["q"]] == [1, 2, 3, 4, 5, 6]
    assert len(tracker.calls) <= 3 and sorted(step for call in tracker.calls for step in call) == [1, 2, 3, 4, 5, 6]
    assert tracker.status == {"parent": "FINISHED", "q": "FINISHED"}


def test_a_defect_of_the_logger_is_raised_in_the_driver_not_swallowed(tmp_path):
    tracker = MemoryTracker(refused=set())
    tracker.log_rows = lambda run_id, rows: 1 / 0
    logger = StudyLogger("defect", "e", "memory://", {"seeds": 1}, tracker_factory=lambda uri, name: tracker)
    logger.setup()
    trial = make_trial(tmp_path, "d", seed=0)
    logger.trial_result(trial.trial_id, trial.config, trial.folders, {"epoch": 1, "acc_target": 10.0})
    with pytest.raises(RuntimeError, match="srdc-report --study defect --sync") as raised:
        logger.flush()
    assert isinstance(raised.value.__cause__, ZeroDivisionError)
    with pytest.raises(RuntimeError):
        logger.sweep_ended()


def test_the_logger_pickles_its_settings_only(tmp_path):
    logger = StudyLogger("pickled", "e", "http://127.0.0.1:1", {"seeds": 1}, retry_interval_s=5.0)
    logger.trial_started("t", {"seed": 0}, [tmp_path])
    copy = pickle.loads(pickle.dumps(logger))
    assert (copy.study, copy.experiment, copy.tracking_uri, copy.study_params, copy.retry_interval_s) == \
        ("pickled", "e", "http://127.0.0.1:1", {"seeds": 1}, 5.0)
    assert copy._trials == {} and copy._tracker is None


# -- MLflowTracker against the server ------------------------------------------------------------------------
def test_tracker_reads_without_creating_and_writes_studies_and_trials(mlflow_server, experiment, tmp_path):
    tracker = MLflowTracker(mlflow_server, experiment)
    assert tracker.find_study("s") is None and tracker.known_studies() == [] and tracker.study_trials("s") == []
    assert MlflowClient(mlflow_server).get_experiment_by_name(experiment) is None  # reading created nothing

    parent_id = tracker.attach_study("s", {"seeds": 2})
    assert tracker.attach_study("s", {"seeds": 2}) == parent_id
    assert tracker.find_study("s") == StudyRef(tracker.find_study("s").experiment_id, parent_id)
    assert tracker.study_params("s") == {"seeds": "2"} and tracker.known_studies() == ["s"]
    run_id, created = tracker.attach_trial("s", parent_id, "t_0", {"variant": "srdc", "source": "A", "target": "W",
                                                                    "seed": 0})
    assert created and tracker.attach_trial("s", parent_id, "t_0", {}) == (run_id, False)
    tracker.log_rows(run_id, [EpochRow(1, 1000, {"epoch": 1.0, "acc_target": 50.0})])
    assert tracker.logged_steps(run_id) == {1}
    tracker.log_rows(run_id, [EpochRow(0, 900, {"epoch": 0.0, "acc_target": 10.0, "infomax": 0.5})])
    assert tracker.epoch_history(run_id, ["acc_target", "infomax"]) == [
        {"epoch": 0, "acc_target": 10.0, "infomax": 0.5}, {"epoch": 1, "acc_target": 50.0}]
    tracker.log_summary(run_id, {"acc_last": 50.0, "acc_labelfree_entropy": 48.0, "epochs": 1, "wall_s": 3.0})
    tracker.set_status(run_id, TrialStatus.FINISHED)
    assert tracker.study_trials("s") == [{"variant": "srdc", "source": "A", "target": "W", "seed": "0",
                                          "task": "A->W", "status": "FINISHED", "run_id": run_id, "acc_target": 50.0,
                                          "acc_last": 50.0, "acc_labelfree_entropy": 48.0}]

    (tmp_path / "report.md").write_text("# search\n")
    tracker.log_files(parent_id, [tmp_path / "report.md"], artifact_path="search")
    tracker.log_files(parent_id, [tmp_path / "report.md"], artifact_path="search")  # held already: skipped
    tracker.set_tag(parent_id, "srdc.search", "lr")
    client = MlflowClient(mlflow_server)
    assert [a.path for a in client.list_artifacts(parent_id, "search")] == ["search/report.md"]
    assert client.get_run(parent_id).data.tags["srdc.search"] == "lr"


def test_tracker_writes_and_reads_trial_statuses_as_mlflow_run_statuses(mlflow_server, experiment):
    tracker, client = MLflowTracker(mlflow_server, experiment), MlflowClient(mlflow_server)
    parent_id = tracker.attach_study("s", {})
    assert client.get_run(parent_id).info.status == "RUNNING"
    ended = {status: tracker.attach_trial("s", parent_id, status, {})[0]
             for status in ("FINISHED", "FAILED", "KILLED", "RUNNING")}
    tracker.set_status(ended["FINISHED"], TrialStatus.FINISHED)
    tracker.set_status(ended["FAILED"], TrialStatus.FAILED)
    client.set_terminated(ended["KILLED"], "KILLED")  # ended by hand in the UI, or by a client that died
    assert {run_id: client.get_run(run_id).info.status for run_id in ended.values()} == {
        run_id: status for status, run_id in ended.items()}
    read = {record["run_id"]: record["status"] for record in tracker.study_trials("s")}
    assert {status: read[run_id] for status, run_id in ended.items()} == {
        "FINISHED": TrialStatus.FINISHED, "FAILED": TrialStatus.FAILED, "KILLED": TrialStatus.UNFINISHED,
        "RUNNING": TrialStatus.RUNNING}
    with pytest.raises(ValueError, match="not STOPPED"):
        tracker.set_status(ended["RUNNING"], TrialStatus.STOPPED)


def test_tracker_errors_say_refused_or_unreachable(mlflow_server):
    client = MlflowClient(mlflow_server)
    client.delete_experiment(client.create_experiment("tracker-deleted"))
    with pytest.raises(TrackingRefused):
        MLflowTracker(mlflow_server, "tracker-deleted").attach_study("s", {})
    with pytest.raises(TrackingUnavailable) as raised:
        MLflowTracker(f"http://127.0.0.1:{free_port()}", "e").find_study("s")
    assert not isinstance(raised.value, TrackingRefused) and "\n" not in str(raised.value)


class InternalError(BaseHTTPRequestHandler):
    """A server that is up and answers every request with MLflow's internal error (the KeyError a telemetry race
    raised in MLflow 3.17 right after a restart)."""

    def answer(self) -> None:
        body = json.dumps({"error_code": "INTERNAL_ERROR",
                           "message": "KeyError: '_MLFLOW_TELEMETRY_SESSION_ID'"}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def failing_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), InternalError)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_server_that_fails_inside_is_reported_as_up_not_as_to_be_started(failing_server, capsys):
    with pytest.raises(TrackingServerFailed, match="too many 500 error responses"):
        MLflowTracker(failing_server, "e").find_study("s")
    assert main_error(["--study", "x", "--tracking-uri", failing_server], capsys) == (
        f"error: MLflow at {failing_server} is up but failed inside")
    answered = RestException({"error_code": "INTERNAL_ERROR", "message": "KeyError: 'x'"})
    assert isinstance(tracking_error(answered), TrackingServerFailed)
    unreachable = MlflowException("API request to http://h failed with exception Max retries exceeded "
                                  "(Caused by NewConnectionError('Connection refused'))")
    assert type(tracking_error(unreachable)) is TrackingUnavailable


def main_error(argv: list[str], capsys) -> str:
    """``srdc-report ARGV``'s one error line, up to its parenthesis (exit 2 asserted)."""
    assert report_main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "start the server" not in err and "Traceback" not in err
    return err.split(" (")[0]


def test_a_tracker_turns_mlflows_telemetry_off_unless_the_user_set_it(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    MLflowTracker(f"sqlite:///{tmp_path}/a.db", "e")
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "false")
    MLflowTracker(f"sqlite:///{tmp_path}/a.db", "e")
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "false"


# -- StudyLogger against the server ----------------------------------------------------------------------------
def test_logger_logs_one_parent_one_child_per_trial_metrics_and_artifacts(mlflow_server, experiment, tmp_path):
    logger = StudyLogger("grid", experiment, mlflow_server, {"seeds": 2, "epochs": 3})
    logger.setup()
    done = make_trial(tmp_path, "t_00000", seed=0)
    failed = make_trial(tmp_path, "t_00001", seed=1)
    run_trial(logger, done, [50.0, 60.0, 55.0])
    run_trial(logger, failed, [40.0, 45.0], fail=True)
    logger.sweep_ended()

    client = MlflowClient(mlflow_server)
    parents, children = runs_of(client, experiment, "grid")
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
    summary_keys = ("acc_last", "acc_best_oracle", "acc_labelfree", "acc_labelfree_entropy")
    assert {key: run.data.metrics[key] for key in summary_keys} == \
        {"acc_last": 55.0, "acc_best_oracle": 60.0, "acc_labelfree": 55.0, "acc_labelfree_entropy": 59.0}
    assert not {"pid", "timestamp", "time_total_s", "training_iteration"} & set(run.data.metrics)
    assert run.info.status == "FINISHED"
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["history.jsonl", "summary.json"]
    copy = Path(client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path)))
    assert json.loads(copy.read_text())["acc_best_oracle"] == 60.0

    run = children["t_00001"]
    assert run.info.status == "FAILED"
    assert history(client, run.info.run_id) == [(1, 40.0), (2, 45.0)]


def test_restore_reattaches_runs_without_duplicate_runs_or_steps(mlflow_server, experiment, tmp_path):
    first = StudyLogger("restored", experiment, mlflow_server, {"seeds": 2})
    first.setup()
    interrupted = make_trial(tmp_path, "r_00000", seed=0, epochs=3)
    errored = make_trial(tmp_path, "r_00001", seed=1, epochs=2)
    interrupted_accuracies = [50.0, 60.0, 70.0]
    first.trial_started(interrupted.trial_id, interrupted.config, interrupted.folders)
    for epoch in (1, 2):
        report(first, interrupted, epoch, interrupted_accuracies)
    run_trial(first, errored, [30.0], fail=True)  # its epoch 2 never came
    first.flush()  # what the first driver had sent before it died
    # the driver dies; Tuner.restore unpickles the callback and resumes both trials from epoch 2
    second = pickle.loads(pickle.dumps(first))
    second.setup()
    run_trial(second, interrupted, [50.0, 61.0, 70.0], first_epoch=2)  # epoch 2 is reported again
    run_trial(second, errored, [30.0, 35.0], first_epoch=2)
    second.sweep_ended()

    client = MlflowClient(mlflow_server)
    parents, children = runs_of(client, experiment, "restored")
    assert len(parents) == 1 and sorted(children) == ["r_00000", "r_00001"]
    assert history(client, children["r_00000"].info.run_id) == [(1, 50.0), (2, 60.0), (3, 70.0)]
    assert history(client, children["r_00001"].info.run_id) == [(1, 30.0), (2, 35.0)]
    assert [run.info.status for run in children.values()] == ["FINISHED", "FINISHED"]
    assert parents[0].info.status == "FINISHED"


def test_a_retried_trial_reopens_its_run_and_ends_it_again(mlflow_server, experiment, tmp_path):
    logger = StudyLogger("retried", experiment, mlflow_server, {"seeds": 1})
    logger.setup()
    trial = make_trial(tmp_path, "y_00000", seed=0, epochs=2)
    run_trial(logger, trial, [40.0], fail=True)  # crashed after epoch 1; Tune retries it from its checkpoint
    run_trial(logger, trial, [40.0, 45.0], first_epoch=2)
    logger.sweep_ended()

    client = MlflowClient(mlflow_server)
    _, children = runs_of(client, experiment, "retried")
    assert history(client, children["y_00000"].info.run_id) == [(1, 40.0), (2, 45.0)]
    assert children["y_00000"].info.status == "FINISHED"


def test_outage_mid_run_keeps_epochs_and_sends_them_when_back(mlflow_server, experiment, tmp_path, monkeypatch,
                                                              caplog):
    logger = StudyLogger("outage", experiment, mlflow_server, {"seeds": 1}, retry_interval_s=0.0)
    logger.setup()
    trial = make_trial(tmp_path, "o_00000", seed=0, epochs=4)
    accuracies = [10.0, 20.0, 30.0, 40.0]
    logger.trial_started(trial.trial_id, trial.config, trial.folders)
    report(logger, trial, 1, accuracies)
    log_batch = MlflowClient.log_batch

    def unreachable(*args, **kwargs):
        raise MlflowException("API request failed with exception ConnectionError: connection refused")

    monkeypatch.setattr(MlflowClient, "log_batch", unreachable)
    with caplog.at_level(logging.WARNING, logger="srdc.tracking"):
        report(logger, trial, 2, accuracies)
        report(logger, trial, 3, accuracies)
        logger.flush()  # both tried while the store is down
        monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
        report(logger, trial, 4, accuracies)
        logger.trial_ended(trial.trial_id, trial.config, trial.folders, TrialStatus.FINISHED)
        logger.flush()
    assert sum("unreachable" in message for message in messages(caplog)) == 1
    assert sum("reachable again" in message for message in messages(caplog)) == 1

    client = MlflowClient(mlflow_server)
    _, children = runs_of(client, experiment, "outage")
    assert history(client, children["o_00000"].info.run_id) == [(1, 10.0), (2, 20.0), (3, 30.0), (4, 40.0)]
    assert children["o_00000"].info.status == "FINISHED"


def test_a_refusing_server_never_stops_the_study(mlflow_server, tmp_path, caplog):
    client = MlflowClient(mlflow_server)
    client.delete_experiment(client.create_experiment("deleted"))  # runs cannot be created in it
    logger = StudyLogger("refused", "deleted", mlflow_server, {"seeds": 1})
    with caplog.at_level(logging.WARNING, logger="srdc.tracking"):
        logger.setup()
        run_trial(logger, make_trial(tmp_path, "x_00000", seed=0), [50.0, 60.0, 70.0])
        logger.sweep_ended()
    assert sum("refused the study's parent run" in message for message in messages(caplog)) == 1
    assert client.search_runs([client.get_experiment_by_name("deleted").experiment_id], "", run_view_type=3) == []


def test_server_down_never_stops_the_study_and_sync_backfills_it(mlflow_server, experiment, tmp_path, caplog):
    down = f"http://127.0.0.1:{free_port()}"
    experiment_dir = tmp_path / "offline"
    logger = StudyLogger("offline", experiment, down, {"seeds": 2})
    trials = [make_trial(experiment_dir, "f_00000", seed=0), make_trial(experiment_dir, "f_00001", seed=1)]
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="srdc.tracking"):
        logger.setup()
        run_trial(logger, trials[0], [70.0, 80.0, 75.0])
        run_trial(logger, trials[1], [72.0, 74.0, 76.0])
        logger.sweep_ended()
    assert time.monotonic() - started < 30
    assert sum("unreachable" in message for message in messages(caplog)) == 1
    assert any("srdc-report --study offline --sync" in message for message in messages(caplog))

    assert sync_study(experiment_dir, "offline", mlflow_server, experiment) == \
        SyncReport(trials=2, runs_created=2, epochs_logged=6)
    client = MlflowClient(mlflow_server)
    parents, children = runs_of(client, experiment, "offline")
    assert len(parents) == 1 and parents[0].data.params == {"seeds": "2"}
    assert parents[0].info.status == "FINISHED"
    run = children["f_00000"]
    assert history(client, run.info.run_id) == [(1, 70.0), (2, 80.0), (3, 75.0)]
    assert run.data.metrics["acc_best_oracle"] == 80.0 and run.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["history.jsonl", "summary.json"]

    # idempotent: a second sync changes nothing
    before = {tid: (r.info.end_time, history(client, r.info.run_id)) for tid, r in children.items()}
    parent_end = parents[0].info.end_time
    assert sync_study(experiment_dir, "offline", mlflow_server, experiment) == \
        SyncReport(trials=2, runs_created=0, epochs_logged=0)
    parents, children = runs_of(client, experiment, "offline")
    assert len(parents) == 1 and parents[0].info.end_time == parent_end
    assert {tid: (r.info.end_time, history(client, r.info.run_id)) for tid, r in children.items()} == before


@pytest.mark.slow
def test_real_tuner_drives_the_logger(mlflow_server, experiment, ray_cluster, tmp_path):
    """A tiny real Ray Tune study: a thin Tune callback (as the harness's) is pickled with the Tuner and calls the
    logger from Tune's hooks."""
    from ray import tune

    class Callback(tune.Callback):
        def __init__(self, logger: StudyLogger) -> None:
            self.logger = logger

        def setup(self, **info):
            self.logger.setup()

        def on_trial_start(self, iteration, trials, trial, **info):
            self.logger.trial_started(trial.trial_id, trial.config, local_folders(trial.local_path, trial.path))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.logger.trial_result(trial.trial_id, trial.config, local_folders(trial.local_path, trial.path),
                                     result)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.logger.trial_ended(trial.trial_id, trial.config, local_folders(trial.local_path, trial.path),
                                    TrialStatus.FINISHED)

        def on_experiment_end(self, trials, **info):
            self.logger.sweep_ended()

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
    callback = Callback(StudyLogger("ray", experiment, mlflow_server, {"seeds": 2}))
    tuner = tune.Tuner(trainable, param_space=param_space,
                       run_config=tune.RunConfig(name="ray", storage_path=str(tmp_path), callbacks=[callback],
                                                 verbose=0))
    assert not tuner.fit().errors

    client = MlflowClient(mlflow_server)
    parents, children = runs_of(client, experiment, "ray")
    assert len(parents) == 1 and len(children) == 2
    for run in children.values():
        seed = int(run.data.tags["seed"])
        assert history(client, run.info.run_id) == [(1, 60.0 + seed), (2, 70.0 + seed)]
        assert run.info.status == "FINISHED"
        assert sorted(a.path for a in client.list_artifacts(run.info.run_id)) == ["history.jsonl", "summary.json"]
    # Tune's files on disk agree: a sync finds nothing to add
    assert sync_study(tmp_path / "ray", "ray", mlflow_server, experiment) == SyncReport(2, 0, 0)


# -- a study's results on its parent run ------------------------------------------------------------------------
import statistics  # noqa: E402  (this section's imports: the file's head is left as it was)

from srdc.tracking import publish_study  # noqa: E402
from srdc.tracking.mlflow_tracker import note  # noqa: E402


def finished_trial(tracker: MLflowTracker, study: str, parent_id: str, trial_id: str, variant: str, seed: int,
                   oracle: float, labelfree: float, **config) -> str:
    """A FINISHED child run of ``study`` on office31 A->W with its summary accuracies; its run id."""
    config = {"dataset": "office31", "source": "A", "target": "W", "variant": variant, "seed": seed, "epochs": 2,
              "setting": "transductive", "labelfree_selector": "infomax", **config}
    run_id, _ = tracker.attach_trial(study, parent_id, trial_id, config)
    tracker.log_summary(run_id, {"acc_best_oracle": oracle, "acc_labelfree": labelfree, "acc_last": labelfree,
                                 "epochs": 2})
    tracker.set_status(run_id, TrialStatus.FINISHED)
    return run_id


def artifact_text(client: MlflowClient, run_id: str, path: str, into: Path) -> str:
    return Path(client.download_artifacts(run_id, path, str(into))).read_text(encoding="utf-8")


def test_the_parent_run_carries_the_studys_results(mlflow_server, experiment, tmp_path):
    tracker = MLflowTracker(mlflow_server, experiment)
    parent_id = tracker.attach_study("pub", {"seeds": "[0, 1]", "paper_table": "Table 1"})
    # srdc: oracle 80, 82 -> 81.0 ± sqrt(2) = 1.4 (SRDC paper 95.7); source_only: 60, 64 -> 62.0 ± 2.8 (SRDC paper 77.8)
    for trial_id, variant, seed, oracle in (("p_0", "srdc", 0, 80.0), ("p_1", "srdc", 1, 82.0),
                                            ("p_2", "source_only", 0, 60.0), ("p_3", "source_only", 1, 64.0)):
        finished_trial(tracker, "pub", parent_id, trial_id, variant, seed, oracle, oracle - 5.0)
    assert publish_study(tracker, "pub") and not publish_study(tracker, "no such study")

    client = MlflowClient(mlflow_server)
    parents, children = runs_of(client, experiment, "pub")
    (parent,) = parents
    assert parent.data.tags["mlflow.runName"] == "pub"
    assert sorted(run.data.tags["mlflow.runName"] for run in children.values()) == \
        ["source_only A->W s0", "source_only A->W s1", "srdc A->W s0", "srdc A->W s1"]
    assert client.get_experiment(parent.info.experiment_id).tags["mlflow.experimentKind"] == \
        "custom_model_development"
    # the tables: every format, every selection
    assert sorted(a.path for a in client.list_artifacts(parent.info.run_id, "results")) == \
        ["results/ablation_labelfree.png", "results/ablation_oracle.png", "results/report.html",
         "results/tables.csv", "results/tables.md", "results/tables.tex"]  # no epochs logged: no learning curves
    markdown = artifact_text(client, parent.info.run_id, "results/tables.md", tmp_path)
    titles = [line for line in markdown.splitlines() if line.startswith("**")]
    assert titles == ["**Study pub: office31, transductive, oracle selection (target labels)**",
                      "**Study pub: office31, transductive, label-free selection**",
                      "**Study pub: office31, transductive, last epoch**"]
    assert "| srdc | 81.0±1.4 (SRDC paper 95.7, -14.7) | 81.0 |" in markdown
    assert "| source_only | 57.0±2.8 (SRDC paper 77.8, -20.8) | 57.0 |" in markdown  # label-free: 55, 59
    page = artifact_text(client, parent.info.run_id, "results/report.html", tmp_path)
    assert "<td>81.0±1.4 (SRDC paper 95.7, -14.7)</td>" in page and "<td>62.0±2.8 (SRDC paper 77.8, -15.8)</td>" in page
    assert "srdc,A->W,81.0000,1.4142,2,2,95.7000,-14.7000,oracle" in \
        artifact_text(client, parent.info.run_id, "results/tables.csv", tmp_path)
    assert r"srdc & 81.0$\pm$1.4 (SRDC paper 95.7, -14.7) & 81.0 \\" in \
        artifact_text(client, parent.info.run_id, "results/tables.tex", tmp_path)
    # the description: the oracle and label-free tables, as printed at the study's end
    note = parent.data.tags["mlflow.note.content"]
    assert markdown.startswith(note) and note.count("**Study pub") == 2 and "last epoch" not in note
    # the summary metrics: the mean and std of the children's values, rounded (sqrt(2) is 1.4142)
    for selection, key in (("oracle", "acc_best_oracle"), ("labelfree", "acc_labelfree")):
        for variant in ("srdc", "source_only"):
            values = [run.data.metrics[key] for run in children.values() if run.data.tags["variant"] == variant]
            mean, std = round(statistics.mean(values), 4), round(statistics.stdev(values), 4)
            assert parent.data.metrics[f"{selection}.{variant}.A-W.mean"] == mean
            assert parent.data.metrics[f"{selection}.{variant}.A-W.std"] == std
            assert parent.data.metrics[f"{selection}.{variant}.Avg.mean"] == mean
    assert {key: parent.data.tags[key] for key in ("srdc.paper_table", "srdc.dataset", "srdc.setting",
                                                   "srdc.seeds_planned", "srdc.seeds_finished")} == \
        {"srdc.paper_table": "Table 1", "srdc.dataset": "office31", "srdc.setting": "transductive",
         "srdc.seeds_planned": "2", "srdc.seeds_finished": "2"}
    # publishing again changes nothing: no metric is logged twice
    assert publish_study(MLflowTracker(mlflow_server, experiment), "pub")
    assert len(client.get_metric_history(parent.info.run_id, "oracle.srdc.A-W.mean")) == 1


def test_results_split_by_a_grid_dimension_and_names_stay_readable(mlflow_server, experiment):
    tracker = MLflowTracker(mlflow_server, experiment)
    parent_id = tracker.attach_study("grid", {"seeds": "[0]", "grid.lambda_scale": "[0.5, 1.0]",
                                              "grid.lr": "LogUniform (0.001, 0.1)"})
    finished_trial(tracker, "grid", parent_id, "g_0", "srdc", 0, 70.0, 60.0, lambda_scale=0.5)
    finished_trial(tracker, "grid", parent_id, "g_1", "srdc", 0, 90.0, 60.0, lambda_scale=1.0)
    assert publish_study(tracker, "grid")
    client = MlflowClient(mlflow_server)
    parents, children = runs_of(client, experiment, "grid")
    # the same variant, task and seed twice: the second run's name says which trial it is
    assert [children[t].data.tags["mlflow.runName"] for t in ("g_0", "g_1")] == ["srdc A->W s0", "srdc A->W s0 (g_1)"]
    metrics = parents[0].data.metrics
    assert (metrics["oracle.lambda_scale_0_5.srdc.A-W.mean"], metrics["oracle.lambda_scale_1_0.srdc.A-W.mean"]) == \
        (70.0, 90.0)


def test_a_description_too_long_for_a_tag_is_cut_at_a_table_and_says_where_the_rest_is():
    tables = "\n\n".join(f"**table {i}**\n| a | b |\n|---|---|\n| x | {i} |" for i in range(400))
    cut = note(tables, 8000)
    assert len(cut) <= 8000 and cut.endswith("(cut here: every table is in the artifacts, results/)")
    assert tables.startswith(cut.split("\n\n(cut here")[0] + "\n\n**table")
    assert note("short", 8000) == "short"
