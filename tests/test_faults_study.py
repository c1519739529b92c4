"""Hostile use of the study scripts and of ``srdc-report``: every bad input is one line and exit 2 before anything
starts, with nothing already written changed; a study driver interrupted (SIGINT, SIGTERM) or killed (SIGKILL) at
any moment, first run or resumed, continues with ``--resume`` without rerunning a finished trial."""

import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import assert_continued_after_interrupts, interrupt_when, read_jsonl, session_processes, wait_for
from study_helpers import load_declaration

from srdc import report_cli
from srdc.errors import SRDCInputError
from srdc.harness.main import main

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("ablation_office31", "benchmark_office31", "benchmark_imageclef", "benchmark_officehome",
           "inductive_office31", "factorial_office31", "benchmark_digits", "search_lambda_lr")


def declaration(name: str):
    return load_declaration(name, "SEARCH" if name.startswith("search") else "STUDY")


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder`` with its bytes and modification time."""
    return {str(path): (path.read_bytes(), path.stat().st_mtime_ns) for path in folder.rglob("*") if path.is_file()}


def one_line_exit_2(run, capsys) -> str:
    """Run ``run()`` (a main), which must exit 2 with one ``error:`` line on stderr and no traceback."""
    try:
        code = run()
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def earlier(tmp_path):
    """A storage folder that already holds another study's files (which no failed launch may touch)."""
    folder = tmp_path / "ray" / "earlier-study"
    folder.mkdir(parents=True)
    (folder / "srdc_study.json").write_text('{"kept": true}')
    (folder / "result.json").write_text('{"epoch": 3}\n')
    return tmp_path


STUDY_CASES = [
    (["--tasks", "X->Y"], "not in the study's tasks"),
    (["--variants", "mcd"], "not in the study's variants"),
    (["--set", "lamda=1"], "FIELD a config field"),
    (["--set", "variant=srdc"], "use --tasks/--variants"),
    (["--set", "lr=-1"], "lr"),
    (["--set", "max_samples=0"], "max_samples"),
    (["--set", "lr=fast"], "lr"),
    (["--epochs", "0"], "--epochs 0: must be >= 1"),
    (["--max-concurrent", "0"], "--max-concurrent 0"),
    (["--checkpoint-every", "0"], "--checkpoint-every 0: must be >= 1"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial"),
    (["--resume"], "--resume: no study"),
    (["--storage-path", "/proc/srdc-cannot-write"], "--storage-path /proc/srdc-cannot-write: cannot write there"),
    (["--storage-path", "ftp://host/x"], "unknown scheme ftp://"),
    (["--tracking-uri", "garbage://nowhere"], "unknown scheme garbage://"),
    (["--tracking-uri", "sqlite:////nonexistent-srdc-folder/m.db"], "cannot create the database"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["--seeds", "one"], "invalid int value"),
]


@pytest.mark.parametrize("name", SCRIPTS)
@pytest.mark.parametrize(("argv", "message"), STUDY_CASES, ids=[" ".join(case[0]) for case in STUDY_CASES])
def test_every_study_script_rejects_bad_input_in_one_line_and_writes_nothing(name, argv, message, earlier, capsys):
    if name == "benchmark_digits" and argv[:1] == ["--tasks"]:
        message = "not in the study's tasks"
    before = snapshot(earlier)
    storage = [] if "--storage-path" in argv else ["--storage-path", str(earlier / "ray")]
    tracking = [] if "--tracking-uri" in argv else ["--tracking-uri", f"sqlite:///{earlier / 'mlflow.db'}"]
    line = one_line_exit_2(lambda: main(declaration(name), ["--smoke-test", *storage, *tracking, *argv]), capsys)
    assert message in line
    assert snapshot(earlier) == before and not (earlier / "mlflow.db").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--promote", "2"], "add --dataset features"),
    (["--rerun-seeds", "1", "7"], "must be fresh"),
    (["--num-samples", "0"], "--num-samples 0"),
    (["--reduction-factor", "1"], "--reduction-factor 1"),
    (["--objective", "accuracy"], "invalid choice: 'accuracy'"),
])
def test_the_search_rejects_its_own_bad_options(argv, message, earlier, capsys):
    before = snapshot(earlier)
    line = one_line_exit_2(lambda: main(declaration("search_lambda_lr"), [
        "--smoke-test", "--storage-path", str(earlier / "ray"), *argv]), capsys)
    assert message in line and snapshot(earlier) == before


def test_a_missing_dataset_names_the_download_command(earlier, capsys):
    line = one_line_exit_2(lambda: main(declaration("ablation_office31"), [
        "--storage-path", str(earlier / "ray"), "--data-root", str(earlier / "data")]), capsys)
    assert "srdc-data download office31" in line


REPORT_CASES = [
    (["--study", "s", "--tracking-uri", "sqlite:///{tmp}/none.db"], "no MLflow store at"),
    (["--study", "nope", "--tracking-uri", "sqlite:///{tmp}/mlflow.db"], "no study 'nope'"),
    (["--study", "s", "--sync", "--tracking-uri", "sqlite:///{tmp}/mlflow.db"], "--sync needs --storage-path"),
    (["--study", "s", "--sync", "--storage-path", "{tmp}/nothing", "--tracking-uri", "sqlite:///{tmp}/mlflow.db"],
     "no Tune trial folders"),
    (["--study", "s", "--tracking-uri", "http://127.0.0.1:9"], "cannot read MLflow at http://127.0.0.1:9"),
    (["--study", "s", "--format", "pdf"], "invalid choice: 'pdf'"),
    (["--format", "md"], "the following arguments are required: --study"),
]


@pytest.mark.parametrize(("argv", "message"), REPORT_CASES, ids=[case[1] for case in REPORT_CASES])
def test_srdc_report_rejects_bad_input_in_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    if any("mlflow.db" in arg for arg in argv):  # an existing store with another study in it
        from srdc.tracking import open_tracker

        open_tracker(f"sqlite:///{tmp_path}/mlflow.db", "srdc-studies").attach_study("other", {"seeds": 1})
        capsys.readouterr()  # MLflow's lines about creating the store
    before = snapshot(tmp_path)
    line = one_line_exit_2(lambda: report_cli.main([arg.format(tmp=tmp_path) for arg in argv]), capsys)
    assert message in line and snapshot(tmp_path) == before


# -- interrupted and killed drivers -------------------------------------------------------------------------------
SCRIPT = REPO / "studies" / "ablation_office31.py"
# 3 trials, one at a time, long enough to interrupt each phase
ARGV = ["--smoke-test", "--tasks", "A->W", "--variants", "source_only", "srdc_no_softsel", "srdc", "--seeds", "0",
        "--epochs", "6", "--max-concurrent", "1"]


def start_driver(tmp_path: Path, log_name: str, *argv: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / log_name
    with open(log, "w") as out:
        driver = subprocess.Popen([sys.executable, str(SCRIPT), *ARGV, *study_locations(tmp_path), *argv],
                                  stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    return driver, log


def study_locations(tmp_path: Path) -> list[str]:
    return ["--storage-path", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]


def trials(tmp_path: Path) -> dict[str, list[dict]]:
    """Each trial's reported epochs, by trial folder."""
    results = (tmp_path / "ray" / "ablation_office31-smoke").glob("*/result.json")
    return {path.parent.name: read_jsonl(path) for path in results if path.stat().st_size}


def finished(tmp_path: Path) -> dict[str, list[dict]]:
    return {name: rows for name, rows in trials(tmp_path).items() if rows and rows[-1]["epoch"] == 6}


@pytest.mark.slow
def test_a_driver_interrupted_first_and_then_while_resuming_exits_130_and_resumes(tmp_path):
    """SIGINT (Ctrl-C) in the first run, SIGTERM (a scheduler's kill) in the resumed one with a trial still
    pending: both end with exit 130, the resume command and the driver's Ray processes stopped."""
    driver, log = start_driver(tmp_path, "first.log")
    interrupt_when(driver, log, lambda: len(finished(tmp_path)) == 1 and len(trials(tmp_path)) == 2, 400,
                   "one trial finished and the next one started", signal.SIGINT)
    assert f"continue it with: {sys.executable} {SCRIPT} --resume --storage-path {tmp_path / 'ray'}" in log.read_text()
    wait_for(lambda: not session_processes(driver.pid), 60, "the Ray processes the driver started to stop")
    done = finished(tmp_path)

    resumed, log = start_driver(tmp_path, "second.log", "--resume")
    interrupt_when(resumed, log, lambda: any(len(rows) >= 3 for name, rows in trials(tmp_path).items()
                                             if name not in done and rows[-1]["epoch"] < 6)
                   and len(trials(tmp_path)) == 2, 400, "the second trial midway, the third pending", signal.SIGTERM)
    assert "continue it with:" in log.read_text() and "Traceback" not in log.read_text()
    wait_for(lambda: not session_processes(resumed.pid), 60, "the Ray processes the resumed driver started to stop")

    final = subprocess.run([sys.executable, str(SCRIPT), *ARGV, *study_locations(tmp_path), "--resume"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    assert "study ablation_office31-smoke: 3 trials, 3 finished" in final.stdout
    after = trials(tmp_path)
    assert all(after[name] == rows for name, rows in done.items())  # finished before: not run again
    for name, rows in after.items():
        assert_continued_after_interrupts(rows, name, last_epoch=6)
    assert_every_epoch_logged_once(tmp_path)


def assert_every_epoch_logged_once(tmp_path: Path) -> None:
    """What the study promises beside Tune's files: each trial's MLflow run holds every epoch exactly once."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("srdc-studies").experiment_id],
                              "tags.`srdc.role` = 'child'")
    assert len(runs) == 3 and len({run.data.tags["trial_id"] for run in runs}) == 3
    for run in runs:
        steps = [metric.step for metric in client.get_metric_history(run.info.run_id, "epoch")]
        assert sorted(steps) == list(range(7)), "an epoch logged twice or missing"


@pytest.mark.slow
def test_a_killed_driver_resumes_without_rerunning_or_duplicating(tmp_path):
    driver, log = start_driver(tmp_path, "first.log")
    wait_for(lambda: driver.poll() is None and len(finished(tmp_path)) >= 1 and len(trials(tmp_path)) == 2, 400,
             "one trial finished and the next one started")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    done = finished(tmp_path)
    time.sleep(2)
    final = subprocess.run([sys.executable, str(SCRIPT), *ARGV, *study_locations(tmp_path), "--resume"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    after = trials(tmp_path)
    assert len(after) == 3 and all(after[name] == rows for name, rows in done.items())
    for name, rows in after.items():
        epochs = [row["epoch"] for row in rows]
        assert sorted(set(epochs)) == list(range(7)) and epochs[-1] == 6, name
    assert_every_epoch_logged_once(tmp_path)


# -- one driver per study (the lease) and a signed study storage ---------------------------------------------------
@pytest.fixture
def quick_lease(monkeypatch):
    """The lease's settle pause shortened: these tests run one driver in this process."""
    from srdc.harness import lease

    monkeypatch.setattr(lease, "SETTLE_S", 0.0)
    return lease


def write_holder(folder: Path, **changes) -> None:
    from dataclasses import asdict

    from srdc.harness.lease import Holder
    from srdc.trialfiles import LEASE_FILE

    now = time.time()
    holder = Holder(**{"host": socket.gethostname(), "pid": os.getpid(), "token": "other", "started": now - 60,
                       "heartbeat": now, **changes})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LEASE_FILE).write_text(json.dumps(asdict(holder)))


def test_a_live_drivers_lease_refuses_a_second_driver_in_one_line(tmp_path, quick_lease):
    folder = tmp_path / "study"
    with quick_lease.study_lease(str(folder)) as mine:
        assert json.loads((folder / "srdc_lease.json").read_text())["token"] == mine.token
        with pytest.raises(SRDCInputError, match=f"being run by the driver pid {os.getpid()} on host "
                                                 f"{socket.gethostname()}, started "):
            quick_lease.acquire(str(folder))
    assert not (folder / "srdc_lease.json").exists()  # ended with the driver
    write_holder(folder, host="another-host")  # a live driver elsewhere (fresh heartbeat)
    with pytest.raises(SRDCInputError, match="being run by the driver pid .* on host another-host"):
        quick_lease.acquire(str(folder))


@pytest.mark.parametrize("holder", [{"pid": 2 ** 22 + 7}, {"host": "another-host", "heartbeat": 0.0}],
                         ids=["a dead process on this host", "a stale heartbeat"])
def test_a_dead_drivers_lease_is_taken_over_with_a_notice(holder, tmp_path, quick_lease, capsys):
    folder = tmp_path / "study"
    write_holder(folder, **holder)
    mine = quick_lease.acquire(str(folder))
    assert json.loads((folder / "srdc_lease.json").read_text())["token"] == mine.token
    assert "notice: taking over the lease of study" in capsys.readouterr().err


def test_of_two_drivers_started_together_the_one_whose_lease_stays_proceeds(tmp_path, quick_lease, monkeypatch):
    folder = tmp_path / "study"
    monkeypatch.setattr(quick_lease.time, "sleep", lambda seconds: write_holder(folder, host="another-host"))
    with pytest.raises(SRDCInputError, match="on host another-host"):
        quick_lease.acquire(str(folder))


def test_the_lease_ends_with_an_interrupted_driver(tmp_path, quick_lease):
    folder = tmp_path / "study"
    with pytest.raises(KeyboardInterrupt), quick_lease.study_lease(str(folder)):
        raise KeyboardInterrupt
    assert not (folder / "srdc_lease.json").exists()


class Payload:
    """A pickle that touches a file when it is loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def saved_study(tmp_path: Path) -> list[str]:
    """A study folder as a first run leaves it (its signed launch file, a signed tuner.pkl); the argv that resumes
    it."""
    from srdc.harness.options import resolve_launch, save_launch
    from srdc.harness.signatures import sign_files

    argv = ["--smoke-test", *study_locations(tmp_path)]
    launch = resolve_launch(declaration("ablation_office31"), argv)
    save_launch(launch)
    (Path(launch.path) / "tuner.pkl").write_bytes(pickle.dumps({"state": 1}))
    sign_files(launch.path, {"tuner.pkl": pickle.dumps({"state": 1})})
    return [*argv, "--resume"]


def test_a_resume_beside_a_live_driver_is_refused_in_one_line(tmp_path, quick_lease, capsys):
    argv = saved_study(tmp_path)
    write_holder(tmp_path / "ray" / "ablation_office31-smoke", host="another-host", pid=4242)
    line = one_line_exit_2(lambda: main(declaration("ablation_office31"), argv), capsys)
    assert "being run by the driver pid 4242 on host another-host" in line and "wait for it to end" in line


def test_a_tuner_pkl_replaced_by_a_payload_runs_no_code_and_is_refused_in_one_line(tmp_path, capsys):
    argv = saved_study(tmp_path)
    folder = tmp_path / "ray" / "ablation_office31-smoke"
    (folder / "tuner.pkl").write_bytes(pickle.dumps(Payload(tmp_path / "pwned")))
    line = one_line_exit_2(lambda: main(declaration("ablation_office31"), argv), capsys)
    assert f"{folder}/tuner.pkl does not match its signature" in line and "SRDC_STORAGE_KEY" in line
    assert not (tmp_path / "pwned").exists()


def test_an_edited_tracking_uri_in_the_launch_file_is_refused(tmp_path, capsys):
    argv = saved_study(tmp_path)
    path = tmp_path / "ray" / "ablation_office31-smoke" / "srdc_study.json"
    launch = json.loads(path.read_text())
    path.write_text(json.dumps({**launch, "tracking_uri": "http://attacker.example:5000"}))
    line = one_line_exit_2(lambda: main(declaration("ablation_office31"), argv), capsys)
    assert "srdc_study.json does not match its signature" in line


def test_another_key_or_no_signatures_is_refused_and_trust_storage_reads_anyway(tmp_path, capsys, monkeypatch):
    from srdc.harness.options import resolve_launch

    argv = saved_study(tmp_path)
    monkeypatch.setenv("SRDC_STORAGE_KEY", "another key")
    assert "does not match its signature" in one_line_exit_2(
        lambda: main(declaration("ablation_office31"), argv), capsys)
    (tmp_path / "ray" / "ablation_office31-smoke" / "srdc_signatures.json").unlink()
    assert "srdc_signatures.json is missing" in one_line_exit_2(
        lambda: main(declaration("ablation_office31"), argv), capsys)
    assert resolve_launch(declaration("ablation_office31"), [*argv, "--trust-storage"]).trust_storage


def test_the_key_file_is_made_once_readable_by_its_user_alone(tmp_path, monkeypatch):
    from srdc.harness.signatures import storage_key

    monkeypatch.delenv("SRDC_STORAGE_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    key = storage_key()
    assert len(key) == 64 and storage_key() == key
    assert (tmp_path / "srdc" / "storage.key").stat().st_mode & 0o777 == 0o600


def test_the_last_versions_of_a_file_verify_as_tune_copies_them_in_the_background(tmp_path):
    from srdc.harness.signatures import KEPT, sign_files, verify_storage

    folder = tmp_path / "sweep"
    folder.mkdir()
    versions = [f"state {index}".encode() for index in range(KEPT + 1)]
    for version in versions:
        sign_files(str(folder), {"experiment_state-1.json": version})
    for version in versions[1:]:  # the copy in the storage may lag the driver's
        (folder / "experiment_state-1.json").write_bytes(version)
        verify_storage(str(folder))
    (folder / "experiment_state-1.json").write_bytes(versions[0])
    with pytest.raises(SRDCInputError, match="experiment_state-1.json does not match its signature"):
        verify_storage(str(folder))


def driver_command(tmp_path: Path, *argv: str) -> list[str]:
    """A one-trial, two-epoch study of :data:`SCRIPT` in ``tmp_path``."""
    return [sys.executable, str(SCRIPT), "--smoke-test", "--tasks", "A->W", "--variants", "source_only", "--seeds",
            "0", "--epochs", "2", *study_locations(tmp_path), *argv]


def refused_quickly(command: list[str], cwd: Path) -> str:
    """Run ``command``, which must exit 2 within seconds with one ``error:`` line; that line."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr + done.stdout
    return lines[0]


@pytest.mark.integration
def test_two_drivers_on_one_study_one_proceeds_and_a_payload_runs_no_code_then_the_study_resumes(tmp_path):
    """Two drivers started together: one proceeds, the other exits 2 in one line; a --resume beside the live
    driver likewise; nothing is marked failed. Then a tuner.pkl replaced by a payload: no code runs, exit 2, one
    line; with the original file back, the same study resumes normally with the key it was signed with."""
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    drivers = []
    for log in logs:
        with open(log, "w") as out:
            drivers.append(subprocess.Popen(driver_command(tmp_path), stdout=out, stderr=subprocess.STDOUT,
                                            cwd=tmp_path, start_new_session=True))
    wait_for(lambda: any(driver.poll() is not None for driver in drivers), 60, "one of the two drivers to end")
    (loser,) = [index for index, driver in enumerate(drivers) if driver.poll() is not None]
    winner = drivers[1 - loser]
    lines = logs[loser].read_text().strip().splitlines()
    assert drivers[loser].returncode == 2 and len(lines) == 1, lines
    assert "being run by the driver pid" in lines[0] or "pass --resume" in lines[0]

    study = tmp_path / "ray" / "ablation_office31-smoke"
    wait_for(lambda: (study / "srdc_study.json").exists(), 60, "the study's launch file (saved under its lease)")
    assert winner.poll() is None  # starting Ray alone takes longer than this
    line = refused_quickly(driver_command(tmp_path, "--resume"), tmp_path)
    assert f"being run by the driver pid {winner.pid}" in line
    assert winner.wait(timeout=600) == 0, logs[1 - loser].read_text()[-3000:]
    assert "1 trials, 1 finished, 0 failed" in logs[1 - loser].read_text()
    assert not (study / "srdc_lease.json").exists()

    original = (study / "tuner.pkl").read_bytes()
    (study / "tuner.pkl").write_bytes(pickle.dumps(Payload(tmp_path / "pwned")))
    line = refused_quickly(driver_command(tmp_path, "--resume"), tmp_path)
    assert "tuner.pkl does not match its signature" in line and not (tmp_path / "pwned").exists()
    (study / "tuner.pkl").write_bytes(original)
    resumed = subprocess.run(driver_command(tmp_path, "--resume"), cwd=tmp_path, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "1 trials, 1 finished, 0 failed" in resumed.stdout

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("srdc-studies").experiment_id])
    assert runs and all(run.info.status == "FINISHED" for run in runs)


# -- a trial refused by its input ---------------------------------------------------------------------------------
class RunsCode:
    """A checkpoint payload that runs a shell command when unpickled."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_trial_refused_by_its_input_ends_at_once_not_retried_with_the_reason_in_its_folder(tmp_path, monkeypatch):
    import ray.tune
    import torch

    from srdc.harness import trainable, tuner
    from srdc.runio import CHECKPOINT_VERSION
    from srdc.trialfiles import CHECKPOINT, REFUSED_FILE

    config = {"dataset": "embedded", "task": "digits->digits_photo", "variant": "srdc", "seed": 0, "epochs": 2,
              "max_samples": 100, "batch_size": 32, "study": "s"}
    marker = tmp_path / "MARKER"
    folder = tmp_path / "checkpoint_000001" / "digits-digits_photo.seed0"
    folder.mkdir(parents=True)
    torch.save({"format": "srdc-checkpoint", "version": CHECKPOINT_VERSION, "state": RunsCode(f"touch {marker}")},
               folder / CHECKPOINT)
    reports = []
    monkeypatch.setattr(ray.tune, "report", lambda metrics, checkpoint=None: reports.append(metrics))
    monkeypatch.setattr(ray.tune, "get_checkpoint",
                        lambda: ray.tune.Checkpoint.from_directory(str(tmp_path / "checkpoint_000001")))
    monkeypatch.setattr(trainable, "trial_threads", lambda: "threads: 1")
    trial_dir = tmp_path / "trial"
    trial_dir.mkdir()
    monkeypatch.chdir(trial_dir)
    trainable.run_trial(config)  # no exception: Tune would retry it --max-failures times
    assert reports == [{trainable.REFUSED: 1}] and not marker.exists()
    assert "could run code" in (trial_dir / REFUSED_FILE).read_text()

    class Ended:  # what trial_status reads of Tune's saved trial
        status, last_result = tuner.Trial.TERMINATED, reports[-1]

    assert tuner.trial_status(Ended, epochs=2) == tuner.TrialStatus.FAILED


# -- SIGTERM while Ray starts, and while the tables are written -------------------------------------------------
def sigterm_self() -> None:
    """A SIGTERM to this process, as a scheduler ending the job sends it; the interruption comes within the wait
    (short sleeps: the kernel may hand the signal to another thread, whose delivery does not cut a sleep short)."""
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(500):
        time.sleep(0.01)
    raise AssertionError("SIGTERM did not interrupt")


def test_sigterm_while_ray_starts_is_an_interruption_in_one_line_with_the_resume_command(
        tmp_path, monkeypatch, capsys, without_ray):
    import ray

    handler = signal.getsignal(signal.SIGTERM)
    # ray.init restored at the block's end: without_ray's teardown starts the suite's Ray session again with it
    with monkeypatch.context() as patched:
        patched.setattr(ray, "init", lambda **options: sigterm_self())
        code = main(declaration("ablation_office31"), ["--smoke-test", *study_locations(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and err[-1].startswith("interrupted: continue it with: ") and "--resume" in err[-1], err
    assert "Traceback" not in "\n".join(err) and signal.getsignal(signal.SIGTERM) == handler


def test_sigterm_calls_the_sigint_handler_in_place_at_once_and_interrupts_where_sigint_is_ignored(monkeypatch):
    from srdc.base import stop_gracefully

    called = []
    monkeypatch.setattr(signal, "getsignal", lambda signum: lambda *args: called.append(args))
    stop_gracefully(signal.SIGTERM, None)  # Tune's handler, as while trials run: it ends the run, nothing raised
    assert called == [(signal.SIGINT, None)]
    monkeypatch.setattr(signal, "getsignal", lambda signum: signal.SIG_IGN)  # a study started by `script &`
    with pytest.raises(KeyboardInterrupt):
        stop_gracefully(signal.SIGTERM, None)


def test_sigterm_while_the_tables_are_written_leaves_the_earlier_results_whole(tmp_path, monkeypatch):
    from srdc.base import sigterm_interrupts
    from srdc.harness import outcome
    from srdc.harness.options import Launch

    launch = Launch(study_name="s", storage_path=str(tmp_path), data_root="/d", tracking_uri="sqlite:///m.db")
    earlier = tmp_path / "s" / "results"
    earlier.mkdir(parents=True)
    (earlier / "table_oracle.md").write_text("the earlier run's table\n")
    before = snapshot(tmp_path)

    def write_half(results, folder: Path) -> list[Path]:
        (folder / "table_oracle.md").write_text("half of the new tables\n")
        sigterm_self()

    monkeypatch.setattr(outcome, "write_study", write_half)
    with pytest.raises(KeyboardInterrupt), sigterm_interrupts():
        outcome.publish(launch, "s", results=None)
    assert snapshot(tmp_path) == before  # no partial tables, no temporary folder


def test_the_tables_replace_the_earlier_results_whole(tmp_path):
    from srdc.trialfiles import write_folder

    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "stale.md").write_text("an earlier run's table\n")

    def write(into: Path) -> list[Path]:
        (into / "table.md").write_text("new\n")
        return [into / "table.md"]

    assert write_folder(folder, write) == [folder / "table.md"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["results"]
    assert [path.name for path in folder.iterdir()] == ["table.md"]


# -- a full disk under --storage-path ---------------------------------------------------------------------------
def no_space(path: str) -> OSError:
    import errno

    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)


@pytest.mark.parametrize("where", ["the sweep", "the launch file"])
def test_a_full_disk_under_the_storage_is_one_line_naming_it_and_how_to_continue(where, tmp_path, monkeypatch, capsys):
    from contextlib import nullcontext

    from srdc.harness import outcome

    state = str(tmp_path / "ray" / "ablation_office31-smoke" / "experiment_state.json")
    if where == "the sweep":  # Tune cannot write its state: the error comes out of Tuner.fit, wrapped
        def fit(*args, **kwargs):
            try:
                raise no_space(state)
            except OSError as error:
                raise RuntimeError("Tune's experiment state could not be saved") from error
        monkeypatch.setattr(outcome, "ray_session", lambda *args: nullcontext())
        monkeypatch.setattr(outcome, "fit", fit)
    else:
        def save_launch(launch):
            raise no_space(f"{launch.path}/srdc_study.json")
        monkeypatch.setattr(outcome, "save_launch", save_launch)
    code = main(declaration("ablation_office31"), ["--smoke-test", *study_locations(tmp_path)])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 1 and "Traceback" not in err and "results are complete" not in err, err
    assert last.startswith("error: the disk is full (No space left on device writing ") and "free space, then" in last
    if where == "the sweep":
        assert state in last and "continue it with: " in last and "--resume" in last
    else:
        assert "run the same command again" in last
