"""MLflow for many nodes: ``mlflow_server/start.sh`` on a real PostgreSQL (and MariaDB) backend store, with real
smoke studies logging to it through Ray Tune.

* PostgreSQL, live: Table 1's smoke test (20 trials, 4 at once) logs while the server is up.
* PostgreSQL, down mid-study: the server is stopped after two trials have finished and the study ends without it;
  ``mlflow db upgrade`` runs on the database, the server comes back on it, and ``srdc-report --sync`` backfills
  the rest (a second ``--sync`` changes nothing).
* MariaDB: a two-trial study.

Each test creates a fresh database (``srdc_test_<random>``) and drops it afterwards. What arrived is counted in the
database itself (SQL on MLflow's tables) and through the MLflow client, and compared with Tune's files on disk
(``params.json``, ``result.json`` of every trial folder): every run, param and per-epoch metric exactly once, with
its value. ``srdc-report`` then reads the table from the server, and its means are checked against the trials'
``summary.json``.

Without a database server on 127.0.0.1 these tests skip, saying why; with ``CI=true`` they fail instead.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import MLflowServer, read_jsonl
from mlflow import MlflowClient
from study_helpers import load_declaration

from srdc import report_cli
from srdc.harness.main import main
from srdc.tracking.base import TUNE_KEYS

STUDY = "ablation_office31-smoke"
# Table 1's smoke test: 5 variants x 4 seeds = 20 trials, 4 at once on the session's 2 CPUs (0.5 CPU each);
# each reports epochs 0 (before training) and 1
ABLATION = ["--smoke-test", "--tasks", "A->W", "--seeds", "0", "1", "2", "3", "--epochs", "1", "--cpus-per-trial",
            "0.5", "--max-concurrent", "4"]
TRIALS, VARIANTS, SEEDS, CONCURRENT, EPOCHS = 20, 5, 4, 4, 1
# smaller studies for the server-down and MariaDB tests: 2 variants x 4 seeds, 2 variants x 1 seed
TWO_VARIANTS = ["--variants", "source_only", "srdc"]


@dataclass
class Database:
    """A fresh database on a real server: ``uri`` for MLflow, ``connect()`` for counting its rows with SQL."""

    uri: str
    connect: Callable[[], Any]

    def rows(self, sql: str, *args: Any) -> list[tuple]:
        with closing(self.connect()) as connection, closing(connection.cursor()) as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())


def unavailable(what: str, error: Exception) -> None:
    """Skip (fail under CI=true: the CI service must be up) because no database server answers."""
    reason = f"no {what} server reachable on 127.0.0.1 ({type(error).__name__}: {error})".replace("\n", " ")
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI=true needs it")
    pytest.skip(reason)


def postgres_admin() -> Any:
    """An autocommit connection to the server's ``postgres`` database (user postgres, else root; trust auth)."""
    import psycopg

    for user in ("postgres", "root"):
        try:
            return psycopg.connect(host="127.0.0.1", port=5432, user=user, dbname="postgres", connect_timeout=5,
                                   autocommit=True)
        except psycopg.OperationalError as error:
            failure = error
    unavailable("PostgreSQL", failure)


@pytest.fixture
def postgres() -> Iterator[Database]:
    import psycopg

    name = f"srdc_test_{uuid.uuid4().hex[:12]}"
    with closing(postgres_admin()) as admin, closing(admin.cursor()) as cursor:
        user = admin.info.user
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield Database(f"postgresql://{user}@127.0.0.1:5432/{name}",
                       lambda: psycopg.connect(host="127.0.0.1", port=5432, user=user, dbname=name))
    finally:
        with closing(postgres_admin()) as admin, closing(admin.cursor()) as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def mariadb() -> Iterator[Database]:
    import pymysql

    name = f"srdc_test_{uuid.uuid4().hex[:12]}"

    def connect(database: str | None = None) -> Any:
        return pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=database,
                               connect_timeout=5, autocommit=True)

    try:
        admin = connect()
    except pymysql.err.OperationalError as error:
        unavailable("MariaDB/MySQL", error)
    with closing(admin), closing(admin.cursor()) as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield Database(f"mysql+pymysql://root@127.0.0.1:3306/{name}", lambda: connect(name))
    finally:
        with closing(connect()) as admin, closing(admin.cursor()) as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Callable[[Database], MLflowServer]]:
    """Start ``mlflow_server/start.sh`` on a database; stopped at the end of the test."""
    started: list[MLflowServer] = []

    def start(database: Database) -> MLflowServer:
        mlflow = MLflowServer(tmp_path / "mlflow", backend_store_uri=database.uri)
        mlflow.start(timeout_s=300)  # a fresh database: MLflow creates its schema first
        started.append(mlflow)
        return mlflow

    yield start
    for mlflow in started:
        mlflow.stop()


@pytest.fixture(autouse=True)
def fast_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def run_study(name: str, argv: list[str], storage: Path, url: str, experiment: str) -> None:
    assert main(load_declaration(name), [*argv, "--storage-path", str(storage), "--tracking-uri", url,
                                         "--experiment", experiment]) == 0


def trials_on_disk(experiment_dir: Path) -> dict[str, tuple[dict, list[dict]]]:
    """Tune's record of each trial: trial id -> (its config, its per-epoch results)."""
    trials = {}
    for params in sorted(experiment_dir.glob("*/params.json")):
        results = [row for row in read_jsonl(params.parent / "result.json") if "epoch" in row]
        trials[results[0]["trial_id"]] = (json.loads(params.read_text()), results)
    return trials


def expected_metrics(results: list[dict]) -> dict[tuple[str, int], float]:
    """(key, step) -> value of every per-epoch metric the tracker logs from Tune's results."""
    return {(key, row["epoch"]): float(value) for row in results for key, value in row.items()
            if key not in TUNE_KEYS and isinstance(value, int | float)}


def child_runs(client: MlflowClient, experiment: str, study: str = STUDY) -> dict[str, Any]:
    """trial id -> its child run (asserting there is one run per trial)."""
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], f"tags.study = '{study}'", max_results=1000)
    ids = Counter(run.data.tags["trial_id"] for run in runs)
    assert [trial for trial, count in ids.items() if count > 1] == []
    return {run.data.tags["trial_id"]: run for run in runs}


def child_run_count(database: Database) -> int:
    """The trials' runs in the database (rows of the tag ``srdc.role`` = ``child``), counted with SQL."""
    [(count,)] = database.rows("SELECT COUNT(*) FROM tags WHERE key = 'srdc.role' AND value = 'child'")
    return count


def metrics_in_database(database: Database) -> dict[str, dict[tuple[str, int], float]]:
    """trial id -> (key, step) -> value of every metric row of the database (asserting no row is there twice:
    MLflow's primary key would allow it with another timestamp or value)."""
    rows = database.rows("SELECT t.value, m.key, m.step, m.value FROM metrics m JOIN tags t "
                         "ON t.run_uuid = m.run_uuid AND t.key = 'trial_id'")
    counts = Counter((trial, key, step) for trial, key, step, _ in rows)
    assert [row for row, count in counts.items() if count > 1] == []
    held: dict[str, dict[tuple[str, int], float]] = {}
    for trial, key, step, value in rows:
        held.setdefault(trial, {})[(key, step)] = value
    return held


def check_exactly_once(database: Database, url: str, experiment: str, experiment_dir: Path,
                       trials_planned: int = TRIALS) -> dict[str, int]:
    """Every trial on disk (``trials_planned``) is one FINISHED child run of one FINISHED parent, with its config
    as params and each per-epoch metric of its result.json once at its step, with its value; the counts."""
    client = MlflowClient(tracking_uri=url)
    trials = trials_on_disk(experiment_dir)
    assert len(trials) == trials_planned
    runs = child_runs(client, experiment)
    assert sorted(runs) == sorted(trials)
    parents = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                                 f"tags.`srdc.study` = '{STUDY}' AND tags.`srdc.role` = 'parent'")
    assert [parent.info.status for parent in parents] == ["FINISHED"]
    held = metrics_in_database(database)
    for trial_id, (config, results) in trials.items():
        run = runs[trial_id]
        assert run.info.status == "FINISHED"
        assert {key: str(value) for key, value in config.items()}.items() <= run.data.params.items()
        steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "acc_target")]
        assert sorted(steps) == list(range(EPOCHS + 1))
        expected = expected_metrics(results)
        assert {pair: held[trial_id][pair] for pair in expected} == expected, trial_id
        # besides the per-epoch metrics, only the summary (acc_*) at the last epoch
        assert {key for key, step in set(held[trial_id]) - set(expected) if not (
            key.startswith("acc_") and step == EPOCHS)} == set(), trial_id
    [(params,)] = database.rows("SELECT COUNT(*) FROM params p JOIN tags t ON t.run_uuid = p.run_uuid "
                                "WHERE t.key = 'srdc.role' AND t.value = 'child'")
    # one row per param of each run (live runs hold the full config, runs a --sync created Tune's config)
    assert params == sum(len(runs[trial_id].data.params) for trial_id in trials)
    per_epoch = sum(len(expected_metrics(results)) for _, results in trials.values())
    return {"runs": len(runs), "params": params, "per_epoch_metrics": per_epoch,
            "metric_rows": sum(len(pairs) for pairs in held.values()), "duplicates": 0}


def most_at_once(runs: list[Any]) -> int:
    """The most runs that were open (between start and end time) at one moment."""
    events = sorted([(run.info.start_time, 1) for run in runs] + [(run.info.end_time, -1) for run in runs])
    open_runs = most = 0
    for _, change in events:
        open_runs += change
        most = max(most, open_runs)
    return most


def report_cells(study: str, url: str, experiment: str, capsys: pytest.CaptureFixture,
                 *extra: str) -> tuple[list[dict[str, str]], str]:
    """``srdc-report --format csv``: its cells of the smoke task, and what it wrote on stderr."""
    capsys.readouterr()  # what came before (the study's own output)
    assert report_cli.main(["--study", study, "--tracking-uri", url, "--experiment", experiment, "--format", "csv",
                            *extra]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()  # MLflow may print "View run ..." lines before the CSV (runs it ended)
    table = lines[lines.index("table,row,column,mean,std,n,planned,paper,diff,selection,paper_source"):]
    # the smoke task, named after the task it stands in for (the parent run's stand_ins param)
    return [cell for cell in csv.DictReader(table) if cell["column"] == "A->W (digits->digits_photo)"], captured.err


def check_table(cells: list[dict[str, str]], experiment_dir: Path, variants: int, seeds: int) -> None:
    """One cell per variant, each with every seed, whose mean is that of the trials' ``acc_best_oracle`` in their
    summary.json."""
    by_variant: dict[str, list[float]] = {}
    for summary in experiment_dir.glob("*/summary.json"):
        trial = json.loads(summary.read_text())
        by_variant.setdefault(trial["config"]["variant"], []).append(trial["acc_best_oracle"])
    assert sorted(cell["row"] for cell in cells) == sorted(by_variant) and len(by_variant) == variants
    assert [cell["n"] for cell in cells] == [str(seeds)] * variants
    assert {cell["row"]: float(cell["mean"]) for cell in cells} == {
        variant: round(statistics.mean(values), 4) for variant, values in by_variant.items()}


@pytest.mark.slow
def test_a_study_logs_every_run_param_and_metric_once_into_postgresql(postgres, server, ray_cluster, tmp_path,
                                                                     capsys):
    mlflow = server(postgres)
    started = time.monotonic()
    run_study("ablation_office31", ABLATION, tmp_path / "ray", mlflow.url, "pg-live")
    wall_s = time.monotonic() - started
    counts = check_exactly_once(postgres, mlflow.url, "pg-live", tmp_path / "ray" / STUDY)
    runs = child_runs(MlflowClient(tracking_uri=mlflow.url), "pg-live")
    assert most_at_once(list(runs.values())) == CONCURRENT
    cells, _ = report_cells(STUDY, mlflow.url, "pg-live", capsys)
    check_table(cells, tmp_path / "ray" / STUDY, VARIANTS, SEEDS)
    with capsys.disabled():
        print(f"\nPostgreSQL, live: {counts}, study wall {wall_s:.0f} s")


@pytest.mark.slow
def test_sync_backfills_postgresql_after_the_server_was_down_mid_study(postgres, server, ray_cluster, tmp_path,
                                                                     capsys):
    mlflow = server(postgres)
    experiment_dir, trials = tmp_path / "ray" / STUDY, 2 * SEEDS
    runs_at_stop: list[int] = []
    study_over = threading.Event()

    def stop_server_once_runs_exist() -> None:
        """Stopped as soon as the first trials have their runs (their first epochs logged, their ends not): the
        trials run in step, so the next CONCURRENT begin seconds later, while it is down."""
        while not study_over.is_set():
            children = child_run_count(postgres)
            if children:
                mlflow.stop()
                runs_at_stop.append(children)
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=stop_server_once_runs_exist)
    watcher.start()
    try:
        run_study("ablation_office31", [*ABLATION, *TWO_VARIANTS], tmp_path / "ray", mlflow.url, "pg-down")
    finally:
        study_over.set()
        watcher.join()
    assert runs_at_stop and runs_at_stop[0] < trials, "the server was stopped mid-study"
    # while it is down: the schema upgrade of mlflow_server/README.md (nothing to do, the schema is current)
    upgrade = subprocess.run([str(Path(sys.executable).parent / "mlflow"), "db", "upgrade", postgres.uri],
                             capture_output=True, text=True, timeout=300)
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    mlflow.start(timeout_s=300)  # the same database
    runs_before = child_run_count(postgres)
    assert runs_before < trials  # the trials that started while it was down have no run yet
    cells, synced = report_cells(STUDY, mlflow.url, "pg-down", capsys, "--sync", "--storage-path",
                                 str(experiment_dir))
    check_table(cells, experiment_dir, variants=2, seeds=SEEDS)
    assert f"synced {trials} trial(s) into {mlflow.url}: {trials - runs_before} run(s) created" in synced, synced
    counts = check_exactly_once(postgres, mlflow.url, "pg-down", experiment_dir, trials)
    # running it again changes nothing
    _, again = report_cells(STUDY, mlflow.url, "pg-down", capsys, "--sync", "--storage-path", str(experiment_dir))
    assert f"synced {trials} trial(s) into {mlflow.url}: 0 run(s) created, 0 epoch(s) logged" in again, again
    assert check_exactly_once(postgres, mlflow.url, "pg-down", experiment_dir, trials) == counts
    with capsys.disabled():
        print(f"\nPostgreSQL, stopped at {runs_at_stop[0]} runs, {runs_before} runs before "
              f"--sync: {synced.strip()}; {counts}")


@pytest.mark.slow
def test_a_study_logs_into_mariadb(mariadb, server, ray_cluster, tmp_path, capsys):
    mlflow = server(mariadb)
    argv = ["--smoke-test", "--tasks", "A->W", *TWO_VARIANTS, "--seeds", "0", "--epochs", "1", "--cpus-per-trial",
            "0.5"]
    run_study("ablation_office31", argv, tmp_path / "ray", mlflow.url, "mariadb")
    counts = check_exactly_once(mariadb, mlflow.url, "mariadb", tmp_path / "ray" / STUDY, trials_planned=2)
    cells, _ = report_cells(STUDY, mlflow.url, "mariadb", capsys)
    check_table(cells, tmp_path / "ray" / STUDY, variants=2, seeds=1)
    with capsys.disabled():
        print(f"\nMariaDB: {counts}")
