"""A run's checkpoint, saving a run's files, and the lock that makes a run folder one process's (the files' names,
and the history and summary: :mod:`srdc.trialfiles`).

Written after every epoch, each atomically (a temporary file named after the writing process, then a rename;
the temporary file is removed when the write fails: :func:`srdc.trialfiles.atomic_write`), so a crash never leaves a
half file and nothing already computed is lost.

A checkpoint is ``{"format": "srdc-checkpoint", "version": 2, "state": ...}`` made of tensors and plain python
values only, and is read with ``torch.load(weights_only=True)``: reading one never runs code from the file. A
file that is not such a checkpoint (another program's, truncated, corrupt, a newer format) is one
:class:`SRDCInputError` naming the file and why. Torch is imported by the functions that save and load.
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from srdc.errors import SRDCInputError
from srdc.trialfiles import CHECKPOINT, HISTORY, LOCK, SUMMARY, atomic_write, write_history, write_summary

CHECKPOINT_FORMAT = "srdc-checkpoint"
CHECKPOINT_VERSION = 2


def write_checkpoint(out: Path, state: dict[str, Any]) -> None:
    """``state`` (tensors and plain python values only) as ``out/CHECKPOINT``, with the format marker."""
    import torch

    wrapped = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "state": state}
    atomic_write(out / CHECKPOINT, lambda p: torch.save(wrapped, p))


def read_checkpoint(out: Path) -> dict[str, Any]:
    """The state saved by :func:`write_checkpoint` in ``out``, loaded without running code from the file.

    Raises :class:`SRDCInputError` (one line naming the file and why) for a missing file, a file holding
    anything but tensors and plain values, a truncated or corrupt file, one without our format marker, and
    one of another format version.
    """
    path = out / CHECKPOINT
    if not path.is_file():
        raise SRDCInputError(f"no checkpoint at {path}; start a new run instead of resuming")
    saved = _load_weights_only(path)
    return _unwrap(path, saved)


def _load_weights_only(path: Path) -> Any:
    import torch

    try:
        with warnings.catch_warnings():  # torch warns about a foreign pickle's protocol: the error below says it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _unpickling_reason(error)
        if "GLOBAL" in reason:
            raise SRDCInputError(
                f"{path} is refused: it holds objects other than tensors and plain values ({reason}), and loading "
                f"them could run code; start a new run in another --out"
            ) from error
        raise _damaged(path, reason) from error
    except Exception as error:  # only the file's bytes are parsed here: any failure means a damaged file
        raise _damaged(path, _first_line(error)) from error


def _damaged(path: Path, reason: str) -> SRDCInputError:
    return SRDCInputError(f"{path} is truncated or corrupt ({reason}); delete it to start the run again, or restore "
                          f"a good copy")


def _unpickling_reason(error: pickle.UnpicklingError) -> str:
    """The line of torch's weights-only error that says what was refused (the rest is boilerplate)."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(boilerplate)]
    return reasons[0][:160] if reasons else _first_line(error)


def _unwrap(path: Path, saved: Any) -> dict[str, Any]:
    if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT:
        raise SRDCInputError(
            f"{path} is not an srdc checkpoint (no {CHECKPOINT_FORMAT!r} format marker; checkpoints written "
            f"before format {CHECKPOINT_VERSION} cannot be resumed); start a new run in another --out"
        )
    version = saved.get("version")
    if version != CHECKPOINT_VERSION:
        newer = isinstance(version, int) and version > CHECKPOINT_VERSION
        raise SRDCInputError(
            f"{path} has checkpoint format version {version!r} but this srdc reads version {CHECKPOINT_VERSION}; "
            + ("upgrade srdc-studies to resume it" if newer else "start a new run in another --out")
        )
    if not isinstance(saved.get("state"), dict):
        raise SRDCInputError(f"{path} is corrupt (its 'state' is not a dict); delete it to start the run again")
    return saved["state"]


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:160] if lines else type(error).__name__


def save_run(out: Path, trainer: Any) -> None:
    """History, summary and checkpoint of ``trainer`` (a :class:`srdc.trainer.Trainer`) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_checkpoint(out, trainer.state_dict())
    write_history(out, trainer.history)
    write_summary(out, trainer.summary())


# -- one process per run folder ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class LockHolder:
    """Who holds a run folder: the process id, its host and when it took the folder (ISO 8601)."""

    pid: int
    host: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.since}"

    def is_stale(self) -> bool:
        """Whether the holder is known to be gone: same host and no process with its pid."""
        return self.host == socket.gethostname() and not _pid_alive(self.pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def read_lock(path: Path) -> LockHolder | None:
    """The holder recorded in the lock file ``path``; ``None`` when it is gone, empty or unreadable."""
    try:
        record = json.loads(path.read_text())
        return LockHolder(int(record["pid"]), str(record["host"]), str(record["since"]))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None


class RunLock:
    """``with RunLock(out):`` makes ``out`` this process's run folder until the block ends.

    The lock is ``out/srdc.lock``, created with ``O_CREAT | O_EXCL`` and holding pid, host and time. A lock whose
    holder is gone (same host, pid not alive: a killed run) is taken over, and the dead writer's temporary files
    are removed. A live holder, or one on another host, is one :class:`SRDCInputError` naming it. ``out`` is
    created when missing, and removed again at exit when the block left it empty.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out / LOCK
        self._created = False

    def __enter__(self) -> RunLock:
        self._created = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            self._acquire()
        except OSError as error:
            self._remove_new_empty_folder()
            raise SRDCInputError(f"cannot use {self.out} as a run folder ({error.strerror or error}); choose a "
                                 f"writable folder for --out") from error
        except BaseException:
            self._remove_new_empty_folder()
            raise
        remove_temporaries(self.out)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        holder = read_lock(self.path)
        if holder is not None and holder.pid == os.getpid():
            self.path.unlink()
        self._remove_new_empty_folder()

    def _acquire(self) -> None:
        for _ in range(3):
            if self._create():
                return
            holder = read_lock(self.path)
            if holder is None and not self.path.exists():
                continue  # released in between: try again
            if holder is None:
                raise SRDCInputError(
                    f"{self.out} is locked by {self.path}, which names no process (being written, or damaged); "
                    f"if no srdc-train uses this folder, delete {self.path}"
                )
            if not holder.is_stale():
                raise SRDCInputError(self._held_message(holder))
            _break_stale_lock(self.path, holder)
        raise SRDCInputError(f"{self.out} is contended by several processes taking it over; try again")

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since})
        try:
            os.write(fd, record.encode())
        finally:
            os.close(fd)
        return True

    def _held_message(self, holder: LockHolder) -> str:
        if holder.host != socket.gethostname():
            return (f"{self.out} is in use by another srdc-train ({holder.describe()}); wait for it, or, if that "
                    f"process is gone, delete {self.path}")
        return f"{self.out} is in use by another srdc-train ({holder.describe()}); wait for it, or use another --out"

    def _remove_new_empty_folder(self) -> None:
        if self._created and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()


def _break_stale_lock(path: Path, holder: LockHolder) -> None:
    """Remove the lock file of a dead ``holder``; safe when two processes take it over at once (the lock is
    moved aside first, and put back if it turns out to be a live process's new lock)."""
    aside = path.with_name(f"{path.name}.{os.getpid()}.stale")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another process took it over first
    if read_lock(aside) == holder:
        aside.unlink()
    else:
        os.rename(aside, path)


def remove_temporaries(out: Path) -> None:
    """Remove the temporary files that writers killed mid-write left in ``out`` (call it holding the lock)."""
    for name in (SUMMARY, HISTORY, CHECKPOINT, LOCK):
        for leftover in [*out.glob(f"{name}.*.tmp"), *out.glob(f"{name}.*.stale")]:
            leftover.unlink(missing_ok=True)
