"""The tuner: a crashed trial is retried (or, once errored, resumed) from its last checkpoint and ends as if never
interrupted."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import read_jsonl, without_timings
from mlflow import MlflowClient
from study_helpers import bare_history, crash_once_after

from srdc.base import TrialStatus
from srdc.harness.declarations import Study
from srdc.harness.options import resolve_launch
from srdc.harness.outcome import StudyOutcome, run_study

ResumeStudy = Callable[[], StudyOutcome]
RUN = {"dataset": "embedded", "task": "digits->digits_photo", "variant": "srdc", "seed": 0, "epochs": 3,
       "max_samples": 200, "batch_size": 32}


CRASH_STUDY = Study(name="crash", dataset="embedded", tasks=(RUN["task"],), variants=("srdc",), seeds=(0,),
                    config={key: RUN[key] for key in ("epochs", "max_samples", "batch_size")})


def assert_as_if_never_interrupted(outcome, tracking_uri: str, experiment: str) -> None:
    """One finished trial that reported each epoch once, resumed at epoch 2 (not restarted), whose history,
    summary and MLflow run equal those of the same run trained bare."""
    assert outcome.exit_code == 0 and outcome.counts[TrialStatus.FINISHED] == 1
    trial_dir = Path(outcome.records[0]["path"])
    results = read_jsonl(trial_dir / "result.json")
    # epochs 0 and 1 before the crash, 2 and 3 after it: the trial resumed at epoch 1, it did not start over
    assert [row["epoch"] for row in results] == [0, 1, 2, 3]
    expected = without_timings(bare_history(RUN))
    assert without_timings(read_jsonl(trial_dir / "history.jsonl")) == expected
    assert [row["acc_target"] for row in results] == [row["acc_target"] for row in expected]
    summary = json.loads((trial_dir / "summary.json").read_text())
    assert summary["acc_last"] == expected[-1]["acc_target"] and summary["epochs"] == 3

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    (child,) = client.search_runs([found.experiment_id], "tags.`srdc.role` = 'child'")
    assert child.info.status == "FINISHED"
    history = client.get_metric_history(child.info.run_id, "acc_target")
    assert sorted((m.step, m.value) for m in history) == [(row["epoch"], row["acc_target"]) for row in expected]


@pytest.mark.slow
def test_a_crashed_trial_is_retried_from_its_checkpoint_with_the_uninterrupted_metrics(
        tmp_path, mlflow_server, ray_cluster, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    marker = tmp_path / "crashed"
    argv = ["--storage-path", str(tmp_path / "ray"), "--tracking-uri", mlflow_server, "--experiment", "tune_retry"]
    outcome = run_study(CRASH_STUDY, resolve_launch(CRASH_STUDY, argv), trainable=crash_once_after(1, marker))
    assert marker.exists(), "the injected failure did not happen"
    assert_as_if_never_interrupted(outcome, mlflow_server, "tune_retry")


def failed_study(tmp_path: Path, tracking_uri: str, experiment: str) -> tuple[StudyOutcome, ResumeStudy]:
    """The crash study with no retries: its trial fails after epoch 1. Returns its outcome and a function that
    resumes it (``--resume``) with the same trainable."""
    trainable = crash_once_after(1, tmp_path / "crashed")
    argv = ["--storage-path", str(tmp_path / "ray"), "--tracking-uri", tracking_uri, "--experiment", experiment,
            "--max-failures", "0"]
    first = run_study(CRASH_STUDY, resolve_launch(CRASH_STUDY, argv), trainable=trainable)
    assert first.counts[TrialStatus.FAILED] == 1
    return first, lambda: run_study(CRASH_STUDY, resolve_launch(CRASH_STUDY, [*argv, "--resume"]), trainable=trainable)


@pytest.mark.slow
def test_an_errored_trial_continues_from_its_checkpoint_on_resume(tmp_path, mlflow_server, ray_cluster, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    first, resume = failed_study(tmp_path, mlflow_server, "tune_errored")
    assert first.exit_code == 1 and not first.interrupted
    assert_as_if_never_interrupted(resume(), mlflow_server, "tune_errored")


@pytest.mark.slow
def test_a_resume_whose_saved_state_names_a_deleted_checkpoint_continues_from_the_next(
        tmp_path, mlflow_server, ray_cluster, monkeypatch, capsys):
    """What a killed driver can leave (seen on a multi-node cluster): Tune's saved state names a checkpoint that was
    deleted when a newer one was reported, before the state was saved again."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    first, resume = failed_study(tmp_path, mlflow_server, "tune_stale")
    trial_dir = Path(first.records[0]["path"])
    (trial_dir / "checkpoint_000001").rename(trial_dir / "checkpoint_000002")  # the state names checkpoint_000001
    resumed = resume()
    assert "continuing from the next checkpoint" in capsys.readouterr().err
    assert_as_if_never_interrupted(resumed, mlflow_server, "tune_stale")


@pytest.mark.slow
def test_a_trial_whose_checkpoint_lacks_its_file_continues_from_its_nearest_complete_checkpoint(
        tmp_path, mlflow_server, ray_cluster, monkeypatch):
    """What a lost worker node once left (multi-node test): Tune restores a trial from a checkpoint folder in the
    storage that holds no ``checkpoint.pt``; without a fallback every retry fails on it."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    first, resume = failed_study(tmp_path, mlflow_server, "tune_empty")
    trial_dir = Path(first.records[0]["path"])
    named = trial_dir / "checkpoint_000001"  # the one Tune's saved state names
    named.rename(trial_dir / "checkpoint_000002")  # complete, newer
    (named / "digits-digits_photo.seed0").mkdir(parents=True)  # the named folder, without its checkpoint.pt
    assert_as_if_never_interrupted(resume(), mlflow_server, "tune_empty")


@pytest.mark.slow
def test_checkpoint_every_k_epochs_retries_from_the_last_checkpoint_with_the_uninterrupted_metrics(
        tmp_path, ray_cluster):
    run = {**RUN, "epochs": 5}
    study = Study(name="every", dataset="embedded", tasks=(run["task"],), variants=("srdc",), seeds=(0,),
                  config={key: run[key] for key in ("epochs", "max_samples", "batch_size")})
    argv = ["--storage-path", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
            "--experiment", "every", "--checkpoint-every", "2", "--keep-checkpoints", "10"]
    marker = tmp_path / "crashed"
    outcome = run_study(study, resolve_launch(study, argv), trainable=crash_once_after(3, marker))
    assert marker.exists() and outcome.exit_code == 0
    trial_dir = Path(outcome.records[0]["path"])
    # checkpoints after epochs 0, 2 (the crash after epoch 3 goes back to it), 4 and the last, 5. Tune's result.json of
    # a trial retried in-run keeps the retried worker's reports and, of the earlier ones, what its last sync held
    # (seen in CI: 0,1,2,3,3,4,5; 0,1,2,3,4,5; 3,4,5; 0,3,4,5): in order, from the retry on; the epochs' record is
    # the trial's history.jsonl and its MLflow run, both checked against the uninterrupted run below
    epochs = [row["epoch"] for row in read_jsonl(trial_dir / "result.json")]
    assert epochs == sorted(epochs) and epochs[-3:] == [3, 4, 5], epochs
    assert len(list(trial_dir.glob("checkpoint_*"))) == 4
    expected = without_timings(bare_history(run))
    assert without_timings(read_jsonl(trial_dir / "history.jsonl")) == expected
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (child,) = client.search_runs([client.get_experiment_by_name("every").experiment_id], "tags.`srdc.role` = 'child'")
    history = client.get_metric_history(child.info.run_id, "acc_target")
    assert sorted((m.step, m.value) for m in history) == [(row["epoch"], row["acc_target"]) for row in expected]


@pytest.mark.slow
def test_a_diverging_trial_ends_as_diverged_without_retries(tmp_path, ray_cluster, capsys):
    study = Study(name="diverge", dataset="embedded", tasks=(RUN["task"],), variants=("srdc", "source_only"),
                  seeds=(0,), config={"epochs": 2, "max_samples": 200, "batch_size": 32, "lr": 1e6})
    argv = ["--storage-path", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    outcome = run_study(study, resolve_launch(study, argv))
    by_variant = {record["variant"]: record for record in outcome.records}
    assert by_variant["srdc"]["status"] == TrialStatus.DIVERGED and outcome.exit_code == 1
    folder = Path(by_variant["srdc"]["path"])
    assert "the run diverged" in (folder / "diverged.txt").read_text()
    reports = read_jsonl(folder / "result.json")
    assert reports[-1]["diverged"] == 1 and reports[-1]["epoch"] == reports[-2]["epoch"]  # the last finite epoch
    assert all(row["training_iteration"] == index + 1 for index, row in enumerate(reports))  # one attempt only
    assert "diverged, " in outcome.describe().splitlines()[0]
