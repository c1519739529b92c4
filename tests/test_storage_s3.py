"""Studies with ``--storage-path s3://BUCKET/PREFIX`` on a local S3-compatible server (moto), found through
``AWS_ENDPOINT_URL`` as on MinIO or any S3-compatible store: the launch file, Tune's state, the latest K checkpoints
per trial and the trials' files land in the bucket; a crashed trial continues from its checkpoint there; a new
driver resumes an interrupted study from the bucket alone; the MLflow runs get every trial's files, also from
``srdc-report --sync``."""

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, S3Bucket, interrupt_when, read_jsonl, without_timings
from mlflow import MlflowClient
from study_helpers import bare_history, children, crash_once_after, epochs_logged

from srdc import report_cli
from srdc.base import TrialStatus
from srdc.harness.declarations import Study
from srdc.harness.options import Launch, resolve_launch
from srdc.harness.outcome import run_study
from srdc.harness.trainable import run_key, run_trial
from srdc.tracking.trial_end import finish_trial
from srdc.trial_config import run_configs
from srdc.trialfiles import LAUNCH_FILE

# the trials train EPOCHS epochs (a checkpoint each, and one of the untrained model), keep the latest KEEP; the
# crashed or held trial stops right after reporting epoch STOP
EPOCHS, KEEP, STOP = 3, 2, 1
STUDY = Study(name="s3_study", dataset="embedded", tasks=("digits->digits_photo",), variants=("srdc", "source_only"),
              seeds=(0,), config={"epochs": EPOCHS, "max_samples": 100, "batch_size": 32})


class FileTracker:
    """The part of the Tracker interface :func:`finish_trial` uses: what it logs, files read as they are logged."""

    def __init__(self) -> None:
        self.summary: dict | None = None
        self.files: dict[str, bytes] = {}
        self.status: str | None = None

    def log_summary(self, run_id: str, summary: dict) -> None:
        self.summary = summary

    def log_files(self, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
        self.files.update({path.name: path.read_bytes() for path in paths})

    def set_status(self, run_id: str, status: str) -> None:
        self.status = status


def test_a_trials_files_are_read_from_the_bucket_when_the_driver_has_no_copy(tmp_path, s3_bucket):
    summary, history = {"acc_last": 61.5, "epochs": 2}, b'{"epoch": 0}\n{"epoch": 1}\n{"epoch": 2}\n'
    s3_bucket.client().put_object(Bucket=s3_bucket.name, Key="study/trial/summary.json", Body=json.dumps(summary))
    s3_bucket.client().put_object(Bucket=s3_bucket.name, Key="study/trial/history.jsonl", Body=history)
    tracker = FileTracker()
    finish_trial(tracker, "run", [tmp_path, s3_bucket.uri("study/trial")], TrialStatus.FINISHED)
    assert tracker.summary == summary and tracker.status == TrialStatus.FINISHED
    assert tracker.files == {"summary.json": json.dumps(summary).encode(), "history.jsonl": history}

    missing = FileTracker()
    finish_trial(missing, "run", [tmp_path, s3_bucket.uri("study/other")], TrialStatus.FINISHED)
    assert (missing.summary, missing.files, missing.status) == (None, {}, TrialStatus.FINISHED)


def recording_starts(trainable, log: Path):
    """``trainable``, each attempt first noting in ``log`` its variant, the checkpoint it starts from (its
    filesystem and path; none for a fresh start) and the ``AWS_ENDPOINT_URL`` of its worker process."""

    def recording(config: dict) -> None:
        from ray import tune

        checkpoint = tune.get_checkpoint()
        start = {"variant": config["variant"], "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
                 "filesystem": checkpoint and checkpoint.filesystem.type_name, "path": checkpoint and checkpoint.path}
        with log.open("a") as out:
            out.write(json.dumps(start) + "\n")
        trainable(config)

    return recording


def trial_key(record: dict) -> str:
    """The key prefix of a trial's folder (Tune's ``trial.path`` is ``BUCKET/KEY`` on the S3 filesystem)."""
    return record["path"].split("/", 1)[1]


def stop_checkpoint(bucket: S3Bucket, record: dict) -> str:
    """The path on the S3 filesystem of the checkpoint of epoch STOP of the trial ``record``."""
    return f"{bucket.name}/{trial_key(record)}/checkpoint_{STOP:06d}"


def checkpoints(bucket: S3Bucket, trial: str) -> list[str]:
    """The names of the checkpoint folders of the trial folder ``trial`` in ``bucket``."""
    return sorted({key[len(trial) + 1:].split("/")[0] for key in bucket.keys(f"{trial}/checkpoint_")})


def latest_checkpoints(epochs: int) -> list[str]:
    """The checkpoints a trial of ``epochs`` epochs keeps: the latest ``KEEP`` (one per epoch, epoch 0 included)."""
    return [f"checkpoint_{index:06d}" for index in range(epochs - KEEP + 1, epochs + 1)]


def read_lines(bucket: S3Bucket, key: str) -> list[dict]:
    """The JSON objects of the ``.jsonl`` object ``key`` (history.jsonl, Tune's result.json)."""
    return [json.loads(line) for line in bucket.read(key).decode().splitlines() if line.strip()]


@pytest.mark.slow
def test_a_study_on_s3_keeps_the_latest_checkpoints_and_a_crashed_trial_continues_from_the_bucket(
        tmp_path, s3_bucket, mlflow_server, ray_cluster, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    storage, starts = s3_bucket.uri("studies"), tmp_path / "starts.jsonl"
    argv = ["--storage-path", storage, "--keep-checkpoints", str(KEEP), "--max-concurrent", "1", "--tracking-uri",
            mlflow_server, "--experiment", "s3_storage"]
    trainable = recording_starts(crash_once_after(STOP, tmp_path / "crashed"), starts)
    outcome = run_study(STUDY, resolve_launch(STUDY, argv), trainable=trainable)
    assert outcome.exit_code == 0 and outcome.counts[TrialStatus.FINISHED] == 2
    assert f"Tune results: {storage}/s3_study" in outcome.describe()

    keys = s3_bucket.keys("studies/s3_study/")
    assert Launch.from_json(s3_bucket.read(f"studies/s3_study/{LAUNCH_FILE}").decode()).storage_path == storage
    assert "studies/s3_study/tuner.pkl" in keys
    assert any(key.startswith("studies/s3_study/experiment_state-") for key in keys)
    client = MlflowClient(mlflow_server)
    runs = {run.data.tags["trial_id"]: run for run in children(client, "s3_storage")}
    assert len(runs) == 2
    for record in outcome.records:
        trial = trial_key(record)
        params = json.loads(s3_bucket.read(f"{trial}/params.json"))
        reported = [row["epoch"] for row in read_lines(s3_bucket, f"{trial}/result.json")]
        assert reported == list(range(EPOCHS + 1))  # each epoch once: the crashed trial did not start over
        assert checkpoints(s3_bucket, trial) == latest_checkpoints(EPOCHS)
        key = run_key(run_configs(params)[0])
        latest = f"{trial}/checkpoint_{EPOCHS:06d}"
        # a checkpoint holds each run's state (its history included) and the nodes, nothing written twice
        held = {k.removeprefix(latest + "/") for k in keys if k.startswith(latest + "/")}
        assert {f"{key}/checkpoint.pt", "nodes.json"} <= held
        assert not any(name.endswith(("summary.json", "history.jsonl")) for name in held)
        kept = torch.load(io.BytesIO(s3_bucket.read(f"{latest}/{key}/checkpoint.pt")), weights_only=True)["state"]
        summary = json.loads(s3_bucket.read(f"{trial}/summary.json"))
        assert kept["epoch"] == summary["epochs"] == EPOCHS
        assert kept["history"][-1]["acc_target"] == summary["acc_last"]
        # the MLflow run has the trial's files from the bucket, and its summary metrics
        run = runs[record["trial_id"]]
        assert run.info.status == "FINISHED" and run.data.metrics["acc_last"] == summary["acc_last"]
        logged = json.loads(Path(client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path)))
                            .read_text())
        assert logged == summary and epochs_logged(client, run) == list(range(EPOCHS + 1))
        history = read_jsonl(Path(client.download_artifacts(run.info.run_id, "history.jsonl", str(tmp_path))))
        assert history == read_lines(s3_bucket, f"{trial}/history.jsonl")

    # three starts: each trial's, and the crashed one's retry from its checkpoint of epoch STOP in the bucket
    fresh = [start["variant"] for start in read_jsonl(starts) if start["path"] is None]
    (retry,) = [start for start in read_jsonl(starts) if start["path"] is not None]
    assert sorted(fresh) == sorted(STUDY.variants)
    (crashed,) = [record for record in outcome.records if record["variant"] == retry["variant"]]
    assert (retry["filesystem"], retry["path"]) == ("s3", stop_checkpoint(s3_bucket, crashed))
    # the session's Ray workers started before this test set AWS_ENDPOINT_URL: the endpoint reached them inside
    # the storage's filesystem (and Tune passes them the driver's AWS keys)
    assert retry["endpoint"] != s3_bucket.endpoint
    # ... and it ended as if never interrupted
    expected = without_timings(bare_history(json.loads(s3_bucket.read(f"{trial_key(crashed)}/params.json"))))
    assert without_timings(read_lines(s3_bucket, f"{trial_key(crashed)}/history.jsonl")) == expected
    metric = client.get_metric_history(runs[crashed["trial_id"]].info.run_id, "acc_target")
    assert sorted((m.step, m.value) for m in metric) == [(row["epoch"], row["acc_target"]) for row in expected]

    # the backfill reads the bucket too: into a fresh experiment, the same runs
    assert report_cli.main(["--study", "s3_study", "--tracking-uri", mlflow_server, "--experiment", "s3_sync",
                            "--sync", "--storage-path", f"{storage}/s3_study"]) == 0
    synced = children(client, "s3_sync")
    assert sorted(run.data.tags["trial_id"] for run in synced) == sorted(runs)
    for run in synced:
        assert run.info.status == "FINISHED" and epochs_logged(client, run) == list(range(EPOCHS + 1))
        assert run.data.metrics["acc_last"] == runs[run.data.tags["trial_id"]].data.metrics["acc_last"]
        assert {"history.jsonl", "summary.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def hold_once_after(epoch: int, marks: Path):
    """A trainable that wraps the real one: the first trial to report ``epoch`` after another trial finished stays
    there (its checkpoint saved) until its driver stops; once (the mark ``marks/held`` says it happened)."""

    def holding(config: dict) -> None:
        def hold(trainer) -> None:
            if trainer.epoch == epoch and (marks / "finished").exists() and not (marks / "held").exists():
                (marks / "held").touch()
                while True:
                    time.sleep(1)

        run_trial(config, after_epoch=hold)
        (marks / "finished").touch()

    return holding


def run_held_study(argv: list[str], marks: Path) -> int:
    """A study driver (run by the test in its own process) of STUDY, one trial held by :func:`hold_once_after`."""
    outcome = run_study(STUDY, resolve_launch(STUDY, argv),
                        trainable=recording_starts(hold_once_after(STOP, marks), marks / "starts.jsonl"))
    print(outcome.describe())
    return outcome.exit_code


@pytest.mark.slow
def test_a_new_driver_resumes_an_interrupted_study_from_the_bucket(
        tmp_path, s3_bucket, mlflow_server, ray_cluster, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    storage, starts = s3_bucket.uri("studies"), tmp_path / "starts.jsonl"
    argv = ["--storage-path", storage, "--keep-checkpoints", str(KEEP), "--max-concurrent", "1", "--tracking-uri",
            mlflow_server, "--experiment", "s3_resume"]
    code = (f"import sys; from pathlib import Path; sys.path.insert(0, {str(REPO / 'tests')!r}); "
            "from test_storage_s3 import run_held_study; sys.exit(run_held_study(sys.argv[2:], Path(sys.argv[1])))")
    with open(tmp_path / "first.log", "w") as log:
        driver = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), *argv], stdout=log,
                                  stderr=subprocess.STDOUT, cwd=tmp_path)
    interrupt_when(driver, tmp_path / "first.log", (tmp_path / "held").exists, 300, "a trial held midway")
    assert f"--resume --storage-path {storage} --study-name s3_study" in (tmp_path / "first.log").read_text()
    first = read_jsonl(starts)
    assert sorted(start["variant"] for start in first) == sorted(STUDY.variants)
    results = {key: s3_bucket.read(key) for key in s3_bucket.keys("studies/s3_study/") if key.endswith("result.json")}

    # a new driver, given only where the study is: its settings and Tune's state come from the bucket
    outcome = run_study(STUDY, resolve_launch(STUDY, ["--resume", "--storage-path", storage]),
                        trainable=recording_starts(hold_once_after(STOP, tmp_path), starts))
    assert outcome.exit_code == 0 and outcome.counts[TrialStatus.FINISHED] == 2
    (restart,) = read_jsonl(starts)[len(first):]  # the held trial only: the finished one did not run again
    (held,) = [record for record in outcome.records if record["variant"] == restart["variant"]]
    (done,) = [record for record in outcome.records if record["variant"] != restart["variant"]]
    assert (restart["filesystem"], restart["path"]) == ("s3", stop_checkpoint(s3_bucket, held))
    assert s3_bucket.read(f"{trial_key(done)}/result.json") == results[f"{trial_key(done)}/result.json"]
    reported = [row["epoch"] for row in read_lines(s3_bucket, f"{trial_key(held)}/result.json")]
    assert reported == list(range(EPOCHS + 1))  # each epoch once: continued, not started over
    client = MlflowClient(mlflow_server)
    runs = children(client, "s3_resume")
    assert len(runs) == 2 and all(run.info.status == "FINISHED" for run in runs)
    assert all(epochs_logged(client, run) == list(range(EPOCHS + 1)) for run in runs)
    for record in outcome.records:
        assert checkpoints(s3_bucket, trial_key(record)) == latest_checkpoints(EPOCHS)
