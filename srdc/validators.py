"""Label-free validators: scores of a model computed WITHOUT target labels, used to choose an epoch.

A validator is one registry entry (:class:`Validator`): its name (what ``labelfree_selector`` names), the history
key it writes (``metric``), whether higher or lower is better, and a function of what the epoch's preparation
pass already holds (:class:`ValidationInput`), so validating costs no extra pass. The trainer computes every
registered validator every epoch; :mod:`srdc.selection` picks an epoch by each. Adding one is one function and
one line ``VALIDATORS["name"] = Validator(...)`` (a :class:`srdc.base.Registry`). The registry imports no torch
(``--help`` lists its names); the scores load :mod:`srdc.losses` when first computed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from srdc.base import Registry

if TYPE_CHECKING:
    import torch

    from srdc.model import Features


@dataclass(frozen=True)
class ValidationInput:
    """What the preparation pass holds once the method has prepared the epoch."""

    target_probs: torch.Tensor  # softmax of the target logits, N_t x K
    target: Features
    source: Features
    centres: dict[str, torch.Tensor]  # the method's cluster centres mu per feature space (may be empty)
    feature_kernel: str  # the config's soft assignment of eqs. (4)/(9)


@dataclass(frozen=True)
class Validator:
    """``compute`` scores the model; ``metric`` is its history key; ``better`` is ``"max"`` or ``"min"``."""

    name: str
    metric: str
    better: str
    compute: Callable[[ValidationInput], float]


def infomax(view: ValidationInput) -> float:
    """Information maximisation ``H(mean p) - mean H(p)`` of the target predictions (higher is better)."""
    from srdc import losses

    return float(losses.information_maximization(view.target_probs))


def clustering_objective(view: ValidationInput) -> float:
    """Eq. (6) as the value of eqs. (1)/(5): ``KL(Q||P) + sum rho log rho`` with ``Q`` from eq. (2), in the output
    space and in each feature space that has centres (soft assignment of eq. 4); lower is better."""
    from srdc import losses

    feature_p = [losses.soft_assignment(view.target.spaces[space], mu, view.feature_kernel)
                 for space, mu in view.centres.items()]
    return float(sum(losses.clustering_objective(losses.auxiliary_distribution(p), p)
                     for p in [view.target_probs, *feature_p]))


# the validators by the name ``labelfree_selector`` gives them
VALIDATORS: Registry[Validator] = Registry("labelfree_selector", entries={
    "infomax": Validator("infomax", "infomax", "max", infomax),
    "clustering": Validator("clustering", "clustering_objective", "min", clustering_objective),
})


def validate(view: ValidationInput) -> dict[str, float]:
    """Every registered validator's score, under its metric key."""
    return {validator.metric: validator.compute(view) for validator in VALIDATORS.values()}
