"""Real studies: a slice of the Table 1 smoke grid run by Ray Tune and logged to a real MLflow server, interrupted
and resumed, or losing its tracking server mid-run."""

import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
from conftest import (
    MLflowServer,
    free_port,
    interrupt_when,
    read_jsonl,
    session_processes,
    wait_for,
    without_timings,
)
from mlflow import MlflowClient
from pinned import LEGACY, assert_history_matches, reference
from study_helpers import children, epochs_logged, load_declaration, plan_of

from srdc import report_cli
from srdc.config import SRDCConfig, options_in
from srdc.figures.study import CURVES_FILE, VALIDATORS_FILE
from srdc.harness.main import main
from srdc.harness.options import build_parser, launch_from_args
from srdc.harness.outcome import StudyOutcome, publish, study_results, tracking_lines
from srdc.harness.plan import grid_configs
from srdc.harness.trainable import FIGURES_DEFERRED
from srdc.methods import tracked_fields
from srdc.report import METRIC_DECIMALS, RESULT_FILES
from srdc.tracking import MLflowTracker
from srdc.trainer import Trainer
from srdc.trial_config import run_configs, tracked_config
from srdc.trialfiles import RESULTS_FOLDER

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "studies" / "ablation_office31.py"
ABLATION = load_declaration("ablation_office31")
# the figures of records without epoch histories (srdc.figures.study); with them also CURVES_FILE
ABLATION_CHARTS = ("ablation_oracle.png", "ablation_labelfree.png")


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
SRDC_FIELDS = set(tracked_fields("srdc"))
ADVERSARIAL_FIELDS = set(options_in(("adversarial",)))
SRDC_ONLY_FIELDS = set(options_in(("srdc", "release")))


# -- what a study ends with, without running one ------------------------------------------------------------------
def launch_of(storage: str, tracking_uri: str, *argv: str):
    """The Launch of the ablation's smoke test for ``argv`` (and ``storage``, ``tracking_uri``)."""
    args = build_parser(ABLATION).parse_args(["--smoke-test", *argv, "--storage-path", storage, "--tracking-uri",
                                              tracking_uri])
    return launch_from_args(ABLATION, args)


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


def smoke_results(*argv: str):
    """The results of the ablation's smoke test for ``argv``, every trial finished with accuracy 50 + seed."""
    plan = plan_of(ABLATION, "--smoke-test", *argv)
    records = [{**config, "status": "FINISHED", "acc_best_oracle": 50.0 + config["seed"], "acc_labelfree": 40.0,
                "acc_last": 45.0} for config in grid_configs(plan)]
    return study_results(ABLATION, plan, records)


def test_a_trials_run_gets_the_config_fields_its_method_reads_as_its_trial_resolves_them():
    (config,) = grid_configs(plan_of(ABLATION, "--smoke-test", "--tasks", "A->W", "--variants", "srdc", "--seeds",
                                     "1", "--set", "lr=0.02"))
    tracked = tracked_config(config)
    assert SRDC_FIELDS <= set(tracked) and set(config) <= set(tracked)
    assert SRDC_ONLY_FIELDS <= SRDC_FIELDS and not ADVERSARIAL_FIELDS & set(tracked)
    assert (tracked["study"], tracked["task"], tracked["source"], tracked["target"], tracked["seed"]) == \
        ("ablation_office31-smoke", "digits->digits_photo", "digits", "digits_photo", 1)
    assert (tracked["lr"], tracked["lambda_scale"], tracked["epochs"], tracked["max_samples"]) == (0.02, 1.0, 2, 200)
    # a search trial: the fields its runs share, and its runs as they are
    search = {"study": "s", "dataset": "embedded", "variant": "srdc", "epochs": 2, "lr": 0.05, "seeds": [0, 1],
              "tasks": [{"task": "digits->digits_photo", "mu_init": "target"}, {"task": "digits->digits_color"}],
              "search_objective": "labelfree", "task": "digits->digits_photo + digits->digits_color", "seed": "0+1"}
    tracked = tracked_config(search)
    assert set(tracked) == SRDC_FIELDS - {"source", "target", "mu_init"} | set(search)
    assert (tracked["lr"], tracked["lambda_scale"], tracked["seed"], tracked["tasks"]) == \
        (0.05, 1.0, "0+1", search["tasks"])
    # a DANN trial: the adversarial options, none of SRDC's own (not even one its trial config sets)
    tracked = tracked_config({**config, "variant": "dann", "loss_weighting": "paper"})
    assert ADVERSARIAL_FIELDS <= set(tracked) and not SRDC_ONLY_FIELDS & set(tracked)
    assert tracked["lr"] == 0.02 and tracked["variant"] == "dann"
    # a config no run can have is left as it is: the trial fails with that error itself
    assert tracked_config({"variant": "srdc", "lr": -1.0}) == {"variant": "srdc", "lr": -1.0}


def test_a_study_whose_store_is_down_keeps_its_results_in_its_folder_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    launch = launch_of(str(tmp_path), f"http://127.0.0.1:{free_port()}", "--tasks", "A->W", "--seeds", "0", "1")
    results = smoke_results("--tasks", "A->W", "--seeds", "0", "1")
    parent, warning = publish(launch, "ablation_office31-smoke", results)
    assert parent is None and "the study's results are not on its MLflow parent run" in warning
    folder = tmp_path / "ablation_office31-smoke" / RESULTS_FOLDER
    assert sorted(path.name for path in folder.iterdir()) == sorted([*RESULT_FILES.values(), *ABLATION_CHARTS])
    markdown = (folder / "tables.md").read_text()
    assert "| srdc | 50.5±0.7 | 50.5 |" in markdown and "| srdc | 40.0±0.0 | 40.0 |" in markdown
    assert "<td>45.0±0.0</td>" in (folder / "report.html").read_text()  # the last epoch


def test_the_closing_lines_name_the_html_page_the_results_folder_holds(tmp_path):
    launch = launch_of(str(tmp_path), f"sqlite:///{tmp_path / 'mlflow.db'}", "--tasks", "A->W", "--seeds", "0")
    plan = plan_of(ABLATION, "--smoke-test", "--tasks", "A->W", "--seeds", "0")
    text = StudyOutcome(plan, launch, [], "the tables", None).describe()
    folder = f"{launch.path}/{RESULTS_FOLDER}"
    assert f"in {folder}/, all in one HTML page: {folder}/{RESULT_FILES['html']}\n" in text


def test_the_closing_lines_count_the_runs_whose_figures_were_deferred_and_name_the_command_that_draws_them(
        tmp_path):
    launch = launch_of(str(tmp_path), f"sqlite:///{tmp_path / 'mlflow.db'}", "--tasks", "A->W", "--seeds", "0")
    plan = plan_of(ABLATION, "--smoke-test", "--tasks", "A->W", "--seeds", "0")
    drawn = [{"status": "FINISHED"}, {"status": "FINISHED"}]
    assert "figures:" not in StudyOutcome(plan, launch, drawn, "the tables", None).describe()
    deferred = [{"status": "FINISHED", FIGURES_DEFERRED: 1}, {"status": "FINISHED"}, {"status": "FINISHED",
                                                                                     FIGURES_DEFERRED: 2}]
    (line,) = [line for line in StudyOutcome(plan, launch, deferred, "the tables", None).describe().splitlines()
               if line.startswith("figures:")]
    assert line.startswith("figures: 3 trial run(s) kept their figures' record undrawn")
    command = shlex.split(line.split("MLflow runs with: ")[1])
    assert command[1:3] == ["-m", "srdc.report_cli"] and command[-3:] == [
        "--sync", "--storage-path", f"{launch.storage_path}/{plan.name}"]


def test_the_closing_lines_link_the_studys_runs_table_and_serve_a_local_store_leanly(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    local = launch_of(str(tmp_path / "ray"), uri, "--study-name", "s")
    table = "#/experiments/7/runs?workflowType=machine_learning&searchFilter=tags.mlflow.parentRunId%20%3D%20%27abc%27"
    command = f"MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false {shlex.quote(sys.executable)} -m mlflow ui --workers 1 " \
        f"--backend-store-uri {uri}"
    assert tracking_lines(local, "s", ("7", "abc"))[1] == f"  browse: {command}  # then http://127.0.0.1:5000/{table}"
    assert tracking_lines(local, "s", None)[1] == f"  browse: {command}  # then http://127.0.0.1:5000"
    served = launch_of(str(tmp_path / "ray"), "http://mlflow:5000/", "--study-name", "s")
    assert tracking_lines(served, "s", ("7", "abc"))[1] == f"  browse: http://mlflow:5000/{table}"
    assert not [line for line in tracking_lines(served, "s", None) if "browse" in line]


@pytest.mark.integration
def test_results_go_to_a_bucket_storage_and_the_parent_run(s3_bucket, mlflow_server, tmp_path):
    experiment = "test_outcome_bucket"
    launch = launch_of(s3_bucket.uri("studies"), mlflow_server, "--tasks", "A->W", "--seeds", "0", "--experiment",
                       experiment)
    parent_id = MLflowTracker(mlflow_server, experiment).attach_study("ablation_office31-smoke", {"seeds": "[0]"})
    parent, warning = publish(launch, "ablation_office31-smoke", smoke_results("--tasks", "A->W", "--seeds", "0"))
    assert parent[1] == parent_id and warning is None
    keys = s3_bucket.keys("studies/ablation_office31-smoke/results/")
    assert keys == sorted(f"studies/ablation_office31-smoke/results/{name}"
                          for name in [*RESULT_FILES.values(), *ABLATION_CHARTS])
    assert "| srdc | 50.0 | 50.0 |" in s3_bucket.read("studies/ablation_office31-smoke/results/tables.md").decode()
    run = MlflowClient(mlflow_server).get_run(parent_id)
    assert {f"results/{name}" for name in ABLATION_CHARTS} <= \
        {info.path for info in MlflowClient(mlflow_server).list_artifacts(parent_id, "results")}
    assert run.data.metrics["oracle.srdc.A-W_digits-digits_photo.mean"] == 50.0  # named after the task it plays
    assert run.data.tags["srdc.seeds_finished"] == "1"


@pytest.mark.integration
def test_the_printed_commands_work_as_printed_without_an_activated_environment(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = MLflowTracker(uri, "printed")
    parent_id = tracker.attach_study("s", {"seeds": "[0]"})
    launch = launch_of(str(tmp_path / "ray"), uri, "--study-name", "s", "--experiment", "printed")
    lines = tracking_lines(launch, "s", (tracker.find_study("s").experiment_id, parent_id))
    browse = next(line for line in lines if line.startswith("  browse: ")).removeprefix("  browse: ")
    browse, url = browse.split("  # then ")
    table = next(line for line in lines if line.startswith("  table: ")).removeprefix("  table: ")
    bare = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "PATH")}
    bare["PATH"] = "/usr/bin:/bin"  # no environment's bin folder: no srdc-report, no mlflow
    done = subprocess.run([*shlex.split(table), "--format", "csv"], capture_output=True, text=True, env=bare,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "study s: no finished trials yet (0 started)\n"
    # the UI command, in a shell as printed (on a free port instead of 5000): it serves the printed link's page,
    # leanly: the CLI and one uvicorn worker, no job runner
    port = free_port()
    ui = subprocess.Popen(["sh", "-c", f"{browse} --port {port}"], env=bare, cwd=tmp_path, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        page = url.replace("http://127.0.0.1:5000/", f"http://127.0.0.1:{port}/")
        wait_for(lambda: answers(page), 300, "the UI's page")
        served = [command for command in session_processes(ui.pid).values() if command.startswith(sys.executable)]
        assert len(served) == 2 and not [command for command in served if "jobs" in command], served
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)


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
        assert header == ["variant", "A->W (digits->digits_photo)", "Avg"] and list(rows) == ["source_only", "srdc"]
        for variant, cells in rows.items():
            values = [run.data.metrics[metric] for run in runs if run.data.tags["variant"] == variant]
            assert cells[0] == f"{statistics.mean(values):.1f}±{statistics.stdev(values):.1f}"
    assert f"parent run {parent.info.run_id}" in out and mlflow_server in out

    # the parent carries the study's results: its name, tags, description, summary metrics and tables
    assert parent.data.tags["mlflow.runName"] == "ablation_office31-smoke"
    assert sorted(run.data.tags["mlflow.runName"] for run in runs) == \
        [f"{variant} digits->digits_photo s{seed}" for variant in ("source_only", "srdc") for seed in (0, 1)]
    assert {key: parent.data.tags[key] for key in ("srdc.paper_table", "srdc.dataset", "srdc.seeds_planned",
                                                   "srdc.seeds_finished")} == \
        {"srdc.paper_table": "Table 1", "srdc.dataset": "embedded", "srdc.seeds_planned": "2",
         "srdc.seeds_finished": "2"}
    note = parent.data.tags["mlflow.note.content"]
    assert note in out and markdown_tables(note) == tables  # the tables printed at the end
    for selection, metric in (("oracle", "acc_best_oracle"), ("labelfree", "acc_labelfree")):
        for variant in ("source_only", "srdc"):
            values = [run.data.metrics[metric] for run in runs if run.data.tags["variant"] == variant]
            name = f"{selection}.{variant}.A-W_digits-digits_photo"
            # rounded to the summary metrics' decimals
            assert parent.data.metrics[f"{name}.mean"] == round(statistics.mean(values), METRIC_DECIMALS)
            assert parent.data.metrics[f"{name}.std"] == round(statistics.stdev(values), METRIC_DECIMALS)
    page = Path(client.download_artifacts(parent.info.run_id, "results/report.html", str(tmp_path)))
    assert page.read_text() == (storage / RESULTS_FOLDER / "report.html").read_text()
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "results")} == \
        {f"results/{name}" for name in [*RESULT_FILES.values(), *ABLATION_CHARTS, CURVES_FILE, VALIDATORS_FILE]}
    # the validators judged against the oracle, after the tables
    markdown = Path(client.download_artifacts(parent.info.run_id, "results/tables.md", str(tmp_path))).read_text()
    assert "**Study ablation_office31-smoke: label-free validators against the oracle**" in markdown
    # every config field its method reads is a param of each child run, and no field of another method's
    for run in runs:
        read = set(tracked_fields(run.data.params["variant"]))
        assert read <= set(run.data.params) and run.data.params["lambda_scale"] == "1.0"
        assert not ADVERSARIAL_FIELDS & set(run.data.params)



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
    legacy = [arg for field, value in LEGACY.items() for arg in ("--set", f"{field}={value}")]
    argv = ["--smoke-test", "--tasks", "A->W", "D->A", "--seeds", "0", "--storage-path", str(tmp_path / "ray"),
            "--tracking-uri", uri, *legacy]
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
        # bf16/channels_last became auto (None: on CUDA only), which on the record's CPU is its False
        assert not config.uses_bf16(cuda=False) and not config.uses_channels_last(cuda=False)
        current.update(bf16=False, channels_last=False)
        recorded = {k: v for k, v in trial["config"].items() if k not in where}
        assert {k: current[k] for k in recorded} == recorded
        added = set(current) - set(recorded)  # fields added since the record: at their defaults, or the record's
        assert {k: current[k] for k in added} == {k: LEGACY.get(k, getattr(SRDCConfig(), k)) for k in added}
        history = without_timings(read_jsonl(params.parent / "history.jsonl"))
        assert_history_matches(history, trial["history"], config.variant)
        last = read_jsonl(params.parent / "result.json")[-1]
        assert [last[key] for key in ("acc_last", "acc_best_oracle", "acc_labelfree")] == \
            [trial[key] for key in ("acc_last", "acc_best_oracle", "acc_labelfree")]
