"""``mlflow_server/start.sh``: whatever ends it, no server process is left serving (its workers included); a taken
port is refused before anything starts, and its ready line names the process of its own that listens."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import READY, REPO, MLflowServer, free_port, wait_for

pytestmark = pytest.mark.integration  # starts processes (tests/tiers.py)


def group_of(pid: int) -> int:
    return os.getpgid(pid)


def members(group: int) -> list[int]:
    """The live processes of process group ``group`` (zombies excluded)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(status.parent.name))
    return found


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def serving(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def server(tmp_path):
    started = MLflowServer(tmp_path / "mlflow")
    started.start()
    (main,) = children(started.process.pid)  # the script's one child: the server, leading its own group
    group = group_of(main)
    assert group == main and len(members(group)) >= 2, "the server and its uvicorn worker(s)"
    yield started, group
    started.stop()


@pytest.mark.parametrize(("victim", "sent", "exit_code"), [
    ("script", signal.SIGTERM, 143), ("script", signal.SIGINT, 130), ("server", signal.SIGKILL, 137)])
def test_the_whole_server_group_stops_when_the_script_or_the_server_ends(server, victim, sent, exit_code):
    started, group = server
    os.kill(started.process.pid if victim == "script" else group, sent)
    assert started.process.wait(timeout=60) == exit_code
    wait_for(lambda: not members(group), 60, "every process of the server's group to end")
    assert not serving(started.port)
    time.sleep(1)
    assert not serving(started.port)


def test_the_ready_line_names_a_process_of_the_servers_own_group_that_listens(server):
    started, group = server
    line = started.ready_line()
    pid = int(line.split("(pid ")[1].split()[0])
    assert line == f"{READY} {started.url} (pid {pid} listens)\n" and pid in members(group)


def start_script(home: Path, port: int, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_HOME": str(home), "MLFLOW_PORT": str(port),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(REPO / "mlflow_server" / "start.sh"), *flags], env=env, capture_output=True,
                          text=True, timeout=60)


def test_a_port_another_server_holds_is_refused_in_one_line_before_anything_starts(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as other:  # another server, answering or not
        taken = other.getsockname()[1]
        for port, flags in ((taken, ()), (free_port(), ("--port", str(taken))), (free_port(), (f"--port={taken}",))):
            ended = start_script(tmp_path / "home", port, *flags)
            assert ended.returncode == 2 and ended.stdout == ""
            assert ended.stderr == (f"error: port {taken} on 127.0.0.1 is already in use (another server listens "
                                    f"there); stop it, or start this one on a free port: MLFLOW_PORT={taken + 1} "
                                    "mlflow_server/start.sh\n")
    assert not (tmp_path / "home").exists()  # nothing started: no store made


def test_a_server_that_ends_before_it_listens_is_an_error_line_and_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", "nosuch://store")
    ended = start_script(tmp_path / "home", free_port())
    assert ended.returncode != 0 and READY not in ended.stdout
    assert ended.stderr.splitlines()[-1].startswith("error: the mlflow server ended (status ")
