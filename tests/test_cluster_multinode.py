"""A real multi-node Ray cluster on this machine: a head with no GPUs and two worker nodes declaring 2 GPUs and
4 CPUs each (no GPU is needed: ``--set device=cpu``), each a ``ray start --block`` in a session of its own, all
sharing the study's storage folder (the module's tests share the head; a killed worker is replaced for the next
test). Study drivers are separate processes that join it by ``--address`` or ``$RAY_ADDRESS``.

* placement: with 0.5 GPU per trial, 8 trials run at once, 4 on each worker and none on the head, and each
  trial's MLflow run is tagged with the node it ran on;
* node loss: ``kill -9`` of every process of one worker node mid-study; its trials continue from their last
  checkpoint on the other worker, and a ``kill -9`` of the driver after that is followed by ``--resume`` from a
  new driver: every trial ends once, with one MLflow run, each epoch logged once, and every trial's metrics
  equal to those of the same run trained without interruption.
"""

import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import free_port, session_processes, wait_for, without_timings
from mlflow import MlflowClient
from study_helpers import bare_history, children, epochs_logged

from srdc.tracking.sync import read_json_lines

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")
DRIVER = REPO / "tests" / "helpers" / "cluster_study.py"
SCRIPT = REPO / "studies" / "ablation_office31.py"
WORKER_RESOURCES = ["--num-cpus", "4", "--num-gpus", "2"]
# a dead node is declared dead after 5 missed health checks a second apart (Ray's default: 3 s apart)
SYSTEM_CONFIG = {"health_check_period_ms": 1000, "health_check_failure_threshold": 5}
OBJECT_STORE_BYTES = 100 * 1024 * 1024
EXPERIMENT = "srdc-studies"


@dataclass
class RayNode:
    """One Ray node: a ``ray start --block`` started in a new session, so that the node's processes (its raylet,
    agents and the workers that run trials) are exactly that session's."""

    name: str
    process: subprocess.Popen
    log: Path

    def processes(self) -> dict[int, str]:
        return session_processes(self.process.pid)

    def raylet_option(self, name: str) -> str | None:
        """The value of the node's raylet's option ``--NAME=VALUE``; ``None`` before the raylet runs."""
        for command in self.processes().values():
            for arg in command.split():
                if arg.startswith(f"--{name}="):
                    return arg.split("=", 1)[1]
        return None

    @property
    def node_id(self) -> str | None:
        return self.raylet_option("node_id")

    def ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        return "Ray runtime started." in self.log.read_text() and self.node_id is not None

    def kill(self) -> int:
        """``kill -9`` every process of the node (again, until none is left); how many there were."""
        killed: set[int] = set()

        def gone() -> bool:
            for pid in self.processes():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.add(pid)
            return not self.processes()

        wait_for(gone, 60, f"every process of Ray node {self.name} to die")
        self.process.wait(timeout=60)
        return len(killed)


@dataclass
class LocalCluster:
    """A head and worker nodes on this machine, under a temp dir of their own (short: Ray's socket paths are
    under it), on free ports, with a token of their own (Ray's token authentication); node logs in ``logs``."""

    root: Path
    logs: Path
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    nodes: list[RayNode] = field(default_factory=list)

    @property
    def address(self) -> str:
        """The head's GCS address, at the IP address Ray chose for this machine's nodes."""
        return f"{self.nodes[0].raylet_option('node_ip_address')}:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process of this cluster (a node, a driver): its token, no other address."""
        env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
        return {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, **extra}

    @property
    def workers(self) -> list[RayNode]:
        """The worker nodes still running."""
        return [node for node in self.nodes[1:] if node.process.poll() is None]

    def start_node(self, name: str, *args: str) -> RayNode:
        temp_dir = self.root / name
        temp_dir.mkdir()
        log = self.logs / f"ray-{name}.log"
        command = [str(RAY), "start", "--block", "--temp-dir", str(temp_dir), "--object-store-memory",
                   str(OBJECT_STORE_BYTES), "--dashboard-agent-listen-port", str(free_port()), *args]
        with open(log, "w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env(),
                                       start_new_session=True)
        node = RayNode(name, process, log)
        self.nodes.append(node)
        wait_for(node.ready, 180, f"Ray node {name} to start")
        return node

    def start_head(self) -> None:
        self.start_node("head", "--head", "--port", str(self.port), "--num-cpus", "1", "--num-gpus", "0",
                        "--include-dashboard", "false", "--dashboard-port", str(free_port()),
                        "--system-config", json.dumps(SYSTEM_CONFIG))

    def keep_workers(self, count: int) -> None:
        """Start new worker nodes until ``count`` run (a test may have killed one)."""
        while len(self.workers) < count:
            self.start_node(f"worker{len(self.nodes)}", "--address", self.address, *WORKER_RESOURCES)

    def stop(self) -> None:
        for node in self.nodes:
            if node.process.poll() is None or node.processes():
                node.kill()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_nodes(tmp_path_factory):
    """The cluster of this module's tests: its head (1 CPU, no GPU); every process killed after the last test."""
    started = LocalCluster(Path(tempfile.mkdtemp(prefix="srdc-ray-", dir="/tmp")), tmp_path_factory.mktemp("ray"))
    try:
        started.start_head()
        yield started
    finally:
        started.stop()


@pytest.fixture
def cluster(ray_nodes):
    """The cluster with two live worker nodes (4 CPUs, 2 GPUs each)."""
    ray_nodes.keep_workers(2)
    return ray_nodes


def locations(tmp_path: Path) -> list[str]:
    return ["--storage-path", str(tmp_path / "ray"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]


def node_tags(tmp_path: Path) -> dict[str, dict[str, str]]:
    """Each trial's MLflow run: its ``srdc.node`` and ``srdc.nodes`` tags, by trial id."""
    runs = children(MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}"), EXPERIMENT)
    return {run.data.tags["trial_id"]: {key: run.data.tags.get(key) for key in ("srdc.node", "srdc.nodes")}
            for run in runs}


def most_at_once(spans: list[dict]) -> int:
    """The largest number of ``spans`` (``start``/``end`` times) open at one moment."""
    events = sorted([(span["start"], 1) for span in spans] + [(span["end"], -1) for span in spans])
    running = most = 0
    for _, change in events:  # at equal times an end (-1) sorts before a start
        running += change
        most = max(most, running)
    return most


@pytest.mark.slow
def test_half_gpu_trials_fill_both_gpu_workers_eight_at_once_and_tag_their_node(cluster, tmp_path):
    spans_dir = tmp_path / "spans"
    run = subprocess.run([sys.executable, str(DRIVER), str(spans_dir), "--address", cluster.address,
                          "--gpus-per-trial", "0.5", "--set", "device=cpu", *locations(tmp_path)],
                         cwd=tmp_path, env=cluster.env(), capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "study placement: 12 trials, 12 finished, 0 failed, 0 unfinished" in run.stdout

    spans = read_json_lines(spans_dir / "spans.jsonl")
    workers = [node.node_id for node in cluster.workers]
    assert len(spans) == 12 and {span["node"] for span in spans} == set(workers)  # both workers, not the head
    assert most_at_once(spans) == 8
    for worker in workers:
        assert most_at_once([span for span in spans if span["node"] == worker]) == 4
    tags = node_tags(tmp_path)
    assert tags == {span["trial_id"]: {"srdc.node": span["node"], "srdc.nodes": span["node"]} for span in spans}


# -- node loss, then driver loss ------------------------------------------------------------------------------
EPOCHS = 14
TRIALS = 4  # one GPU each: two on each worker node
STUDY_ARGV = ["--smoke-test", "--tasks", "A->W", "--variants", "source_only", "--seeds", *map(str, range(TRIALS)),
              "--epochs", str(EPOCHS), "--gpus-per-trial", "1", "--set", "device=cpu"]
STUDY_DIR = "ablation_office31-smoke"


def trial_rows(tmp_path: Path) -> dict[str, list[dict]]:
    """Each trial's reported rows so far (Tune's result.json in the storage, by trial folder; while the driver runs,
    a copy of its own that it syncs there, which a reader may find empty for a moment)."""
    folders = sorted((tmp_path / "ray" / STUDY_DIR).glob("*/result.json"))
    return {path.parent.name: rows for path in folders if (rows := read_json_lines(path))}


def on_node(rows: list[dict], node: str) -> list[int]:
    """The epochs of ``rows`` reported from ``node``."""
    return [row["epoch"] for row in rows if row.get("node_id") == node]


def visits(rows: list[dict]) -> list[str]:
    """The nodes ``rows`` were reported from, in order, each stay once."""
    nodes = [row["node_id"] for row in rows]
    return [node for i, node in enumerate(nodes) if i == 0 or nodes[i - 1] != node]


def running(driver: subprocess.Popen, log: Path, condition):
    """``condition``, asserting first that the study's ``driver`` still runs."""
    def check() -> bool:
        assert driver.poll() is None, log.read_text()[-5000:]
        return condition()
    return check


@pytest.mark.slow
def test_a_lost_worker_node_and_a_killed_driver_lose_no_finished_trial_and_no_epoch(cluster, tmp_path):
    doomed, kept = cluster.workers
    lost, survivor = doomed.node_id, kept.node_id
    log = tmp_path / "first.log"
    with open(log, "w") as out:  # the cluster from $RAY_ADDRESS
        driver = subprocess.Popen([sys.executable, str(SCRIPT), *STUDY_ARGV, *locations(tmp_path)], cwd=tmp_path,
                                  env=cluster.env(RAY_ADDRESS=cluster.address), stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def midway_on_doomed() -> bool:
        """Every trial reported; those on the doomed node checkpointed epoch 2 or later, one has 8 epochs to go."""
        rows = trial_rows(tmp_path)
        there = [trial[-1]["epoch"] for trial in rows.values() if trial[-1].get("node_id") == lost]
        return len(rows) == TRIALS and min(there, default=0) >= 2 and min(there) <= EPOCHS - 8

    try:
        wait_for(running(driver, log, midway_on_doomed), 900, "the trials midway on the worker node to lose")
        killed = doomed.kill()

        def moved_and_unfinished() -> bool:
            """A trial of the lost node reported from the survivor; a trial has 4 epochs to go."""
            rows = trial_rows(tmp_path).values()
            return (any(on_node(trial, lost) and on_node(trial, survivor) for trial in rows)
                    and any(trial[-1]["epoch"] <= EPOCHS - 4 for trial in rows))

        wait_for(running(driver, log, moved_and_unfinished), 900, "the lost node's trials to continue elsewhere")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver, killed too
        driver.wait(timeout=60)
    before_resume = trial_rows(tmp_path)
    finished = {name: rows for name, rows in before_resume.items() if rows[-1]["epoch"] == EPOCHS}

    final = subprocess.run([sys.executable, str(SCRIPT), *STUDY_ARGV, *locations(tmp_path), "--resume",
                            "--address", cluster.address], cwd=tmp_path, env=cluster.env(), capture_output=True,
                           text=True, timeout=900)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    assert f"study {STUDY_DIR}: {TRIALS} trials, {TRIALS} finished, 0 failed, 0 unfinished" in final.stdout
    after = trial_rows(tmp_path)
    best = [rows[-1]["acc_best_oracle"] for rows in after.values()]  # the oracle table's cell: every seed
    assert f"| source_only | {statistics.mean(best):.1f}±{statistics.stdev(best):.1f} |" in final.stdout
    assert len(after) == TRIALS
    for name, rows in finished.items():  # not run again (if Tune's saved state still had it running, it repeats its
        assert after[name][:len(rows)] == rows, name  # last report from its last checkpoint, and trains nothing)
        assert all(row["epoch"] == EPOCHS for row in after[name][len(rows):]), name
    assert all(rows[-1]["epoch"] == EPOCHS for rows in after.values())  # every epoch: see MLflow and histories

    # node loss: each interrupted trial continued on the survivor right after its last epoch on the lost node
    interrupted = {name: on_node(rows, lost)[-1] for name, rows in after.items()
                   if on_node(rows, lost) and on_node(rows, lost)[-1] < EPOCHS}
    assert interrupted and all(visits(after[name]) == [lost, survivor] for name in interrupted)
    for name, last in interrupted.items():
        assert on_node(after[name], lost) == list(range(last + 1)), name
        assert on_node(after[name], survivor)[0] == last + 1, name  # from its checkpoint: no epoch redone
    assert all(len(visits(rows)) == 1 for name, rows in after.items() if name not in interrupted)  # never moved
    # driver loss: each unfinished trial continued from a checkpoint, not from epoch 0 (Tune's saved state can name
    # an older checkpoint than its last result: epochs redone; or one deleted since: the next one, result rows lost)
    resumed = {name: (rows[-1]["epoch"], after[name][len(rows)]["epoch"]) for name, rows in before_resume.items()
               if name not in finished}
    assert all(first > 0 for _, first in resumed.values()), resumed

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = {run.data.tags["trial_id"]: run for run in children(client, EXPERIMENT)}
    tags = node_tags(tmp_path)
    assert len(runs) == TRIALS == len(tags)  # one run per trial
    storage = tmp_path / "ray" / STUDY_DIR
    for name, rows in after.items():
        run, nodes = runs[rows[0]["trial_id"]], visits(rows)
        assert epochs_logged(client, run) == list(range(EPOCHS + 1)), name  # each epoch once
        # the tags come from every result the driver received; result.json can lack the rows of a killed driver's
        # last moments (above), so the nodes it shows are the tags' nodes, in order, perhaps fewer
        tagged = tags[rows[0]["trial_id"]]
        assert tagged["srdc.node"] == nodes[-1], name
        tagged_nodes = iter(tagged["srdc.nodes"].split(","))
        assert all(node in tagged_nodes for node in nodes), name
        expected = without_timings(bare_history(json.loads((storage / name / "params.json").read_text())))
        assert without_timings(read_json_lines(storage / name / "history.jsonl")) == expected, name
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "acc_target"))
        assert logged == [(row["epoch"], row["acc_target"]) for row in expected], name
        assert rows[-1]["acc_last"] == expected[-1]["acc_target"], name
    redone = sum(max(0, last + 1 - first) for last, first in resumed.values())
    skipped = sum(max(0, first - last - 1) for last, first in resumed.values())
    recovered = final.stderr.count("continuing from the next checkpoint")
    print(f"\nnode loss: kill -9 of the {killed} processes of worker node {lost[:8]}: {len(interrupted)} trials "
          f"interrupted there after epochs {sorted(interrupted.values())}, continued on {survivor[:8]} from epochs "
          f"{sorted(last + 1 for last in interrupted.values())}: 0 epochs redone. Driver killed with "
          f"{len(finished)} trials finished (none rerun) and {len(resumed)} running; these resumed at epochs "
          f"{sorted(first for _, first in resumed.values())} after their last reported "
          f"{sorted(last for last, _ in resumed.values())}: {redone} epochs redone, {recovered} trials continued "
          f"from a newer checkpoint than Tune's saved state named ({skipped} result rows missing). All {TRIALS} "
          f"trials' histories and MLflow runs equal their uninterrupted runs'.")
