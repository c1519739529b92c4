"""Shared fixtures: a real MLflow tracking server (mlflow_server/start.sh) and a small local Ray cluster."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# one torch thread in this process and every process it starts (srdc-train, study drivers): on a loaded machine
# unpinned threads ran 5-10x slower; Ray pins its trial workers to their CPUs itself
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

REPO = Path(__file__).resolve().parents[1]
TIMING_PREFIXES = ("time_", "wall_s")  # wall-clock figures differ between runs; nothing else may


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a ``.jsonl`` file (history.jsonl, Tune's result.json)."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def without_timings(rows: list[dict]) -> list[dict]:
    """History rows without their wall-clock keys: what must be identical between two runs of one config."""
    return [{key: value for key, value in row.items() if not key.startswith(TIMING_PREFIXES)} for row in rows]


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        """Start it and wait until ``/health`` answers OK."""
        env = {**os.environ, "MLFLOW_HOME": str(self.home), "MLFLOW_PORT": str(self.port), "MLFLOW_WORKERS": "1",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        for name in ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION", "MLFLOW_TRACKING_URI"):
            env.pop(name, None)
        if self.backend_store_uri is not None:
            env["MLFLOW_BACKEND_STORE_URI"] = self.backend_store_uri
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "server.log", "a") as log:
            self.process = subprocess.Popen([str(REPO / "mlflow_server" / "start.sh")], env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            assert self.process.poll() is None, (self.home / "server.log").read_text()
            assert time.monotonic() < deadline, f"mlflow server did not answer /health in {timeout_s:.0f} s"
            time.sleep(0.5)

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


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A local Ray instance with 2 CPUs for the session (tests on a 2-core machine keep Tune trials small)."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


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
