"""A toy method with two options of its own and a toy label-free validator, to show (and test) that adding either
is one module plus one registry line:

    monkeypatch.setitem(METHODS, "toy", ToyMethod)
    monkeypatch.setitem(VALIDATORS, "toy", TOY_VALIDATOR)

Registering the method makes its options (``ToyOptions``) config fields: ``srdc-train --toy_iterations``, ``--set``,
a study's ``param_space``, the trial's MLflow params and the resume identity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from srdc.config import Range, SRDCConfig, option
from srdc.methods import Draw, Loss, Method, Preparation, Prepared, Step
from srdc.validators import ValidationInput, Validator

TOY_ITERATIONS = 3


@dataclass
class ToyOptions:
    """toy: the toy method's own options"""

    toy_iterations: int = option(TOY_ITERATIONS, "toy", range=Range(1), help="toy: training iterations per epoch")
    toy_pull_weight: float = option(1.0, "toy", range=Range(0), help="toy: the weight of loss_pull")


class ToyMethod(Method):
    """Teaches the network to answer class 0 on every target batch (``loss_push``), and pulls a scalar it owns,
    ``anchor``, from 0 towards 1 (``loss_pull = toy_pull_weight (anchor - 1)^2``, at 10x the learning rate), in
    ``toy_iterations`` steps an epoch. Its preparation pass reports the share of target samples predicted as
    class 0."""

    options = ToyOptions

    def __init__(self, config: SRDCConfig, num_classes: int, feature_dims: dict[str, int],
                 device: torch.device) -> None:
        super().__init__(config, num_classes, feature_dims, device)
        self.anchor = torch.nn.Parameter(torch.zeros((), device=device))

    def draw(self, epoch: int) -> Draw:
        return Draw("toy", source=False, target=True, iterations=self.config.toy_iterations)

    def prepare(self, pass_: Preparation) -> Prepared:
        share = (pass_.target_probs.argmax(dim=1) == 0).float().mean() * 100.0
        return Prepared({"class0_share": share}, {"toy_class0_share": float(share)})

    def loss(self, step: Step) -> Loss:
        logits = step.forward(step.target.inputs).logits
        push = F.cross_entropy(logits, torch.zeros_like(step.target.labels))
        pull = self.config.toy_pull_weight * (self.anchor - 1.0) ** 2
        return Loss(push + pull, {"push": float(push.detach()), "pull": float(pull.detach())})

    def parameter_groups(self) -> list[dict[str, Any]]:
        return [{"params": [self.anchor], "lr_mult": 10.0}]

    def state_dict(self) -> dict[str, Any]:
        return {"anchor": self.anchor.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            self.anchor.copy_(state["anchor"])


def toy_confidence(view: ValidationInput) -> float:
    """Mean confidence of the target predictions, ``mean_i max_k p_ik`` (higher is better)."""
    return float(view.target_probs.max(dim=1).values.mean())


TOY_VALIDATOR = Validator("toy", "toy_confidence", "max", toy_confidence)
