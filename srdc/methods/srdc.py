"""SRDC (Tang et al., CVPR 2020, Algorithm 1) with its three component switches (Table 1's ``srdc_no_*`` rows).

The switches are resolved by :func:`srdc.methods.switches` (the variant's, each overridden by its config field) so
that the factorial study can read them. Without structural source regularisation the model is first pre-trained on the
source alone for ``pretrain_epochs`` epochs, then fine-tuned with eq. (6) (``srdc_no_struct``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

from srdc import losses
from srdc.clustering import centroids_with_fallback, class_means, kmeans
from srdc.config import SRDCConfig
from srdc.methods import switches
from srdc.methods.base import Batch, Draw, Loss, Method, Preparation, Prepared, Step, supervised_loss
from srdc.model import Centres, Outputs

SOURCE = Draw("source", source=True, target=False)
ADAPT = Draw("adapt", source=True, target=True)


@dataclass(frozen=True)
class EpochPlan:
    """What the preparation pass hands to the next training epoch (small: O(N + K d))."""

    mu: dict[str, torch.Tensor]
    target_centres: dict[str, torch.Tensor]
    kmeans_labels: dict[str, torch.Tensor]
    predicted_labels: torch.Tensor
    column_mass: dict[str, torch.Tensor]
    source_weights: torch.Tensor


def _accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predictions == labels).float().mean() * 100.0)


class SRDC(Method):
    """Eq. (11): target clustering (eq. 6) in the output space and in each feature space with centres mu,
    structural source regularisation (eq. 10), source samples weighted by eq. (12)."""

    reads = ("clustering", "srdc", "release")
    training_batchnorm = "source and target batches, forwarded apart"

    def __init__(self, config: SRDCConfig, num_classes: int, feature_dims: dict[str, int],
                 device: torch.device) -> None:
        super().__init__(config, num_classes, feature_dims, device)
        self.switches = switches(config)
        self.centres = Centres(feature_dims if self.switches.feature_discrimination else {}, num_classes).to(device)
        if config.centre_grad_accumulate:
            for mu in self.centres.parameters():
                mu.register_post_accumulate_grad_hook(self._decay_into_grad)

    # -- (a) what an epoch draws ----------------------------------------------------------------------------
    def draw(self, epoch: int) -> Draw:
        """Source pre-training for ``pretrain_epochs`` epochs, then one source and one target batch per step."""
        return SOURCE if epoch < self.switches.pretrain_epochs else ADAPT

    # -- (c) the preparation pass ---------------------------------------------------------------------------
    def prepare(self, pass_: Preparation) -> Prepared:
        """K-means in each feature space, target centres c^t, the re-initialisation of mu, the source weights
        (eq. 12; w = 1 in the first epoch, Algorithm 1) and the column masses of eq. (2)."""
        start = time.perf_counter()
        spaces = ["pooled", *[s for s in self.centres.spaces if s != "pooled"]]
        source_centres, target_centres, kmeans_labels = {}, {}, {}
        for space in spaces:
            source_centres[space], kmeans_labels[space], target_centres[space] = self._kmeans(pass_, space)
        time_kmeans = time.perf_counter() - start

        mu = {space: target_centres[space] if self.config.mu_init == "target"
              else 0.5 * (source_centres[space] + target_centres[space]) for space in self.centres.spaces}
        weights = self._source_weights(pass_, target_centres["pooled"])
        plan = EpochPlan(mu=mu, target_centres=target_centres, kmeans_labels=kmeans_labels,
                         predicted_labels=pass_.target.logits.argmax(dim=1),
                         column_mass=self._column_mass(pass_, mu), source_weights=weights)
        metrics = {
            "source_weight_mean": float(weights.mean()),
            "source_weight_min": float(weights.min()),
            "source_weight_max": float(weights.max()),
            "time_kmeans_s": time_kmeans,
        }
        for space in spaces:
            metrics[f"acc_kmeans_{space}"] = _accuracy(kmeans_labels[space], pass_.target.labels)
        return Prepared(plan, metrics)

    def _kmeans(self, pass_: Preparation, space: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Source class centres, then K-means of the target (Appendix A: from the source centres at the first
        epoch, later from the target means grouped by the classifier's predictions); (c^s, labels, c^t)."""
        source, target = pass_.source, pass_.target
        config = self.config
        source_centres = class_means(source.spaces[space], source.labels, pass_.num_classes)[0]
        fallback = source_centres if config.empty_centre == "source" else torch.zeros_like(source_centres)
        init = source_centres if pass_.epoch == 0 else centroids_with_fallback(
            target.spaces[space], target.logits.argmax(dim=1), fallback)
        labels, target_centres = kmeans(target.spaces[space], init, config.kmeans_iters, config.kmeans_chunk,
                                        zero_empty=config.empty_centre == "zero",
                                        labels_before_update=config.kmeans_labels == "before_update")
        return source_centres, labels, target_centres

    def _source_weights(self, pass_: Preparation, target_centres: torch.Tensor) -> torch.Tensor:
        """Eq. (12) on pooled features when soft source selection is on (w = 1 in the first epoch), else w = 1."""
        source = pass_.source
        if self.switches.soft_source_selection and pass_.epoch > 0:
            return losses.source_weights(source.spaces["pooled"], source.labels, target_centres)
        return torch.ones(len(source.labels), device=source.labels.device)

    def _column_mass(self, pass_: Preparation, mu: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``sum_i p_ik`` over the whole target set in the output space and each feature space (eqs. 2/4), for
        ``aux_normalizer="dataset"``."""
        feature_p = {space: losses.soft_assignment(pass_.target.spaces[space], centres, self.config.feature_kernel)
                     for space, centres in mu.items()}
        return {"output": pass_.target_probs.sum(0), **{s: p.sum(0) for s, p in feature_p.items()}}

    def plan_state(self, plan: EpochPlan) -> dict[str, Any]:
        """The plan as a dict of its fields (tensors and dicts of tensors), for a weights-only checkpoint."""
        return {field.name: getattr(plan, field.name) for field in fields(EpochPlan)}

    def plan_from_state(self, state: dict[str, Any]) -> EpochPlan:
        """The :class:`EpochPlan` that :meth:`plan_state` describes."""
        return EpochPlan(**state)

    def validation_centres(self, plan: EpochPlan) -> dict[str, torch.Tensor]:
        return plan.mu

    def source_weights(self, plan: EpochPlan) -> torch.Tensor | None:
        """Eq. (12)'s weights, with soft source selection on (without it every weight is 1 and none is returned)."""
        return plan.source_weights if self.switches.soft_source_selection else None

    # -- (b) the losses of one iteration --------------------------------------------------------------------
    def start_epoch(self, plan: EpochPlan, epoch: int) -> None:
        """Algorithm 1: mu re-initialised from the preparation pass (the optimizer's momentum is kept)."""
        self.centres.reset(plan.mu)

    def loss(self, step: Step) -> Loss:
        """Eq. (11) (``adapt``), or cross-entropy on the source (pre-training)."""
        if step.phase == SOURCE.phase:
            return supervised_loss(step, step.source)
        out_t, out_s = self._forwards(step)
        zero = out_s.logits.new_zeros(())
        source_out, source_feat = self._source_loss(out_s, step.source, step.plan) if \
            self.switches.structural_source_reg else (zero, zero)
        first_epoch = step.epoch == self.switches.pretrain_epochs
        target_loss = self._target_loss(out_t, step.target.index, step.plan, first_epoch)
        total = losses.total_objective(target_loss, source_out, source_feat, step.lam, self.config.loss_weighting)
        parts = {"target": float(target_loss.detach()), "source": float((source_out + source_feat).detach())}
        return Loss(total, parts)

    def _forwards(self, step: Step) -> tuple[Outputs, Outputs]:
        """The target and the source batch forwarded in ``forward_order`` (each its own BatchNorm batch; the domain
        forwarded last weighs more in the running statistics: 0.1 against 0.09 per step)."""
        if self.config.forward_order == "target_first":
            out_t = step.forward(step.target.inputs)
            return out_t, step.forward(step.source.inputs)
        out_s = step.forward(step.source.inputs)
        return step.forward(step.target.inputs), out_s

    def _kernels(self, out: Outputs) -> dict[str, torch.Tensor]:
        """Soft-assignment logits (eqs. 4/9) of a mini-batch in each feature space that has centres."""
        features = {"pooled": out.pooled, "bottleneck": out.bottleneck}
        return {space: losses.kernel_logits(features[space], self.centres.mu[space], self.config.feature_kernel)
                for space in self.centres.spaces}

    def _auxiliary(self, p: torch.Tensor, space: str, plan: EpochPlan) -> torch.Tensor:
        """Eq. (2), normalised over the mini-batch or (``aux_normalizer="dataset"``) the whole target set."""
        mass = plan.column_mass[space] if self.config.aux_normalizer == "dataset" else None
        q = losses.auxiliary_distribution(p, mass)
        return q if self.config.aux_grad else q.detach()

    def _target_loss(self, out: Outputs, index: torch.Tensor, plan: EpochPlan, first_epoch: bool) -> torch.Tensor:
        """Eq. (6) on a target mini-batch, with the targets ``q`` of :meth:`_target_distribution` in each space."""
        kernels = self._kernels(out)
        q = {space: self._target_distribution(logits, space, index, plan, first_epoch)
             for space, logits in {"output": out.logits, **kernels}.items()}
        return losses.target_objective(out.logits, q["output"], [(kernels[s], q[s]) for s in kernels])

    def _target_distribution(self, logits: torch.Tensor, space: str, index: torch.Tensor, plan: EpochPlan,
                             first_epoch: bool) -> torch.Tensor:
        """The one-hot K-means labels at the first epoch (Appendix A; the classifier's predictions with
        ``first_epoch_targets="predictions"``), then eq. (2) of ``softmax(logits)``, mixed as ``w onehot + (1 - w) Q``
        when ``aux_kmeans_weight`` w > 0 (the released code's webcam->amazon)."""
        if first_epoch:
            if self.config.first_epoch_targets == "predictions":
                return F.one_hot(plan.predicted_labels[index], self.num_classes).float()
            return self._one_hot_labels(space, index, plan)
        q = self._auxiliary(torch.softmax(logits, dim=1), space, plan)
        weight = self.config.aux_kmeans_weight
        return q if weight == 0 else weight * self._one_hot_labels(space, index, plan) + (1 - weight) * q

    def _one_hot_labels(self, space: str, index: torch.Tensor, plan: EpochPlan) -> torch.Tensor:
        """One-hot K-means labels of a target mini-batch for ``space``'s term: the pooled space's K-means for the
        output and pooled spaces; the bottleneck's own, or the pooled space's (``bottleneck_kmeans_labels``)."""
        own = space == "bottleneck" and self.config.bottleneck_kmeans_labels == "own"
        return F.one_hot(plan.kmeans_labels["bottleneck" if own else "pooled"][index], self.num_classes).float()

    def _source_loss(self, out: Outputs, batch: Batch, plan: EpochPlan) -> tuple[torch.Tensor, torch.Tensor]:
        """Eqs. (10)/(13)/(14) on a source mini-batch."""
        kernels = list(self._kernels(out).values())
        weights = plan.source_weights[batch.index] if self.switches.soft_source_selection else None
        return losses.source_objective(out.logits, batch.labels, kernels, weights)

    # -- (d) what the method owns ---------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        """The centres mu, at ``centres_lr_mult`` times the learning rate (none without feature discrimination).
        With ``centre_grad_accumulate`` their weight decay goes into the gradient instead (:meth:`_decay_into_grad`)."""
        group = {"params": list(self.centres.parameters()), "lr_mult": self.config.centres_lr_mult}
        if self.config.centre_grad_accumulate:
            group["weight_decay"] = 0.0
        return [group]

    def persistent_grad_params(self) -> list[torch.Tensor]:
        """With ``centre_grad_accumulate``, the centres: the released code never zeroes their gradients."""
        return list(self.centres.parameters()) if self.config.centre_grad_accumulate else []

    def _decay_into_grad(self, mu: torch.Tensor) -> None:
        """After each backward, add ``weight_decay * mu`` to ``mu.grad`` in place, as the released code's SGD
        (PyTorch 1.1) does: the accumulated gradient also sums every step's decay term."""
        mu.grad.add_(mu.detach(), alpha=self.config.weight_decay)

    def state_dict(self) -> dict[str, Any]:
        """The centres and, with ``centre_grad_accumulate``, their accumulated gradients."""
        grads = {space: mu.grad.detach().clone() for space, mu in self.centres.mu.items()
                 if mu.grad is not None and self.config.centre_grad_accumulate}
        return {"centres": self.centres.state_dict(), "centre_grads": grads}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.centres.load_state_dict(state["centres"])
        for space, grad in state.get("centre_grads", {}).items():
            self.centres.mu[space].grad = grad.to(self.device).clone()
