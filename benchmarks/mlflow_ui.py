"""What serving the MLflow UI of an embedded store costs: the command a study printed before (``mlflow ui
--backend-store-uri sqlite:///...``: 4 uvicorn workers and MLflow's job runner with its huey consumers) against
the lean one it prints now (:func:`srdc.tracking.ui.ui_command`: no job runner, one worker), side by side in one
run. Prints figures; asserts nothing.

    python benchmarks/mlflow_ui.py                 # one start of each, alternating (about a minute on 2 busy cores)
    python benchmarks/mlflow_ui.py --repeat 3

Figures, for each command: seconds from its start to ``/health`` answering OK, then, ``--settle`` seconds later
(the job runner starts its consumers after the server answers), the processes of its session (the shell that runs
the command line left out) and the sum of their resident memory (RSS, from ``/proc``). The store is a SQLite
database in a temporary folder, its schema made by an unmeasured first start; each command serves its own copy.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from srdc.tracking.ui import ui_command

POLL_S = 0.1
HEALTH_TIMEOUT_S = 300.0
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass
class Start:
    """One start of a command: seconds to healthy, and its processes' count and summed RSS (MB) once settled."""

    healthy_s: float
    processes: int
    rss_mb: float


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return answer.read().strip() == b"OK"
    except OSError:
        return False


def session_rss(session: int) -> tuple[int, float]:
    """The live processes of session ``session`` but the shell that started the command (``sh``), and the sum of
    their RSS in MB."""
    count, pages = 0, 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            resident = int((stat.parent / "statm").read_text().split()[1])
            shell = (stat.parent / "comm").read_text().strip() == "sh"
        except (OSError, IndexError):
            continue
        if int(fields[3]) == session and fields[0] != "Z" and not shell:
            count, pages = count + 1, pages + resident
    return count, pages * PAGE_KB / 1024


def start_once(command: str, folder: Path, settle_s: float) -> Start:
    """Start ``command`` (a shell command line) in ``folder`` on a free port, measure it, stop its session."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("MLFLOW_")}
    with open(folder / "server.log", "a") as log:
        process = subprocess.Popen(["sh", "-c", f"{command} --port {port}"], cwd=folder, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    began = time.monotonic()
    try:
        while not healthy(port):
            if process.poll() is not None or time.monotonic() - began > HEALTH_TIMEOUT_S:
                raise RuntimeError(f"{command} did not answer /health; see {folder / 'server.log'}")
            time.sleep(POLL_S)
        healthy_s = time.monotonic() - began
        time.sleep(settle_s)
        processes, rss_mb = session_rss(process.pid)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        time.sleep(1.0)  # its workers leave after the server
        if session_rss(process.pid)[0]:
            os.killpg(process.pid, signal.SIGKILL)
    return Start(healthy_s, processes, rss_mb)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="starts of each command, alternating (default 1)")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds after /health before the memory is read (default 10)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="srdc-mlflow-ui-") as scratch:
        root = Path(scratch)
        python = shlex.quote(sys.executable)
        commands = {"old": f"{python} -m mlflow ui --backend-store-uri sqlite:///{root / 'old' / 'mlflow.db'}",
                    "lean": ui_command(sys.executable, f"sqlite:///{root / 'lean' / 'mlflow.db'}")}
        (root / "old").mkdir()
        start_once(commands["old"], root / "old", 0.0)  # creates the schema, not measured
        shutil.copytree(root / "old", root / "lean")
        starts: dict[str, list[Start]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, command in commands.items():
                starts[name].append(start_once(command, root / name, args.settle))
    print(f"mlflow ui, embedded SQLite store: median of {args.repeat} start(s) each, memory {args.settle:g} s "
          f"after /health")
    print(f"{'command':<6} {'to /health s':>13} {'processes':>10} {'RSS MB':>8}  command line")
    for name, command in commands.items():
        runs = starts[name]
        print(f"{name:<6} {statistics.median(r.healthy_s for r in runs):13.1f} "
              f"{statistics.median(r.processes for r in runs):10.0f} {statistics.median(r.rss_mb for r in runs):8.0f}"
              f"  {command.replace(scratch, 'TMP')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
