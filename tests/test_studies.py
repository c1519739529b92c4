"""The study runner: grids as declared, clear input errors, and real Tune studies logged to a real MLflow server
(a slice of the Table 1 smoke grid), interrupted and resumed, or losing its tracking server mid-run."""

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import MLflowServer, read_jsonl, without_timings
from mlflow import MlflowClient
from ray import tune
from ray.tune.search.variant_generator import generate_variants
from study_helpers import load_declaration, plan_of

from srdc import report
from srdc.errors import SRDCInputError
from srdc.studies import (
    Study,
    build_parser,
    grid_configs,
    load_launch,
    main,
    param_space,
    resolve_locations,
    save_launch,
    summary_tables,
    trial_resources,
)
from srdc.trainer import Trainer
from srdc.tune import config_from_trial

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "studies" / "ablation_office31.py"
SMOKE_TASKS = {"digits->digits_photo": "A->W", "digits->digits_color": "A->D", "digits_color->digits": "D->A",
               "digits_photo->digits": "W->A"}


ABLATION = load_declaration("ablation_office31")


def tune_configs(plan) -> list[dict]:
    """What Tune's grid generator makes of the param space (grid_search and sample_from resolved)."""
    return [config for _, config in generate_variants(param_space(plan))]


def by_cell(configs: list[dict]) -> dict:
    return {(c["task"], c["variant"], c["seed"]): c for c in configs}


# -- grids ----------------------------------------------------------------------------------------------------
def test_the_ablation_grid_is_table_1_with_the_released_codes_amazon_override():
    plan = plan_of(ABLATION, "--data-root", "/data")
    configs = grid_configs(plan)
    assert len(configs) == 5 * 4 * 3
    assert by_cell(tune_configs(plan)) == by_cell(configs)
    assert {c["dataset"] for c in configs} == {"office31"} and {c["epochs"] for c in configs} == {200}
    assert {c["task"] for c in configs if c.get("mu_init") == "target"} == {"D->A", "W->A"}
    assert all(c.get("mu_init", "mean") == "mean" for c in configs if c["task"] in ("A->W", "A->D"))
    assert {c["study"] for c in configs} == {"ablation_office31"} and configs[0]["data_root"] == "/data"
    assert all(config_from_trial(c).dataset == "office31" for c in configs)


def test_the_smoke_test_keeps_the_grid_shape_on_the_embedded_domains():
    plan = plan_of(ABLATION, "--smoke-test")
    configs = tune_configs(plan)
    assert by_cell(configs) == by_cell(grid_configs(plan)) and len(configs) == 60
    assert set(plan.tasks) == set(SMOKE_TASKS) and plan.name == "ablation_office31-smoke"
    assert {c["dataset"] for c in configs} == {"embedded"} and {c["epochs"] for c in configs} == {2}
    # the amazon override follows amazon's stand-in
    assert {c["task"] for c in configs if c.get("mu_init") == "target"} == {"digits_color->digits",
                                                                           "digits_photo->digits"}
    assert plan.study_params["seeds"] == [0, 1, 2] and plan.study_params["smoke_test"] is True


def test_command_line_slices_epochs_and_overrides():
    plan = plan_of(ABLATION, "--smoke-test", "--tasks", "W->A", "--variants", "srdc", "--seeds", "4", "5",
                   "--epochs", "3", "--set", "lr=0.02", "--set", "bf16=true")
    assert [(c["task"], c["seed"], c["epochs"], c["lr"], c["bf16"], c["mu_init"]) for c in tune_configs(plan)] == \
        [("digits_photo->digits", 4, 3, 0.02, True, "target"), ("digits_photo->digits", 5, 3, 0.02, True, "target")]


def test_extra_config_dimensions_cross_the_grid_and_split_the_tables():
    study = Study(name="lambda", dataset="embedded", tasks=("digits->digits_photo", "digits->digits_color"),
                  variants=("srdc",), seeds=(0, 1), grid={"lambda_scale": [0.5, 1.0]}, smoke=None)
    plan = plan_of(study)
    configs = tune_configs(plan)
    assert len(configs) == 2 * 2 * 2
    assert sorted({c["lambda_scale"] for c in configs}) == [0.5, 1.0]
    records = [{**c, "status": "FINISHED", "acc_best_oracle": 50.0 + c["seed"] + 10 * c["lambda_scale"],
                "acc_labelfree": 40.0, "acc_last": 45.0} for c in configs]
    text = summary_tables(plan, records)
    assert text.count("**Study lambda lambda_scale=0.5: embedded, transductive**") == 2  # oracle and labelfree
    assert "| srdc | 55.5±0.7 | 55.5±0.7 | 55.5 |" in text and "| srdc | 60.5±0.7 | 60.5±0.7 | 60.5 |" in text


def test_a_search_dimension_goes_to_tune_as_it_is():
    study = Study(name="search", dataset="embedded", tasks=("digits->digits_photo",), seeds=(0,),
                  grid={"lr": tune.loguniform(1e-3, 1e-1)}, num_samples=4, smoke=None)
    plan = plan_of(study)
    assert param_space(plan)["lr"] is study.grid["lr"] and param_space(plan)["seed"] == 0
    assert plan.study_params["grid.lr"] == "LogUniform (0.001, 0.1)"
    assert [config.get("lr") for config in grid_configs(plan)] == [None]  # sampled by Tune, not enumerated


def test_every_trial_asks_for_cpus_even_with_a_fractional_gpu():
    args = build_parser(ABLATION).parse_args(["--gpus-per-trial", "0.5", "--cpus-per-trial", "2"])
    assert trial_resources(args) == {"cpu": 2.0, "gpu": 0.5}


def test_resume_takes_the_saved_launch_and_refuses_other_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parser = build_parser(ABLATION)
    launch = ["--smoke-test", "--epochs", "3", "--data-root", "data", "--tracking-uri", "sqlite:///x.db"]
    save_launch(str(tmp_path / "study"), resolve_locations(parser.parse_args(launch)))
    monkeypatch.chdir(tmp_path.parent)  # resumed from elsewhere: the saved absolute locations hold
    resumed = load_launch(str(tmp_path / "study"), parser.parse_args(["--smoke-test", "--resume"]),
                          parser.parse_args([]))
    assert (resumed.epochs, resumed.data_root, resumed.resume) == (3, str(tmp_path / "data"), True)
    with pytest.raises(SRDCInputError, match="drop --epochs, --variants"):
        load_launch(str(tmp_path / "study"), parser.parse_args(["--resume", "--epochs", "4", "--variants", "srdc"]),
                    parser.parse_args([]))


@pytest.mark.parametrize("declaration, message", [
    ({"variants": ("srdc", "dann")}, "unknown variant"),
    ({"grid": {"lamda": [1]}}, "unknown config field"),
    ({"grid": {"seed": [1, 2]}}, "study's own dimensions"),
    ({"grid": {"lr": [0.1]}, "config": {"lr": 0.01}}, "both a grid dimension and fixed"),
    ({"task_config": {"W->D": {"mu_init": "target"}}}, "not in tasks"),
])
def test_a_wrong_declaration_is_one_clear_error(declaration, message):
    with pytest.raises(SRDCInputError, match=message):
        Study(**{"name": "bad", "dataset": "office31", "tasks": ("A->W",), **declaration})


@pytest.mark.parametrize("argv, message", [
    (["--smoke-test", "--tasks", "A->C"], "not in the study's tasks"),
    (["--smoke-test", "--set", "lamda=1"], "FIELD a config field"),
    (["--smoke-test", "--set", "variant=srdc"], "use --tasks/--variants"),
    (["--smoke-test", "--resume"], "no study ablation_office31-smoke"),
    ([], "srdc-data download office31"),
])
def test_bad_input_exits_2_with_one_message(argv, message, tmp_path, capsys):
    assert main(ABLATION, [*argv, "--storage-path", str(tmp_path), "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


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


def children(client: MlflowClient, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id], "tags.`srdc.role` = 'child'")


def epochs_logged(client: MlflowClient, run) -> list[int]:
    return sorted(metric.step for metric in client.get_metric_history(run.info.run_id, "epoch"))


def bare_summary(trial_dir: Path) -> dict:
    """The trial's run (its Tune ``params.json``) trained in this process without Ray, on one thread like the trial."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = Trainer(config_from_trial(json.loads((trial_dir / "params.json").read_text())))
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


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


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
        assert driver.poll() is None, (tmp_path / "first.log").read_text()
        runs = children(client, experiment)
        finished = [run for run in runs if run.info.status == "FINISHED"]
        midway = [run for run in runs if run.info.status == "RUNNING" and len(epochs_logged(client, run)) >= 3]
        return len(finished) == 1 and len(midway) == 1

    try:
        wait_for(one_finished_one_midway, 300, "one trial finished and the other midway")
        driver.send_signal(signal.SIGINT)
        assert driver.wait(timeout=120) == 130, (tmp_path / "first.log").read_text()
    finally:
        if driver.poll() is None:
            driver.kill()
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
        assert report.main(["--study", "ablation_office31-smoke", "--tracking-uri", server.url, "--experiment",
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
    finally:
        server.stop()
