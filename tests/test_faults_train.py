"""Fault injection on ``srdc-train``: SIGKILL at random points (during checkpoint saves too), then resume until
done, bit for bit; two processes on one ``--out``; a sweep of bad inputs, each one line, exit 2, ``--out``
untouched."""

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import read_jsonl, without_timings

from srdc.cli import main
from srdc.runio import CHECKPOINT_VERSION, read_checkpoint
from srdc.trialfiles import CHECKPOINT, FIGURES_DIR, HISTORY, LOCK, SUMMARY

TINY = ["--epochs", "3", "--max_samples", "200", "--batch_size", "32", "--quiet"]
RUN_FILES = sorted([CHECKPOINT, HISTORY, SUMMARY, FIGURES_DIR])


def train_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "srdc.cli", *TINY, "--out", str(out), *extra]


def untimed_summary(out: Path) -> dict:
    return {k: v for k, v in json.loads((out / SUMMARY).read_text()).items() if k != "wall_s"}


# -- SIGKILL, then resume until done ----------------------------------------------------------------------------
def _poll(process: subprocess.Popen, condition) -> bool:
    """Poll ``condition()`` every millisecond while ``process`` runs; whether it became true before the end."""
    while process.poll() is None:
        if condition():
            return True
        time.sleep(0.001)
    return False


def _saving(out: Path) -> bool:
    return out.is_dir() and any(name.endswith(".tmp") for name in os.listdir(out))


def _checkpoint_stamp(out: Path) -> int:
    try:
        return (out / CHECKPOINT).stat().st_mtime_ns
    except FileNotFoundError:
        return 0


def kill_at(process: subprocess.Popen, out: Path, how: str, rng: random.Random) -> bool:
    """SIGKILL ``process`` at a point chosen by ``how``; whether it was killed (not finished first).

    ``saving``: as soon as a temporary file appears (mid-write of checkpoint, history or summary);
    ``after-save``: a random delay after the checkpoint changes; ``anytime``: a random delay after the start
    (during start-up, training or a save)."""
    if how == "saving":
        fired = _poll(process, lambda: _saving(out))
    elif how == "after-save":
        stamp = _checkpoint_stamp(out)
        fired = _poll(process, lambda: _checkpoint_stamp(out) != stamp)
        time.sleep(rng.uniform(0.0, 0.6))
    else:
        deadline = time.monotonic() + rng.uniform(0.5, 6.0)
        fired = _poll(process, lambda: time.monotonic() > deadline)
    if process.poll() is not None:
        return False
    process.send_signal(signal.SIGKILL)
    process.wait()
    return fired


# The first three kills each move the run on by at most one epoch plus 0.6 s (epochs take about 0.4 s here), so
# 12 epochs leave room for them however fast or slow the machine; the later two may find the run finished.
KILLED_RUN = ["--epochs", "12"]


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_is_bit_for_bit_the_uninterrupted_run(tmp_path):
    reference = subprocess.Popen(train_command(tmp_path / "reference", *KILLED_RUN), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
    out, rng = tmp_path / "killed", random.Random(11)
    kills: list[tuple[str, bool]] = []  # how, and whether the kill left a half-written temporary file
    for how in ["saving", "after-save", "saving", "anytime", "after-save"]:
        process = subprocess.Popen(train_command(out, *KILLED_RUN, "--resume-or-start"), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        if not kill_at(process, out, how, rng):
            assert process.wait() == 0
            break
        kills.append((how, _saving(out)))
    final = subprocess.run(train_command(out, *KILLED_RUN, "--resume-or-start"), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert reference.wait() == 0, reference.stderr.read()
    print(f"{len(kills)} SIGKILLs ({sum(mid for _, mid in kills)} mid-write): {kills}")
    assert len(kills) >= 3, kills
    assert without_timings(read_jsonl(out / HISTORY)) == without_timings(read_jsonl(tmp_path / "reference" / HISTORY))
    assert untimed_summary(out) == untimed_summary(tmp_path / "reference")
    assert sorted(os.listdir(out)) == RUN_FILES  # no lock, no temporary file left
    assert read_checkpoint(out)["epoch"] == 12


# -- two processes on one --out ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_processes_on_one_folder_one_wins_the_other_exits_2_with_one_line(tmp_path):
    out = tmp_path / "shared"
    processes = {seed: subprocess.Popen(train_command(out, "--seed", str(seed)), stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True) for seed in (0, 1)}
    results = {seed: (process.wait(), process.stderr.read()) for seed, process in processes.items()}
    codes = sorted(code for code, _ in results.values())
    assert codes == [0, 2], results
    winner = next(seed for seed, (code, _) in results.items() if code == 0)
    loser_err = results[1 - winner][1]
    assert loser_err.startswith("error: ") and loser_err.count("\n") == 1 and "Traceback" not in loser_err
    assert f"in use by another srdc-train (pid {processes[winner].pid} on " in loser_err \
        or "already holds a run" in loser_err
    assert sorted(os.listdir(out)) == RUN_FILES
    assert json.loads((out / SUMMARY).read_text())["config"]["seed"] == winner
    assert [row["epoch"] for row in read_jsonl(out / HISTORY)] == [0, 1, 2, 3]
    state = read_checkpoint(out)
    assert state["epoch"] == 3 and state["config"]["seed"] == winner


# -- a sweep of bad inputs --------------------------------------------------------------------------------------
class RunsCode:
    """A checkpoint payload that runs a shell command when unpickled."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-epoch run's folder (copied per case)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["--epochs", "2", "--max_samples", "200", "--batch_size", "32", "--quiet", "--out", str(out)]) == 0
    return out


def _notes(out: Path) -> None:
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file\n")


def _checkpoint(payload) -> Callable[[Path], None]:
    def make(out: Path) -> None:
        _notes(out)
        torch.save(payload(out), out / CHECKPOINT)
    return make


def _truncated(out: Path, finished: Path) -> None:
    shutil.copytree(finished, out)
    data = (out / CHECKPOINT).read_bytes()
    (out / CHECKPOINT).write_bytes(data[: len(data) // 2])


def _lock(pid: int, host: str) -> Callable[[Path], None]:
    def make(out: Path) -> None:
        _notes(out)
        (out / LOCK).write_text(json.dumps({"pid": pid, "host": host, "since": "2024-05-01T12:00:00+00:00"}))
    return make


def _marker(out: Path) -> Path:
    return out.parent / "MARKER"


# name -> (extra arguments, what --out holds before (None: it does not exist), what the one line says)
BAD_INPUTS = {
    "unknown dataset": (["--dataset", "nope"], _notes, "unknown dataset 'nope'"),
    "unknown domain": (["--target", "mars"], _notes, "unknown domain 'mars'"),
    "unknown variant": (["--variant", "magic"], _notes, "argument --variant: invalid choice: 'magic'"),
    "unknown selector": (["--labelfree_selector", "vibes"], _notes, "invalid choice: 'vibes'"),
    "unknown option": (["--lamda", "0.5"], _notes, "unrecognized arguments: --lamda"),
    "unreadable task": (["--task", "digits"], _notes, "cannot read task 'digits'"),
    "negative lr": (["--lr", "-1"], _notes, "lr must be > 0, got -1.0"),
    "lr not a number": (["--lr", "fast"], _notes, "argument --lr: invalid float value: 'fast'"),
    "zero epochs": (["--epochs", "0"], _notes, "epochs must be >= 1, got 0"),
    "zero max_samples": (["--max_samples", "0"], _notes, "max_samples must be >= 1 or None, got 0"),
    "batch of one": (["--batch_size", "1"], _notes, "batch_size must be >= 2, got 1"),
    "momentum of 1": (["--momentum", "1"], _notes, "momentum must be in [0, 1), got 1.0"),
    "negative weight decay": (["--weight_decay", "-0.1"], _notes, "weight_decay must be >= 0"),
    "tiny image_size": (["--image_size", "4"], _notes, "image_size must be >= 8 or None, got 4"),
    "missing data root": (["--dataset", "digits", "--source", "usps", "--target", "mnist", "--data_root",
                           "/nonexistent/data"], _notes, "USPS not found"),
    "missing weights file": (["--backbone", "resnet18", "--weights", "/nonexistent/resnet18.pth"], _notes,
                             "weights file /nonexistent/resnet18.pth does not exist"),
    "resume, no checkpoint": (["--resume"], None, "--resume: no checkpoint at"),
    "resume, empty folder": (["--resume"], _notes, "--resume: no checkpoint at"),
    "resume and resume-or-start": (["--resume", "--resume-or-start"], _notes, "not allowed with argument"),
    "run exists, no resume": ([], "finished", "already holds a run; pass --resume"),
    "truncated checkpoint": (["--resume"], _truncated, "is truncated or corrupt"),
    "foreign checkpoint": (["--resume"], _checkpoint(lambda out: {"epoch": 3, "model": {"w": torch.ones(2)}}),
                           "is not an srdc checkpoint"),
    "code in checkpoint": (["--resume"], _checkpoint(lambda out: {"format": "srdc-checkpoint",
                                                                   "version": CHECKPOINT_VERSION,
                                                                   "state": RunsCode(f"touch {_marker(out)}")}),
                           "could run code"),
    "newer checkpoint": (["--resume"], _checkpoint(lambda out: {"format": "srdc-checkpoint",
                                                                 "version": CHECKPOINT_VERSION + 1, "state": {}}),
                         "upgrade srdc-studies"),
    "checkpoint of another config": (["--resume", "--epochs", "2", "--lambda_scale", "0.5"], "finished",
                                     "belongs to a different run (config differs in: lambda_scale"),
    "folder locked by a live process": ([], _lock(os.getppid(), socket.gethostname()),
                                        f"is in use by another srdc-train (pid {os.getppid()} on"),
    "folder locked on another host": ([], _lock(1, "elsewhere.example"), "if that process is gone, delete"),
    "out empty": (["--out", ""], None, "argument --out: empty; give the run's folder"),
    "out is a file": ([], lambda out: out.write_text("not a folder\n"), "as a run folder (File exists)"),
}


def _snapshot(out: Path) -> dict[str, tuple[bytes, int]]:
    if not out.exists():
        return {}
    if out.is_file():
        return {out.name: (out.read_bytes(), out.stat().st_mtime_ns)}
    return {str(path.relative_to(out)): (path.read_bytes(), path.stat().st_mtime_ns)
            for path in sorted(out.rglob("*")) if path.is_file()}


def test_the_sweep_covers_at_least_fifteen_bad_inputs():
    assert len(BAD_INPUTS) >= 15


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_exit_2_one_line_and_leaves_out_untouched(case, tmp_path, capfd, finished_run):
    extra, prepare, message = BAD_INPUTS[case]
    out = tmp_path / "run"
    if prepare == "finished":
        shutil.copytree(finished_run, out)
    elif prepare is _truncated:
        _truncated(out, finished_run)
    elif prepare is not None:
        prepare(out)
    before = _snapshot(out)
    capfd.readouterr()
    try:
        code = main(["--epochs", "2", "--max_samples", "200", "--batch_size", "32", "--quiet", "--out", str(out),
                     *extra])
    except SystemExit as exit_:  # argparse's one-line usage errors
        code = exit_.code
    err = capfd.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err
    assert _snapshot(out) == before
    assert not _marker(out).exists()


def test_a_full_disk_is_one_line_and_the_run_resumes_after_space_is_freed(tmp_path, capfd, monkeypatch):
    import errno

    from srdc import runio

    out = tmp_path / "run"
    write_history = runio.write_history

    def disk_fills_at_epoch_2(folder: Path, history: list[dict]) -> None:
        if len(history) > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / HISTORY))
        write_history(folder, history)

    monkeypatch.setattr(runio, "write_history", disk_fills_at_epoch_2)
    assert main([*TINY, "--out", str(out)]) == 1
    err = capfd.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        f"error: the disk is full (No space left on device writing {out / HISTORY}); free space, then run the same "
        "command with --resume (nothing saved so far is lost)")
    assert len(read_jsonl(out / HISTORY)) == 2  # epochs 0 and 1 kept
    monkeypatch.setattr(runio, "write_history", write_history)  # space freed
    assert main([*TINY, "--out", str(out), "--resume"]) == 0
    assert [row["epoch"] for row in read_jsonl(out / HISTORY)] == [0, 1, 2, 3]
