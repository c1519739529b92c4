"""What every layer shares: task names, the device, torch's threads, the random states, the result keys, the model
selections, the trial statuses, the lazy registries, the entry-point wrapper.

The lowest layer of ``srdc`` (beside :mod:`srdc.errors`): it imports nothing else of the package, and torch only
inside the functions that need it, so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import enum
import errno
import importlib
import os
import random
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from srdc.errors import NonFiniteLossError, SRDCInputError

if TYPE_CHECKING:
    import torch

# what a trial reports of where it ran (srdc.harness.trainable): the Ray node of this report, and every node
# it ran on so far in order, comma-separated (a trial retried elsewhere after a node loss has two)
NODE_KEY = "node_id"
NODES_KEY = "node_ids"
# the section of a run's summary: what its ``auto`` and unset options resolved to (srdc.trainer.Trainer.resolved)
RESOLVED_KEY = "resolved"
EXIT_INPUT_ERROR = 2
EXIT_RUN_ERROR = 1
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # the errnos of a full disk (or quota): the run can continue after it

RngState = dict[str, Any]
# the --threads option of the commands that run torch (srdc-train, srdc-data extract-features)
THREADS_HELP = "torch's intra-op threads (default: $OMP_NUM_THREADS, else the CPUs this process may use)"
T = TypeVar("T")
# the model selections (srdc.selection), by name: which epoch of a run is reported
ORACLE, LABELFREE, LAST = "oracle", "labelfree", "last"


@dataclass(frozen=True)
class Selection:
    """One model selection. ``name`` names it in tables, metrics, ``srdc-report --selection`` and a search's
    ``--objective``; ``metric`` is the run summary's accuracy at its epoch; ``chosen`` says how that epoch is chosen
    (tables' captions; ``{selector}``: the label-free validator); ``title`` ends its tables' titles; ``objective``,
    for the :data:`SEARCH_SELECTIONS`: what a search trial maximises under it, in words."""

    name: str
    metric: str
    chosen: str
    title: str
    objective: str = ""


# every selection by name, in the order of a study's tables
SELECTIONS = {selection.name: selection for selection in (
    Selection(ORACLE, "acc_best_oracle", "epoch chosen with target labels (paper protocol, optimistic)",
              "oracle selection (target labels)",
              "the best target accuracy so far (target labels: the paper's protocol)"),
    Selection(LABELFREE, "acc_labelfree", "epoch chosen without target labels by {selector}", "label-free selection",
              "the best label-free validator value so far ({selector}; no target labels)"),
    Selection(LAST, "acc_last", "final epoch", "last epoch"),
)}
# the inductive setting's two further accuracies, those the released code logs beside the oracle's (srdc.selection):
# tabled and printed for inductive studies only
INDUCTIVE_SELECTIONS = {selection.name: selection for selection in (
    Selection("oracle_train_half", "acc_best_target_train", "the best accuracy of the target training half itself "
              "(the released code's 'best val acc'; target labels)", "oracle, target training-half accuracy"),
    Selection("oracle_test_half", "acc_best_target_test", "epoch chosen on the target test half itself (the released "
              "code's 'best test acc'; target test labels: the most optimistic)", "oracle on the target test half"),
)}
# "labelfree_NAME": the label-free selection by the validator NAME (selection_named)
LABELFREE_BY = f"{LABELFREE}_"


def selection_named(name: str) -> Selection:
    """The selection ``name``: one of :data:`SELECTIONS` or :data:`INDUCTIVE_SELECTIONS`, or ``labelfree_NAME``,
    the label-free selection by the validator NAME (each run's summary holds ``acc_labelfree_NAME`` for every
    validator it recorded); ``KeyError`` otherwise."""
    if name in SELECTIONS or name in INDUCTIVE_SELECTIONS:
        return {**SELECTIONS, **INDUCTIVE_SELECTIONS}[name]
    if not name.startswith(LABELFREE_BY) or name == LABELFREE_BY:
        raise KeyError(name)
    validator = name.removeprefix(LABELFREE_BY)
    return Selection(name, f"acc_{name}", f"epoch chosen without target labels by {validator}",
                     f"label-free selection by {validator}")


# the selections a study prints at its end (and its parent run shows as its description)
PRINTED_SELECTIONS = (ORACLE, LABELFREE)


def tabled_selections(inductive: bool) -> tuple[str, ...]:
    """The selections a study's results hold tables of: :data:`SELECTIONS`, and for an inductive study the
    :data:`INDUCTIVE_SELECTIONS` too."""
    return (*SELECTIONS, *(INDUCTIVE_SELECTIONS if inductive else ()))


def printed_selections(inductive: bool) -> tuple[str, ...]:
    """The selections a study prints at its end: :data:`PRINTED_SELECTIONS`, and for an inductive study the
    :data:`INDUCTIVE_SELECTIONS` too (the released code's three accuracies)."""
    return (*PRINTED_SELECTIONS, *(INDUCTIVE_SELECTIONS if inductive else ()))


# the selections a search may optimise (its --objective), the default first
SEARCH_SELECTIONS = (LABELFREE, ORACLE)


class TrialStatus(enum.StrEnum):
    """Where a trial (or its tracking run) stands: in progress (RUNNING), or how it ended: every epoch (FINISHED),
    stopped early by a scheduler (STOPPED), its loss or metrics became NaN or infinite (DIVERGED: not retried,
    ``diverged.txt`` says why), gave up after its retries (FAILED), or not yet (UNFINISHED: interrupted, continue
    it with ``--resume``). A tracker maps them to its own run statuses (:mod:`srdc.tracking.mlflow_tracker`)."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    STOPPED = "STOPPED"
    DIVERGED = "DIVERGED"
    FAILED = "FAILED"
    UNFINISHED = "UNFINISHED"


def parse_task(task: str) -> tuple[str, str]:
    """``"A->W"`` (also ``"A→W"``; ``"A-W"`` is not accepted: domain names may contain dashes) -> ("A", "W")."""
    for arrow in ("->", "→"):
        if arrow in task:
            source, target = (part.strip() for part in task.split(arrow, 1))
            if source and target:
                return source, target
    raise SRDCInputError(f"cannot read task {task!r}: write it as SOURCE->TARGET, e.g. A->W")


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda`` (an error when CUDA is absent)."""
    import torch

    if name == "cuda" and not torch.cuda.is_available():
        raise SRDCInputError("--device cuda was asked for but CUDA is not available; use --device cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def bar_disabled(progress: bool) -> bool | None:
    """tqdm's ``disable`` for a progress bar that was asked for (``progress``) or not: an asked-for bar draws on a
    terminal only (``None``), so output redirected to a file or a pipe gets no carriage-return frames or blank lines."""
    return None if progress else True


def set_torch_threads(requested: int | None = None, given_by: str = "--threads") -> str:
    """Set torch's intra-op threads to ``requested`` (named ``given_by``), else ``$OMP_NUM_THREADS``, else the CPUs
    this process may use; returns the line that says so (``threads: 4 (from OMP_NUM_THREADS)``). A ``requested``
    count below 1 is an :class:`SRDCInputError`."""
    import torch

    if requested is not None and requested < 1:
        raise SRDCInputError(f"{given_by} {requested}: give 1 or more threads")
    environment = os.environ.get("OMP_NUM_THREADS", "")
    if requested is not None:
        threads, source = requested, given_by
    elif environment.isdigit() and int(environment) > 0:
        threads, source = int(environment), "OMP_NUM_THREADS"
    else:
        threads, source = usable_cpus(), "the CPUs this process may use"
    torch.set_num_threads(threads)
    return f"threads: {threads} (from {source})"


def threads_for_cpus(cpus: float) -> int:
    """The threads of a process given ``cpus`` CPUs (a Tune trial's resources): their whole number, at least 1."""
    return max(1, int(cpus))


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS tells it, else every CPU)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def capture_rng() -> RngState:
    """The process-wide random states a run draws from: python, numpy, torch (CPU) and every CUDA device."""
    import numpy as np
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def portable_rng(state: RngState) -> RngState:
    """:func:`capture_rng`'s states with numpy's key array as a tensor, so that a checkpoint is tensors and plain
    values only (loadable with ``weights_only=True``)."""
    import numpy as np
    import torch

    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    return {**state, "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian)}


def native_rng(state: RngState) -> RngState:
    """The inverse of :func:`portable_rng`."""
    import numpy as np

    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    return {**state, "numpy": (name, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian)}


def restore_rng(state: RngState) -> None:
    """Put back the random states of :func:`capture_rng` (CUDA's only where CUDA is present now)."""
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Registry(MutableMapping[str, T]):
    """A name -> entry table of one ``kind`` (the option that names an entry: ``variant``, ``dataset``,
    ``labelfree_selector``) whose entries may be listed before they are loaded, so that listing the names
    (``--help``'s choices, error messages) imports nothing heavy.

    ``lazy`` maps a name to ``"package.module:attribute"`` (the entry is that attribute) or to ``"package.module"``
    (importing the module registers the entry itself, e.g. ``srdc.data.base.register``); the module is imported on
    the entry's first lookup. ``entries`` and entries set directly (``table[name] = entry``) are plain ones.
    :meth:`check` and :meth:`lookup` are what a user's name goes through: an unknown one is one line naming the
    kind and the choices.
    """

    def __init__(self, kind: str, lazy: Mapping[str, str] | None = None,
                 entries: Mapping[str, T] | None = None) -> None:
        self.kind = kind
        self._lazy = dict(lazy or {})
        self._entries: dict[str, T] = dict(entries or {})

    def check(self, name: str) -> str:
        """``name`` when it is registered (importing nothing), else an :class:`SRDCInputError`: ``unknown KIND
        'name'; choose one of: ...``."""
        if name not in self:
            raise SRDCInputError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self)}")
        return name

    def lookup(self, name: str) -> T:
        """The entry ``name`` (its module imported on first use); an unknown name is :meth:`check`'s error."""
        return self[self.check(name)]

    def __getitem__(self, name: str) -> T:
        if name not in self._entries and name in self._lazy:
            module, _, attribute = self._lazy[name].partition(":")
            loaded = importlib.import_module(module)
            if attribute:
                self._entries[name] = getattr(loaded, attribute)
        return self._entries[name]

    def __setitem__(self, name: str, entry: T) -> None:
        self._entries[name] = entry

    def loaded(self, name: str) -> T | None:
        """The entry ``name`` if it is set or was imported already, else ``None`` (imports nothing)."""
        return self._entries.get(name)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self._entries.pop(name, None)
        self._lazy.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._lazy, *self._entries]))

    def __len__(self) -> int:
        return len(dict.fromkeys([*self._lazy, *self._entries]))


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line too (``error: ...; see PROG --help``, exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT_ERROR, f"error: {message}; see {self.prog} --help\n")


def run_main(entry: Callable[[], int]) -> int:
    """Every console entry point's wrapper: ``entry()``'s exit status; bad input is one line on stderr and exit 2,
    a diverged run (non-finite loss) one line and exit 1, a full disk one line (:func:`disk_full_line`) and exit 1.
    Any other exception propagates with its traceback."""
    try:
        return entry()
    except SRDCInputError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except NonFiniteLossError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_RUN_ERROR
    except Exception as error:
        full = disk_full(error)
        if full is None:
            raise
        print(disk_full_line(full, "run the same command with --resume"), file=sys.stderr)
        return EXIT_RUN_ERROR


def disk_full(error: BaseException | None) -> OSError | None:
    """The "no space left" or "quota exceeded" :class:`OSError` behind ``error``: itself, or what caused it."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno in DISK_FULL:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def disk_full_line(error: OSError, then: str) -> str:
    """One line for a full disk: which file could not be written, and ``then`` what to do after freeing space
    (whatever was saved before stays: every file is written to a temporary name and renamed)."""
    where = f" writing {error.filename}" if error.filename else ""
    return (f"error: the disk is full ({error.strerror or os.strerror(error.errno)}{where}); free space, then {then} "
            f"(nothing saved so far is lost)")


def stop_gracefully(signum: int, frame: Any) -> None:
    """A SIGTERM handler: SIGTERM (a scheduler ending the job, ``kill``) stops the process as Ctrl-C does, so that
    what it was doing ends the way an interruption does: the SIGINT handler in place is called here and now (Tune's
    own while trials run; Python's ``KeyboardInterrupt`` otherwise). Not a SIGINT sent to ourselves: that one may be
    taken by another thread and handled later, outside the block that expects it, and is lost where SIGINT is
    ignored (a study started in the background by a script)."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):  # SIG_IGN, SIG_DFL or a handler installed outside Python
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Inside the block, SIGTERM is :func:`stop_gracefully` (on the main thread; elsewhere nothing changes); the
    earlier handler after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM) or signal.SIG_DFL  # None: a handler installed outside Python
    signal.signal(signal.SIGTERM, stop_gracefully)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def one_line(error: Exception) -> str:
    """The error's message; for one re-raised from a DataLoader worker (whose message carries the worker's
    traceback), the original message alone."""
    text = str(error)
    if "\nOriginal Traceback" not in text:
        return text
    return text.strip().splitlines()[-1].split(": ", 1)[-1]
