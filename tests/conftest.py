"""Shared fixtures: a real MLflow tracking server (mlflow_server/start.sh) and a small local Ray cluster."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# the tests' own modules (fixtures and tiers stay here; helpers, toys, the pinned record's replay: tests/helpers/)
sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))

# the test tiers (fast, integration, slow), and the fast tier's guard against starting a process
pytest_plugins = ("tiers",)

# one torch thread in this process and every process it starts (srdc-train, study drivers): on a loaded machine
# unpinned threads ran 5-10x slower; Ray pins its trial workers to their CPUs itself
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# image runs build their decoded-image caches (--image_cache auto, the default) here, not in ~/.cache/srdc
os.environ.setdefault("SRDC_CACHE_DIR", tempfile.mkdtemp(prefix="srdc-test-cache-"))
# study storages are signed with this key, not the user's key file (srdc.harness.signatures)
os.environ.setdefault("SRDC_STORAGE_KEY", "srdc-tests-storage-key")

REPO = Path(__file__).resolve().parents[1]
TIMING_PREFIXES = ("time_", "wall_s")  # wall-clock figures differ between runs; nothing else may


@pytest.fixture(autouse=True)
def fresh_drawing_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a fresh process: its first drawing of a run's figures is made whatever its budget
    (srdc.figures.trial.DRAWING_CLOCK), not judged by what an earlier test drew."""
    from srdc.figures.trial import DRAWING_CLOCK

    monkeypatch.setattr(DRAWING_CLOCK, "last_drawing_s", None)


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a ``.jsonl`` file (history.jsonl, Tune's result.json)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def without_timings(rows: list[dict]) -> list[dict]:
    """History rows without their wall-clock keys: what must be identical between two runs of one config."""
    return [{key: value for key, value in row.items() if not key.startswith(TIMING_PREFIXES)} for row in rows]


def assert_continued_after_interrupts(rows: list[dict], name: str, last_epoch: int) -> None:
    """A trial's reports in Tune's ``result.json`` after interrupts and resumes: its epochs in order from 0 to
    ``last_epoch``, never restarted from an earlier one, with at most one epoch repeated or missing. Tune copies
    ``result.json`` to the storage when it saves its state, and a report processed just before or after that copy
    can be in the file without its checkpoint in the state (the trial trains that epoch again), or the other way
    round (seen in CI: 0,1,2,3,3,4,5,6; 0,2,3,4,5,6; 0,1,1). Bit-for-bit resume makes a repeat the same epoch:
    every accuracy and loss equal."""
    epochs = [row["epoch"] for row in rows]
    repeated = [a for a, b in itertools.pairwise(epochs) if a == b]
    missing = set(range(last_epoch + 1)) - set(epochs)
    assert epochs == sorted(epochs) and epochs[0] == 0 and epochs[-1] == last_epoch, (name, epochs)
    assert len(repeated) + len(missing) <= 1, (name, epochs)
    for epoch in repeated:
        first, again = (row for row in rows if row["epoch"] == epoch)
        numbers = [key for key in first if key.startswith(("acc_", "loss_"))]
        assert numbers and all(first[key] == again[key] for key in numbers), (name, epoch)


def roundtrip(state):
    """``state`` through a file read as checkpoints are (tensors and plain values only)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def wait_for(condition, timeout_s: float, what: str) -> None:
    """Poll ``condition()`` until it is true; fail after ``timeout_s`` naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def interrupt_when(driver: subprocess.Popen, log: Path, condition, timeout_s: float, what: str,
                   sent: signal.Signals = signal.SIGINT) -> None:
    """Wait (the study ``driver`` still running) until ``condition()``, then send it ``sent`` (SIGINT, SIGTERM):
    it must exit 130."""

    def ready() -> bool:
        assert driver.poll() is None, log.read_text()
        return condition()

    try:
        wait_for(ready, timeout_s, what)
        driver.send_signal(sent)
        assert driver.wait(timeout=120) == 130, log.read_text()
    finally:
        if driver.poll() is None:
            driver.kill()


def session_processes(session: int) -> dict[int, str]:
    """The live processes of session ``session`` (a process started with ``start_new_session``: it and all it
    started, Ray's raylet, GCS and workers included), by pid: their command lines."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found[int(stat.parent.name)] = command
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


READY = "mlflow server: ready at"  # mlflow_server/start.sh's line once its own server listens


@dataclass
class MLflowServer:
    """``mlflow server`` (SQLite store and artifacts under ``home``, job execution off) on 127.0.0.1:``port``;
    ``backend_store_uri`` (e.g. ``postgresql://...``) replaces the SQLite store.

    ``stop()`` and ``start()`` again keep the same store: a server that goes down and comes back.
    """

    home: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    backend_store_uri: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> None:
        """Start it and wait until the script says its own server listens (:data:`READY`) and ``/health`` answers
        OK (any server on the port would answer that)."""
        env = {**os.environ, "MLFLOW_HOME": str(self.home), "MLFLOW_PORT": str(self.port), "MLFLOW_WORKERS": "1",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION", "MLFLOW_TRACKING_URI"):
            env.pop(name, None)
        if self.backend_store_uri is not None:
            env["MLFLOW_BACKEND_STORE_URI"] = self.backend_store_uri
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "server.log", "a") as log:
            logged = log.tell()
            # SIGINT at its default, as from a terminal: a test runner started with `&` by a script ignores it, and
            # bash cannot trap a signal ignored when it starts (env execs the script: the same pid)
            self.process = subprocess.Popen(["env", "--default-signal=INT", str(REPO / "mlflow_server" / "start.sh")],
                                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not (self.ready_line(logged) and self.healthy()):
            assert self.process.poll() is None, (self.home / "server.log").read_text()
            assert time.monotonic() < deadline, f"mlflow server did not answer /health in {timeout_s:.0f} s"
            time.sleep(0.5)

    def ready_line(self, offset: int = 0) -> str | None:
        """The script's line saying its own server listens on the port, logged after ``offset``."""
        with open(self.home / "server.log", errors="replace") as log:
            log.seek(offset)
            return next((line for line in log if line.startswith(f"{READY} {self.url} ")), None)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                return answer.read().strip() == b"OK"
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server and its workers (its own process group)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One MLflow server for the whole test session; yields its URL (use a fresh experiment name per test)."""
    server = MLflowServer(tmp_path_factory.mktemp("mlflow_home"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@dataclass
class S3Bucket:
    """A bucket of the test S3 server, found the way AWS tools find it (``AWS_ENDPOINT_URL``, set for the test)."""

    name: str
    endpoint: str

    def uri(self, prefix: str) -> str:
        return f"s3://{self.name}/{prefix}"

    def client(self):
        import boto3

        return boto3.client("s3")

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key under ``prefix``, sorted."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.name, Key=key)["Body"].read()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3-compatible server (in memory) on 127.0.0.1 for the whole session; yields its endpoint URL.
    Skipped when moto is not installed (``pip install -e '.[dev]'``), except under CI=true, where it fails."""
    if importlib.util.find_spec("moto") is None:
        reason = "moto[server] is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true needs it")
        pytest.skip(reason)
    port, log = free_port(), tmp_path_factory.mktemp("s3") / "moto.log"
    endpoint = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def answers() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                return True
        except OSError:
            return False

    try:
        wait_for(answers, 120, "the moto S3 server")
        yield endpoint
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> S3Bucket:
    """A fresh bucket on :func:`s3_server`, with ``AWS_ENDPOINT_URL``, dummy credentials and the region set in this
    process's environment (and so in the study drivers it starts) for the test."""
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    bucket = S3Bucket(f"srdc-{uuid.uuid4().hex[:12]}", s3_server)
    bucket.client().create_bucket(Bucket=bucket.name)
    return bucket


def start_test_ray() -> None:
    """The local Ray instance of :func:`ray_cluster`: 2 CPUs (tests on a 2-core machine keep Tune trials small),
    started as a study starts its own (no dashboard, the trials' output not echoed:
    :func:`srdc.harness.tuner.ray_session`)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A local Ray instance for the session (:func:`start_test_ray`)."""
    import ray

    start_test_ray()
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def without_ray() -> Iterator[None]:
    """No Ray session in this process during the test; the session's (:func:`ray_cluster`), when up, is started
    again after it."""
    import ray

    running = ray.is_initialized()
    if running:
        ray.shutdown()
    try:
        yield
    finally:
        if running:
            start_test_ray()


@pytest.fixture
def tiny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A miniature Office-31-like benchmark registered as a dataset and installed under ``tmp_path``."""
    from data_helpers import make_office_like, tiny_benchmark

    from srdc.data import DATASETS
    from srdc.data.benchmarks import BENCHMARKS, benchmark_spec

    bench = tiny_benchmark()
    monkeypatch.setitem(BENCHMARKS, bench.name, bench)
    monkeypatch.setitem(DATASETS, bench.name, benchmark_spec(bench))
    make_office_like(tmp_path / bench.name)
    return bench
