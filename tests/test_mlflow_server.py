"""``mlflow_server/start.sh``: whatever ends it, no server process is left serving (its workers included)."""

import os
import signal
import socket
import time
from pathlib import Path

import pytest
from conftest import MLflowServer, wait_for

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
