"""What a training method is to the generic :class:`srdc.trainer.Trainer` (as an algorithm is to DomainBed).

The trainer owns the epoch loop, the one no-grad preparation pass, evaluation, checkpoints and random states. A
:class:`Method` supplies the rest:

(a) :meth:`Method.draw`: what one training epoch draws (source and/or target batches; how many iterations);
(b) :meth:`Method.loss`: the losses of one iteration, given its batches and the epoch's plan;
(c) :meth:`Method.prepare`: what the preparation pass computes for the method (a plan for the next epoch, and
    metrics for the history), from the features of both domains;
(d) :meth:`Method.parameter_groups`, :meth:`Method.state_dict`: the parameters it owns besides the network's
    (SRDC's learnable centres mu), and their state for checkpoints; :meth:`Method.persistent_grad_params`: those
    whose gradients are never zeroed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from srdc.batches import batches_per_pass
from srdc.config import SRDCConfig
from srdc.model import Features, Outputs


@dataclass(frozen=True)
class Draw:
    """One training epoch's draw: its ``phase`` (the history key ``phase``), whether each iteration takes a
    source batch and/or a target batch, and the number of iterations (``None``: one pass over the larger drawn
    domain, docs/fidelity_notes.md item 13)."""

    phase: str
    source: bool
    target: bool
    iterations: int | None = None

    @property
    def batches(self) -> int:
        """The mini-batches one iteration draws (1 or 2)."""
        return int(self.source) + int(self.target)

    def epoch_iterations(self, source_size: int, target_size: int, batch_size: int) -> int:
        """The epoch's iterations, given the training samples of each domain: the draw's own count, else one pass
        over the larger drawn domain (what the trainer runs, and ``--dry-run`` prices)."""
        if self.iterations is not None:
            return self.iterations
        drawn = [size for size, taken in ((source_size, self.source), (target_size, self.target)) if taken]
        return max(batches_per_pass(size, batch_size) for size in drawn)


@dataclass(frozen=True)
class Batch:
    """A training mini-batch on the trainer's device: inputs, labels, and the samples' indices in their domain."""

    inputs: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor


@dataclass(frozen=True)
class Step:
    """One training iteration as a method sees it. ``forward`` runs the network (the trainer's autocast,
    outputs in float32); ``source``/``target`` are ``None`` where the epoch's :class:`Draw` does not take them."""

    forward: Callable[[torch.Tensor], Outputs]
    source: Batch | None
    target: Batch | None
    plan: Any
    epoch: int
    phase: str
    lam: float


@dataclass(frozen=True)
class Loss:
    """The loss to minimise and its parts (floats, averaged over the epoch into the history as ``loss_<name>``)."""

    total: torch.Tensor
    parts: dict[str, float]


@dataclass(frozen=True)
class Preparation:
    """What the preparation pass extracted: both domains' features (eval transform) and the target's softmax.
    ``epoch`` is the number of epochs trained so far (0 before the first)."""

    epoch: int
    num_classes: int
    source: Features
    target: Features
    target_probs: torch.Tensor


@dataclass(frozen=True)
class Prepared:
    """What :meth:`Method.prepare` returns: the ``plan`` the next epoch trains with (any object but ``None``) and
    history ``metrics``. The trainer checkpoints the plan through :meth:`Method.plan_state`: a plan of tensors,
    dicts, lists and numbers as it is, any other object through the method's own conversion."""

    plan: Any
    metrics: dict[str, float]


class Method:
    """A training method. Subclasses implement :meth:`draw`, :meth:`prepare` and :meth:`loss`; the rest has
    defaults for a method that owns no parameters besides the network's.

    ``reads``: the option groups the method reads beyond :data:`srdc.config.COMMON_GROUPS` (its trials log those);
    ``options``: a dataclass of :func:`srdc.config.option` fields, the method's own options (registering the method
    makes them config fields, their groups read too); ``preparation_batchnorm``: the BatchNorm regime of the
    preparation pass the method fixes (AdaBN's ``domain``), ``None``: the config's ``prep_batchnorm``;
    ``training_batchnorm``: the batches BatchNorm's running statistics average in training, which normalise the
    evaluation in the ``running`` regime (a results table's caption names each row's)."""

    reads: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[type | None] = None
    preparation_batchnorm: ClassVar[str | None] = None
    training_batchnorm: ClassVar[str] = "the batches it trains on"

    def __init__(self, config: SRDCConfig, num_classes: int, feature_dims: dict[str, int],
                 device: torch.device) -> None:
        """``feature_dims``: the dimension of each feature space the config selects (``pooled``, ``bottleneck``)."""
        self.config = config
        self.num_classes = num_classes
        self.feature_dims = feature_dims
        self.device = device

    def draw(self, epoch: int) -> Draw:
        """What epoch ``epoch`` (0-based) draws."""
        raise NotImplementedError

    def prepare(self, pass_: Preparation) -> Prepared:
        """The method's part of the preparation pass: the next epoch's plan and metrics for the history."""
        raise NotImplementedError

    def loss(self, step: Step) -> Loss:
        """The loss of one training iteration."""
        raise NotImplementedError

    def start_epoch(self, plan: Any, epoch: int) -> None:
        """Called before epoch ``epoch``'s iterations with the plan the preparation pass made."""

    def validation_centres(self, plan: Any) -> dict[str, torch.Tensor]:
        """The cluster centres per feature space that the label-free validators use (none by default)."""
        return {}

    def source_weights(self, plan: Any) -> torch.Tensor | None:
        """The weight of every source sample in the epoch ``plan`` prepares (soft source selection), ``None`` for
        a method that does not weight its source samples (the default); for the run's figures."""
        return None

    def resolved(self) -> dict[str, Any]:
        """What the method resolved of the config's ``auto`` options (none by default), for the run's summary."""
        return {}

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Optimizer groups ``{"params": [...], "lr_mult": m}`` for the parameters the method owns."""
        return []

    def persistent_grad_params(self) -> list[torch.Tensor]:
        """Parameters (among :meth:`parameter_groups`') whose gradients the trainer never zeroes, so that they add
        up over the steps; none by default. :meth:`state_dict` must then hold their ``.grad`` for exact resume."""
        return []

    def plan_state(self, plan: Any) -> Any:
        """``plan`` as tensors, dicts, lists and numbers only (what a checkpoint may hold); the plan itself by
        default. A method whose plan is another object (SRDC's dataclass) overrides this and
        :meth:`plan_from_state`."""
        return plan

    def plan_from_state(self, state: Any) -> Any:
        """The plan :meth:`plan_state` describes (its tensors already on the method's device)."""
        return state

    def state_dict(self) -> dict[str, Any]:
        """The state of what the method owns, for exact resume (tensors and plain values only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


def supervised_loss(step: Step, batch: Batch) -> Loss:
    """Cross-entropy on a labelled batch (eqs. 7 without weights), reported as the supervised part ``source``."""
    loss = F.cross_entropy(step.forward(batch.inputs).logits, batch.labels)
    return Loss(loss, {"target": 0.0, "source": float(loss.detach())})
