"""``srdc.runio``: a run's files are written atomically and read back as written; a checkpoint is read without
running code from it; one process at a time owns a run folder."""

import json
import math
import os
import socket
import subprocess
import sys

import pytest
import torch

from srdc.errors import SRDCInputError
from srdc.runio import CHECKPOINT_VERSION, RunLock, read_checkpoint, read_lock, save_run, write_checkpoint
from srdc.trialfiles import (
    CHECKPOINT,
    HISTORY,
    LOCK,
    SUMMARY,
    read_history,
    temporary_path,
    write_history,
    write_summary,
)

HISTORY_ROWS = [{"epoch": 1, "acc": 51.25, "lr": 0.01, "time": {"train": 1.5}},
                {"epoch": 2, "acc": 63.0, "lr": 0.0075, "time": {"train": 1.25}}]


def test_history_round_trips_one_sorted_line_per_epoch(tmp_path):
    write_history(tmp_path, HISTORY_ROWS)
    assert read_history(tmp_path) == HISTORY_ROWS
    lines = (tmp_path / HISTORY).read_text().splitlines()
    assert len(lines) == 2 and lines[0] == json.dumps(HISTORY_ROWS[0], sort_keys=True)
    write_history(tmp_path, HISTORY_ROWS[:1])
    assert read_history(tmp_path) == HISTORY_ROWS[:1]


def test_summary_round_trips_as_json(tmp_path):
    summary = {"acc_last": 70.5, "acc_best_oracle": 72.0, "acc_labelfree": 71.0, "config": {"seed": 3}}
    write_summary(tmp_path, summary)
    text = (tmp_path / SUMMARY).read_text()
    assert json.loads(text) == summary and text.endswith("}\n")


def test_checkpoint_round_trips_tensors_generators_and_python_values(tmp_path):
    generator = torch.Generator().manual_seed(7)
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 4, "generator": generator.get_state(),
             "history": HISTORY_ROWS, "weights": None}
    write_checkpoint(tmp_path, state)
    loaded = read_checkpoint(tmp_path)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert loaded["epoch"] == 4 and loaded["history"] == HISTORY_ROWS and loaded["weights"] is None
    restored = torch.Generator()
    restored.set_state(loaded["generator"])
    assert torch.equal(torch.rand(4, generator=restored), torch.rand(4, generator=generator))


def test_writes_replace_atomically_and_leave_no_temporary_file(tmp_path):
    write_history(tmp_path, HISTORY_ROWS)
    write_summary(tmp_path, {"acc_last": math.pi})
    write_checkpoint(tmp_path, {"epoch": 1})
    write_checkpoint(tmp_path, {"epoch": 2})
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([CHECKPOINT, HISTORY, SUMMARY])
    assert read_checkpoint(tmp_path) == {"epoch": 2}


class FakeTrainer:
    """What :func:`save_run` reads of a trainer."""

    history = HISTORY_ROWS

    def state_dict(self) -> dict:
        return {"epoch": 2, "model": {"b": torch.ones(2)}}

    def summary(self) -> dict:
        return {"acc_last": 63.0, "epochs": 2}


def test_save_run_creates_the_folder_and_writes_all_three_files(tmp_path):
    out = tmp_path / "runs" / "a_w"
    save_run(out, FakeTrainer())
    assert sorted(path.name for path in out.iterdir()) == sorted([CHECKPOINT, HISTORY, SUMMARY])
    assert read_history(out) == HISTORY_ROWS
    assert json.loads((out / SUMMARY).read_text()) == {"acc_last": 63.0, "epochs": 2}
    assert torch.equal(read_checkpoint(out)["model"]["b"], torch.ones(2))


class Unsaveable:
    """Fails half-way through ``torch.save``, as a full disk or a kill would."""

    def __reduce__(self):
        raise OSError("disk full")


def test_a_failed_write_keeps_the_previous_file_whole_and_removes_its_temporary_file(tmp_path):
    write_checkpoint(tmp_path, {"epoch": 1})
    with pytest.raises(OSError, match="disk full"):
        write_checkpoint(tmp_path, {"epoch": 2, "state": Unsaveable()})
    assert read_checkpoint(tmp_path) == {"epoch": 1}
    assert [path.name for path in tmp_path.iterdir()] == [CHECKPOINT]


def test_temporary_files_are_named_after_the_writing_process(tmp_path):
    assert temporary_path(tmp_path / CHECKPOINT).name == f"{CHECKPOINT}.{os.getpid()}.tmp"


# -- reading a checkpoint never runs code from it ----------------------------------------------------------------
class RunsCode:
    """What a malicious checkpoint holds: unpickling it runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "MARKER"
    torch.save({"format": "srdc-checkpoint", "version": CHECKPOINT_VERSION,
                "state": {"epoch": 1, "x": RunsCode(f"touch {marker}")}}, tmp_path / CHECKPOINT)
    with pytest.raises(SRDCInputError, match="GLOBAL posix.system.*could run code") as error:
        read_checkpoint(tmp_path)
    assert not marker.exists()
    assert str(tmp_path / CHECKPOINT) in str(error.value) and "\n" not in str(error.value)
    torch.load(tmp_path / CHECKPOINT, weights_only=False)  # the file is a real threat: the old loader ran it
    assert marker.exists()


def _truncated(path):
    write_checkpoint(path.parent, {"epoch": 1, "w": torch.ones(1000)})
    path.write_bytes(path.read_bytes()[:300])


def _flipped(path):
    write_checkpoint(path.parent, {"epoch": 1, "w": torch.ones(1000)})
    data = bytearray(path.read_bytes())
    for i in range(0, len(data), 7):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("make", "why"), [
    (lambda path: path.write_bytes(b""), "truncated or corrupt"),
    (_truncated, "truncated or corrupt"),
    (_flipped, "truncated or corrupt"),
    (lambda path: path.write_text("not a checkpoint at all\n" * 20), "truncated or corrupt"),
    (lambda path: torch.save({"epoch": 1, "model": {}}, path), "not an srdc checkpoint"),
    (lambda path: torch.save(torch.ones(3), path), "not an srdc checkpoint"),
    (lambda path: torch.save({"format": "srdc-checkpoint", "version": CHECKPOINT_VERSION + 1, "state": {}}, path),
     "upgrade srdc-studies"),
    (lambda path: torch.save({"format": "srdc-checkpoint", "version": 1, "state": {}}, path), "version 1"),
    (lambda path: torch.save({"format": "srdc-checkpoint", "version": CHECKPOINT_VERSION, "state": [1]}, path),
     "corrupt"),
], ids=["empty", "truncated", "bytes-flipped", "text", "foreign-dict", "foreign-tensor", "newer-version",
        "older-version", "state-not-a-dict"])
def test_an_unusable_checkpoint_is_one_line_naming_the_file_and_why(tmp_path, make, why):
    make(tmp_path / CHECKPOINT)
    with pytest.raises(SRDCInputError, match=why) as error:
        read_checkpoint(tmp_path)
    message = str(error.value)
    assert str(tmp_path / CHECKPOINT) in message and "\n" not in message


def test_a_missing_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(SRDCInputError, match="no checkpoint at"):
        read_checkpoint(tmp_path)


# -- one process per run folder --------------------------------------------------------------------------------
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                             text=True, check=True)
    return int(process.stdout)


def write_lock(out, pid: int, host: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / LOCK).write_text(json.dumps({"pid": pid, "host": host, "since": "2024-01-01T00:00:00+00:00"}))


def test_the_lock_names_this_process_and_is_removed_at_exit(tmp_path):
    with RunLock(tmp_path):
        holder = read_lock(tmp_path / LOCK)
        assert (holder.pid, holder.host) == (os.getpid(), socket.gethostname()) and holder.since
    assert not (tmp_path / LOCK).exists()


def test_a_live_holder_is_one_line_naming_it(tmp_path):
    with RunLock(tmp_path), pytest.raises(SRDCInputError, match=f"in use by another srdc-train \\(pid {os.getpid()} "
                                                                  f"on {socket.gethostname()}, since ") as error:
        RunLock(tmp_path).__enter__()
    assert "\n" not in str(error.value)
    assert not (tmp_path / LOCK).exists()


@pytest.mark.integration
def test_a_stale_lock_is_taken_over_and_its_writer_temporary_files_removed(tmp_path):
    pid = dead_pid()
    write_lock(tmp_path, pid, socket.gethostname())
    (tmp_path / f"{CHECKPOINT}.{pid}.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / HISTORY).write_text("{}\n")
    with RunLock(tmp_path):
        assert read_lock(tmp_path / LOCK).pid == os.getpid()
        assert sorted(path.name for path in tmp_path.iterdir()) == sorted([HISTORY, LOCK])
    assert [path.name for path in tmp_path.iterdir()] == [HISTORY]


@pytest.mark.integration
def test_a_lock_from_another_host_is_not_taken_over(tmp_path):
    write_lock(tmp_path, dead_pid(), "elsewhere.example")
    with pytest.raises(SRDCInputError, match=f"elsewhere.example.*if that process is gone, delete {tmp_path / LOCK}"):
        RunLock(tmp_path).__enter__()
    assert read_lock(tmp_path / LOCK).host == "elsewhere.example"


def test_a_lock_naming_no_process_is_an_error_saying_what_to_do(tmp_path):
    (tmp_path / LOCK).write_text("")
    with pytest.raises(SRDCInputError, match="names no process"):
        RunLock(tmp_path).__enter__()


def test_a_new_folder_left_empty_is_removed_and_one_with_files_kept(tmp_path):
    with pytest.raises(SRDCInputError), RunLock(tmp_path / "bad"):
        raise SRDCInputError("bad input")
    assert not (tmp_path / "bad").exists()
    with RunLock(tmp_path / "good"):
        write_history(tmp_path / "good", HISTORY_ROWS)
    assert [path.name for path in (tmp_path / "good").iterdir()] == [HISTORY]
