"""What every validator reads (:class:`ValidationInput`, the preparation pass) and what registers one
(:class:`Validator`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from srdc.model import Features

SMALLEST = 1e-12  # probabilities are clamped to this before their logarithm


@dataclass(frozen=True)
class ValidationInput:
    """What the preparation pass holds once the method has prepared the epoch."""

    target_probs: torch.Tensor  # softmax of the target logits, N_t x K
    target: Features
    source: Features
    centres: dict[str, torch.Tensor]  # the method's cluster centres mu per feature space (may be empty)
    feature_kernel: str  # the config's soft assignment of eqs. (4)/(9)
    source_val: Features | None = None  # the held-out source samples (source_val_fraction > 0), else None


@dataclass(frozen=True)
class Validator:
    """``compute`` scores the model; ``metric`` is its history key; ``better`` is ``"max"`` or ``"min"``;
    ``held_out_source``: it reads :attr:`ValidationInput.source_val`, and a run without one has no value of it."""

    name: str
    metric: str
    better: str
    compute: Callable[[ValidationInput], float]
    held_out_source: bool = False


def evenly_spaced(rows: torch.Tensor, limit: int) -> torch.Tensor:
    """At most ``limit`` rows of ``rows``, evenly spaced (no random state)."""
    import torch

    if len(rows) <= limit:
        return rows
    return rows[torch.linspace(0, len(rows) - 1, limit, device=rows.device).round().long()]
