"""What DANN and CDAN share: the gradient reversal layer, the domain discriminator, and the method that trains
the network against it (source cross-entropy plus the discriminator's domain loss through the reversal).

* Gradient reversal (Ganin & Lempitsky, ICML 2015, eq. 13 / Ganin et al., JMLR 2016, eq. 18): the identity
  forward, ``-coeff`` times the gradient backward, so one backward pass trains the discriminator to separate the
  domains and the features to confuse it. ``coeff`` is the run's ``lambda_p = 2 / (1 + exp(-gamma p)) - 1``
  (``lambda_gamma = 10``, the DANN paper's schedule), which the trainer updates once per epoch.
* Domain discriminator: ``Linear(d, h) - ReLU - Dropout - Linear(h, h) - ReLU - Dropout - Linear(h, 1)``, h = 1024,
  dropout 0.5 (DANN's Office network, CDAN's released ``AdversarialNetwork``); its logit says "source". It is
  trained at the new layers' learning rate (the released code's 10x the backbone's).
* One forward of the concatenated source and target batches (the released DANN/CDAN code: BatchNorm statistics
  are the mixed batch's, unlike SRDC's two forwards, docs/fidelity_notes.md item 13).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from srdc.config import SRDCConfig
from srdc.methods.base import Draw, Loss, Step
from srdc.methods.source_only import SourceOnly
from srdc.model import Outputs

ADVERSARIAL = Draw("adapt", source=True, target=True)


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coeff * grad, None


def reverse_gradient(x: torch.Tensor, coeff: float) -> torch.Tensor:
    """``x`` unchanged; its gradient multiplied by ``-coeff`` on the way back (the gradient reversal layer)."""
    return _GradientReversal.apply(x, coeff)


class DomainDiscriminator(nn.Sequential):
    """Two hidden ReLU layers with dropout, then one logit per sample (source = 1, target = 0)."""

    def __init__(self, in_dim: int, hidden: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )


def domain_loss(logits: torch.Tensor, num_source: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of the discriminator's ``logits`` (the first ``num_source`` rows are source, label 1,
    the rest target, label 0); the mean, or the ``weights``-weighted mean (CDAN+E's eq. 10)."""
    labels = torch.zeros_like(logits)
    labels[:num_source] = 1.0
    if weights is None:
        return F.binary_cross_entropy_with_logits(logits, labels)
    losses = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (weights * losses).sum() / weights.sum()


class Adversarial(SourceOnly):
    """Source cross-entropy plus the domain discriminator's loss on :meth:`discriminator_input`, whose gradient
    reaches the network reversed and scaled by lambda_p. Its preparation pass is the source model's (K-means
    accuracy and the other diagnostics of the SRDC rows it is compared with)."""

    reads = ("clustering", "adversarial")
    training_batchnorm = "concatenated source and target batches"

    def __init__(self, config: SRDCConfig, num_classes: int, feature_dims: dict[str, int],
                 device: torch.device) -> None:
        super().__init__(config, num_classes, feature_dims, device)
        self.discriminator = DomainDiscriminator(self.discriminator_dim(config, num_classes), config.disc_hidden,
                                                 config.disc_dropout).to(device)

    def discriminator_dim(self, config: SRDCConfig, num_classes: int) -> int:
        """The dimension of what the discriminator sees."""
        raise NotImplementedError

    def discriminator_input(self, out: Outputs, num_source: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the discriminator sees of the concatenated batch ``out``, and the samples' weights (or ``None``)."""
        raise NotImplementedError

    def draw(self, epoch: int) -> Draw:
        return ADVERSARIAL

    def loss(self, step: Step) -> Loss:
        """``CE(source) + L_d(D(GRL_lambda(h)))`` (DANN eq. 18; CDAN eq. 10 with ``h = f (x) g``)."""
        num_source = len(step.source.labels)
        out = step.forward(torch.cat([step.source.inputs, step.target.inputs]))
        supervised = F.cross_entropy(out.logits[:num_source], step.source.labels)
        features, weights = self.discriminator_input(out, num_source)
        logits = self.discriminator(reverse_gradient(features, step.lam)).squeeze(1)
        adversarial = domain_loss(logits, num_source, weights)
        parts = {"target": 0.0, "source": float(supervised.detach()), "domain": float(adversarial.detach())}
        return Loss(supervised + adversarial, parts)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """The discriminator, at the new layers' learning rate."""
        return [*super().parameter_groups(), {"params": list(self.discriminator.parameters()), "lr_mult": 1.0}]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "discriminator": self.discriminator.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.discriminator.load_state_dict(state["discriminator"])
