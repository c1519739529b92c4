"""A run's files: ``summary.json``, ``history.jsonl`` (one line per epoch) and ``checkpoint.pt``.

Written after every epoch, each atomically (temporary file + rename), so a crash never leaves a half file and
nothing already computed is lost.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

SUMMARY = "summary.json"
HISTORY = "history.jsonl"
CHECKPOINT = "checkpoint.pt"


def _atomic_write(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def write_history(out: Path, history: list[dict[str, Any]]) -> None:
    lines = "".join(json.dumps(row, sort_keys=True) + "\n" for row in history)
    _atomic_write(out / HISTORY, lambda p: p.write_text(lines))


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    _atomic_write(out / SUMMARY, lambda p: p.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n"))


def write_checkpoint(out: Path, state: dict[str, Any]) -> None:
    _atomic_write(out / CHECKPOINT, lambda p: torch.save(state, p))


def read_checkpoint(out: Path) -> dict[str, Any]:
    return torch.load(out / CHECKPOINT, map_location="cpu", weights_only=False)


def read_history(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / HISTORY).read_text().splitlines() if line.strip()]


def save_run(out: Path, trainer: Any) -> None:
    """History, summary and checkpoint of ``trainer`` (a :class:`srdc.trainer.Trainer`) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_checkpoint(out, trainer.state_dict())
    write_history(out, trainer.history)
    write_summary(out, trainer.summary())
