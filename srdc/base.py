"""What every layer shares: task names, the device, the random states, the selection keys, the entry-point wrapper.

The lowest layer of ``srdc`` (beside :mod:`srdc.errors`): it imports nothing else of the package, and torch only
inside the functions that need it, so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from srdc.errors import NonFiniteLossError, SRDCInputError

if TYPE_CHECKING:
    import torch

# the three numbers every run reports (srdc.selection): final epoch, epoch chosen with / without target labels
SELECTION_KEYS = ("acc_last", "acc_best_oracle", "acc_labelfree")
EXIT_INPUT_ERROR = 2
EXIT_RUN_ERROR = 1

RngState = dict[str, Any]


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


def capture_rng() -> RngState:
    """The process-wide random states a run draws from: python, numpy, torch (CPU) and every CUDA device."""
    import numpy as np
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state: RngState) -> None:
    """Put back the random states of :func:`capture_rng` (CUDA's only where CUDA is present now)."""
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line too (``error: ...; see PROG --help``, exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT_ERROR, f"error: {message}; see {self.prog} --help\n")


def run_main(entry: Callable[[], int]) -> int:
    """Every console entry point's wrapper: ``entry()``'s exit status; bad input is one line on stderr and exit 2,
    a diverged run (non-finite loss) one line and exit 1. Any other exception propagates with its traceback."""
    try:
        return entry()
    except SRDCInputError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except NonFiniteLossError as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return EXIT_RUN_ERROR


def one_line(error: Exception) -> str:
    """The error's message; for one re-raised from a DataLoader worker (whose message carries the worker's
    traceback), the original message alone."""
    text = str(error)
    if "\nOriginal Traceback" not in text:
        return text
    return text.strip().splitlines()[-1].split(": ", 1)[-1]
