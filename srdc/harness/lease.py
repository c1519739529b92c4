"""One driver per study: a lease in the study's folder of the storage (a local folder, NFS, ``s3://``, ``gs://``).

The driver writes :data:`~srdc.trialfiles.LEASE_FILE` (host, pid, start time, heartbeat time and a token of its
own) before it writes anything else, reads it back after :data:`SETTLE_S` (of two drivers started together, the one
whose lease is there then proceeds: plain writes and reads, so it works on every storage), refreshes its heartbeat
every :data:`HEARTBEAT_S` from a thread, and removes it when it ends, however it ends (``finally``, ``atexit``;
SIGTERM ends a study as Ctrl-C does). A second driver that finds a lease whose heartbeat is fresh (younger than
:data:`STALE_S`) is refused in one line naming the live driver; a stale lease, or one of a dead process on this
host, is taken over with a one-line notice.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from srdc.errors import SRDCInputError
from srdc.trialfiles import LEASE_FILE, read_storage_file, remove_storage_file, write_storage_file

logger = logging.getLogger(__name__)

HEARTBEAT_S = 10.0
STALE_S = 3 * HEARTBEAT_S
SETTLE_S = 1.0


@dataclass(frozen=True)
class Holder:
    """Who holds a study's lease: the driver's host, pid, token, start and last heartbeat (Unix times)."""

    host: str
    pid: int
    token: str
    started: float
    heartbeat: float

    def describe(self) -> str:
        start = datetime.fromtimestamp(self.started, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"the driver pid {self.pid} on host {self.host}, started {start}"

    def alive(self, now: float) -> bool:
        """Whether this driver still runs: a fresh heartbeat, and on this host a live process."""
        if now - self.heartbeat >= STALE_S:
            return False
        return self.host != socket.gethostname() or _process_exists(self.pid)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def read_holder(folder: str) -> Holder | None:
    """The holder of the lease of the study folder ``folder``; ``None`` when there is none (or it is unreadable)."""
    data = read_storage_file(folder, LEASE_FILE)
    if data is None:
        return None
    try:
        return Holder(**json.loads(data))
    except (ValueError, TypeError):
        return None


def _write(folder: str, holder: Holder) -> None:
    write_storage_file(folder, LEASE_FILE, json.dumps(asdict(holder), sort_keys=True).encode())


def _refusal(folder: str, holder: Holder, now: float) -> SRDCInputError:
    return SRDCInputError(f"study {folder} is being run by {holder.describe()} (heartbeat {now - holder.heartbeat:.0f}"
                          f" s ago); wait for it to end or stop it, then --resume (a lease whose heartbeat is older "
                          f"than {STALE_S:.0f} s is taken over)")


def refuse_if_held(folder: str) -> None:
    """One :class:`SRDCInputError` when a live driver holds the lease of the study folder ``folder`` (its files are
    in flux: a ``--resume`` checks this before it reads them)."""
    now = time.time()
    found = read_holder(folder)
    if found is not None and found.alive(now):
        raise _refusal(folder, found, now)


def acquire(folder: str) -> Holder:
    """Take the lease of the study folder ``folder`` for this process (one :class:`SRDCInputError` when a live
    driver holds it)."""
    refuse_if_held(folder)
    now = time.time()
    found = read_holder(folder)
    if found is not None:
        print(f"notice: taking over the lease of study {folder} from {found.describe()}, which is gone (heartbeat "
              f"{now - found.heartbeat:.0f} s ago)", file=sys.stderr)
    mine = Holder(socket.gethostname(), os.getpid(), uuid.uuid4().hex, now, now)
    _write(folder, mine)
    time.sleep(SETTLE_S)
    held = read_holder(folder)
    if held is None or held.token != mine.token:
        if held is None:
            raise SRDCInputError(f"study {folder}: its lease vanished as this driver took it; run it again")
        raise _refusal(folder, held, time.time())
    return mine


def release(folder: str, holder: Holder) -> None:
    """Remove the lease of ``folder`` when ``holder`` still holds it."""
    try:
        held = read_holder(folder)
        if held is not None and held.token == holder.token:
            remove_storage_file(folder, LEASE_FILE)
    except OSError as error:
        logger.warning("could not remove the lease of %s (%s); the next driver takes it over", folder, error)


def _beat(folder: str, holder: Holder, stop: threading.Event) -> None:
    """Refresh the heartbeat of ``holder``'s lease until ``stop``."""
    while not stop.wait(HEARTBEAT_S):
        try:
            held = read_holder(folder)
            if held is not None and held.token != holder.token:
                logger.warning("the lease of study %s was taken over by %s", folder, held.describe())
                return
            _write(folder, Holder(holder.host, holder.pid, holder.token, holder.started, time.time()))
        except OSError as error:
            logger.warning("could not refresh the lease of %s (%s)", folder, error)


@contextmanager
def study_lease(folder: str) -> Iterator[Holder]:
    """Hold the lease of the study folder ``folder`` (:func:`acquire`) while the block runs, its heartbeat refreshed
    by a thread; removed when the block ends, or at exit."""
    holder = acquire(folder)
    stop = threading.Event()

    def end() -> None:
        release(folder, holder)

    atexit.register(end)
    beat = threading.Thread(target=_beat, args=(folder, holder, stop), name="srdc-lease", daemon=True)
    beat.start()
    try:
        yield holder
    finally:
        stop.set()
        beat.join(timeout=5)
        end()
        atexit.unregister(end)
