"""Real studies: a slice of the Table 1 smoke grid run by Ray Tune and logged to a real MLflow server, interrupted
and resumed, or losing its tracking server mid-run."""

import json
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import MLflowServer, interrupt_when, read_jsonl, wait_for, without_timings
from mlflow import MlflowClient
from pinned import reference
from study_helpers import children, epochs_logged, load_declaration

from srdc import report_cli
from srdc.config import SRDCConfig
from srdc.harness.main import main
from srdc.harness.trainable import run_configs
from srdc.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "studies" / "ablation_office31.py"
ABLATION = load_declaration("ablation_office31")


# -- real studies -------------------------------------------------------------------------------------------
def markdown_tables(text: str) -> list[tuple[list[str], dict[str, list[str]]]]:
    """Each Markdown table in ``text``: its header cells and its rows by first cell."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| variant |"):
            rows = {}
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = [cell.strip() for cell in row.strip("|").split("|")]
                rows[cells[0]] = cells[1:]
            tables.append(([cell.strip() for cell in line.strip("|").split("|")], rows))
    return tables


def bare_summary(trial_dir: Path) -> dict:
    """The trial's run (its Tune ``params.json``) trained in this process without Ray, on one thread like the trial."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(run_configs(json.loads((trial_dir / "params.json").read_text()))[0])
        trainer.fit()
    finally:
        torch.set_num_threads(threads)
    return trainer.summary()


def trial_folder(storage: Path, run) -> Path:
    """The Tune trial folder of an MLflow child run."""
    (folder,) = [path for path in storage.iterdir() if path.name.startswith(f"train_srdc_{run.data.tags['trial_id']}")]
    return folder


SLICE = ["--smoke-test", "--tasks", "A->W", "--variants", "source_only", "srdc", "--seeds", "0", "1"]


@pytest.mark.slow
def test_a_study_logs_one_parent_and_one_child_per_trial_to_a_real_mlflow_server(
        tmp_path, mlflow_server, ray_cluster, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    experiment = "test_studies_grid"
    code = main(ABLATION, [*SLICE, "--storage-path", str(tmp_path / "ray"), "--tracking-uri", mlflow_server,
                           "--experiment", experiment])
    out = capsys.readouterr().out
    assert code == 0, out

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name(experiment)
    (parent,) = client.search_runs([exp.experiment_id], "tags.`srdc.role` = 'parent'")
    assert parent.data.tags["srdc.study"] == "ablation_office31-smoke" and parent.info.status == "FINISHED"
    assert json.loads(parent.data.params["seeds"]) == [0, 1] and parent.data.params["paper_table"] == "Table 1"
    runs = children(client, experiment)
    assert len(runs) == 4 and len({run.data.tags["trial_id"] for run in runs}) == 4
    assert sorted((run.data.tags["variant"], run.data.tags["seed"]) for run in runs) == \
        [("source_only", "0"), ("source_only", "1"), ("srdc", "0"), ("srdc", "1")]
    storage = tmp_path / "ray" / "ablation_office31-smoke"
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["task"] == "digits->digits_photo" and run.data.tags["dataset"] == "embedded"
        assert run.data.params["epochs"] == "2" and run.data.params["max_samples"] == "200"
        assert epochs_logged(client, run) == [0, 1, 2]
        for key in ("acc_target", "infomax", "acc_best_oracle", "acc_labelfree"):  # epoch 0: the untrained model
            assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == [0, 1, 2]
        for key in ("loss_total", "lr", "lambda", "time_train_s"):  # training epochs only
            assert sorted(m.step for m in client.get_metric_history(run.info.run_id, key)) == [1, 2]
        assert {"history.jsonl", "summary.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
        summary = json.loads(Path(client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path)))
                             .read_text())
        history = read_jsonl(Path(client.download_artifacts(run.info.run_id, "history.jsonl", str(tmp_path))))
        assert [row["epoch"] for row in history] == [0, 1, 2] and summary["epochs"] == 2
        for key in ("acc_last", "acc_best_oracle", "acc_labelfree"):
            assert run.data.metrics[key] == pytest.approx(summary[key])
        trial_dir = trial_folder(storage, run)
        assert without_timings(read_jsonl(trial_dir / "history.jsonl")) == without_timings(history)
        # the harness changes nothing: the same run trained bare (fresh or reused worker alike) gives the same
        assert bare_summary(trial_dir)["acc_last"] == summary["acc_last"]

    tables = markdown_tables(out)
    assert len(tables) == 2  # oracle and label-free selection
    for (header, rows), metric in zip(tables, ("acc_best_oracle", "acc_labelfree"), strict=True):
        assert header == ["variant", "digits->digits_photo", "Avg"] and list(rows) == ["source_only", "srdc"]
        for variant, cells in rows.items():
            values = [run.data.metrics[metric] for run in runs if run.data.tags["variant"] == variant]
            assert cells[0] == f"{statistics.mean(values):.1f}±{statistics.stdev(values):.1f}"
    assert f"parent run {parent.info.run_id}" in out and mlflow_server in out



@pytest.mark.slow
def test_an_interrupted_study_resumes_without_rerunning_finished_trials(
        tmp_path, mlflow_server, ray_cluster, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    experiment, epochs = "test_studies_resume", 12
    argv = ["--smoke-test", "--tasks", "A->W", "--variants", "source_only", "srdc", "--seeds", "0", "--epochs",
            str(epochs), "--max-concurrent", "1", "--storage-path", str(tmp_path / "ray"), "--tracking-uri",
            mlflow_server, "--experiment", experiment]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}
    with open(tmp_path / "first.log", "w") as log:
        driver = subprocess.Popen([sys.executable, str(SCRIPT), *argv], stdout=log, stderr=subprocess.STDOUT,
                                  env=env, cwd=tmp_path)
    client = MlflowClient(mlflow_server)

    def one_finished_one_midway() -> bool:
        runs = children(client, experiment)
        finished = [run for run in runs if run.info.status == "FINISHED"]
        midway = [run for run in runs if run.info.status == "RUNNING" and len(epochs_logged(client, run)) >= 3]
        return len(finished) == 1 and len(midway) == 1

    interrupt_when(driver, tmp_path / "first.log", one_finished_one_midway, 300,
                   "one trial finished and the other midway")
    (done,) = [run for run in children(client, experiment) if run.info.status == "FINISHED"]
    storage = tmp_path / "ray" / "ablation_office31-smoke"
    done_dir = trial_folder(storage, done)
    before = ((done_dir / "result.json").read_text(), (done_dir / "summary.json").stat().st_mtime_ns)

    assert main(ABLATION, [*argv, "--resume"]) == 0
    assert "2 trials, 2 finished" in capsys.readouterr().out
    assert ((done_dir / "result.json").read_text(), (done_dir / "summary.json").stat().st_mtime_ns) == before
    runs = children(client, experiment)
    assert len(runs) == 2 and all(run.info.status == "FINISHED" for run in runs)
    assert all(epochs_logged(client, run) == list(range(epochs + 1)) for run in runs)
    (resumed,) = [run for run in runs if run.info.run_id != done.info.run_id]
    resumed_dir = trial_folder(storage, resumed)
    reported = [row["epoch"] for row in read_jsonl(resumed_dir / "result.json")]
    assert reported.count(0) == 1 and sorted(set(reported)) == list(range(epochs + 1))  # continued, not restarted
    assert bare_summary(resumed_dir)["acc_last"] == resumed.data.metrics["acc_last"]


@pytest.mark.slow
def test_a_study_outlives_its_tracking_server_and_sync_restores_every_run(
        tmp_path, ray_cluster, capsys, monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    server = MLflowServer(tmp_path / "mlflow")
    server.start()
    experiment, client = "test_studies_outage", MlflowClient(server.url)

    def stop_after_the_first_finished_trial() -> None:
        wait_for(lambda: any(run.info.status == "FINISHED" for run in children(client, experiment)), 300,
                 "a finished trial")
        server.stop()

    stopper = threading.Thread(target=stop_after_the_first_finished_trial, daemon=True)
    stopper.start()
    try:
        code = main(ABLATION, ["--smoke-test", "--tasks", "A->W", "--variants", "source_only", "srdc", "--seeds",
                               "0", "--epochs", "4", "--max-concurrent", "1", "--storage-path",
                               str(tmp_path / "ray"), "--tracking-uri", server.url, "--experiment", experiment])
        stopper.join(timeout=60)
        out = capsys.readouterr().out
        assert code == 0 and not server.healthy()
        assert "is unreachable" in caplog.text  # the callback lost the server while trials were running
        assert "2 trials, 2 finished" in out and "parent run (not reachable now)" in out and "--sync" in out

        server.start()
        assert len(children(client, experiment)) in (1, 2)  # the second trial's run may have been begun
        storage = tmp_path / "ray" / "ablation_office31-smoke"
        assert report_cli.main(["--study", "ablation_office31-smoke", "--tracking-uri", server.url, "--experiment",
                            experiment, "--sync", "--storage-path", str(storage)]) == 0
        assert "| srdc |" in capsys.readouterr().out
        runs = children(client, experiment)
        assert len(runs) == 2 and all(run.info.status == "FINISHED" for run in runs)
        for run in runs:
            assert epochs_logged(client, run) == [0, 1, 2, 3, 4]
            assert {"acc_last", "acc_best_oracle", "acc_labelfree"} <= set(run.data.metrics)
            assert {"history.jsonl", "summary.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
            results = read_jsonl(trial_folder(storage, run) / "result.json")
            assert [m.value for m in sorted(client.get_metric_history(run.info.run_id, "acc_target"),
                                            key=lambda m: m.step)] == [row["acc_target"] for row in results]
            assert run.data.tags["srdc.node"] == results[-1]["node_id"]  # where it ran, also after a --sync
    finally:
        server.stop()


@pytest.mark.slow
def test_the_smoke_ablation_through_the_harness_gives_the_recorded_per_trial_metrics(tmp_path, ray_cluster, capsys):
    """The same study before and after the harness redesign: the trials of ``--smoke-test --tasks A->W D->A
    --seeds 0`` reproduce, through Ray Tune, the histories and accuracies the old code gives (:mod:`pinned`)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    argv = ["--smoke-test", "--tasks", "A->W", "D->A", "--seeds", "0", "--storage-path", str(tmp_path / "ray"),
            "--tracking-uri", uri]
    assert main(ABLATION, argv) == 0, capsys.readouterr().out
    assert "study ablation_office31-smoke: 10 trials, 10 finished, 0 failed" in capsys.readouterr().out
    pinned = {(t["config"]["source"], t["config"]["target"], t["config"]["variant"]): t
              for t in reference(tmp_path / "baseline") if t["name"].startswith("ablation smoke")}
    folders = sorted((tmp_path / "ray" / "ablation_office31-smoke").glob("*/params.json"))
    assert len(folders) == len(pinned) == 10
    for params in folders:
        (config,) = run_configs(json.loads(params.read_text()))
        trial = pinned[config.source, config.target, config.variant]
        where = ("data_root", "device")  # where and on what it ran (the record: on the CPU)
        current = {k: v for k, v in config.to_dict().items() if k not in where}
        recorded = {k: v for k, v in trial["config"].items() if k not in where}
        assert {k: current[k] for k in recorded} == recorded
        added = set(current) - set(recorded)  # fields added since the record: at their defaults
        assert {k: current[k] for k in added} == {k: getattr(SRDCConfig(), k) for k in added}
        history = without_timings(read_jsonl(params.parent / "history.jsonl"))
        assert history == trial["history"], config.variant
        last = read_jsonl(params.parent / "result.json")[-1]
        assert [last[key] for key in ("acc_last", "acc_best_oracle", "acc_labelfree")] == \
            [trial[key] for key in ("acc_last", "acc_best_oracle", "acc_labelfree")]
