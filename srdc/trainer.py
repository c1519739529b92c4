"""Algorithm 1 of the paper, epoch by epoch, with complete, exactly resumable training state.

Each epoch begins with ONE no-grad preparation pass over the source and the target training set (eval
transform). It serves everything the epoch needs: the target evaluation (labels used only to measure), K-means
in each feature space, the target centres c^t, the re-initialisation of mu, the source weights (eq. 12) and the
label-free validators. The training iterations follow. The pass that follows epoch e doubles as the evaluation
of the model after e epochs and the preparation of epoch e+1, so the target set is never passed twice.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from srdc import losses
from srdc.batches import batches_per_pass, endless_batches, ordered_batches
from srdc.clustering import centroids_with_fallback, class_means, kmeans
from srdc.config import SRDCConfig
from srdc.data import TaskData, load_task
from srdc.data.base import Domain
from srdc.errors import NonFiniteLossError, SRDCInputError
from srdc.model import Centres, SRDCNet, build_backbone, feature_space_dims, is_pretrained
from srdc.selection import summarize

EVAL_BATCH = 256
TIMING_KEYS = frozenset({"wall_s_epoch", "time_train_s", "time_prepare_s", "time_kmeans_s", "time_eval_s"})
"""History keys that measure time: the only ones allowed to differ between a run and its exact resume."""


def lr_at(config: SRDCConfig, progress: float) -> float:
    """Section 5.1: ``eta_p = eta_0 / (1 + alpha p)^beta`` (p = epoch / epochs)."""
    return config.lr / (1.0 + config.lr_alpha * progress) ** config.lr_beta


def lambda_at(config: SRDCConfig, progress: float) -> float:
    """Section 5.1: ``lambda_p = 2 / (1 + exp(-gamma p)) - 1``, times ``lambda_scale``."""
    return config.lambda_scale * (2.0 / (1.0 + math.exp(-config.lambda_gamma * progress)) - 1.0)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SRDCInputError("--device cuda was asked for but CUDA is not available; use --device cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Features:
    """What the preparation pass records for one domain (rows in index order)."""

    spaces: dict[str, torch.Tensor]
    logits: torch.Tensor
    labels: torch.Tensor


@dataclass
class EpochPlan:
    """What the preparation pass hands to the next training epoch (small: O(N + K d))."""

    mu: dict[str, torch.Tensor]
    target_centres: dict[str, torch.Tensor]
    kmeans_labels: dict[str, torch.Tensor]
    column_mass: dict[str, torch.Tensor]
    source_weights: torch.Tensor

    def to(self, device: torch.device) -> EpochPlan:
        move = {key: {k: v.to(device) for k, v in value.items()} for key, value in vars(self).items()
                if isinstance(value, dict)}
        return EpochPlan(**move, source_weights=self.source_weights.to(device))


class Trainer:
    """One SRDC (or baseline) run: ``step()`` trains one epoch and evaluates the result."""

    def __init__(self, config: SRDCConfig, task: TaskData | None = None, progress: bool = False) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.task = task if task is not None else load_task(config)
        self.progress = progress
        seed_everything(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model, self.centres = self._build_model()
        self.optimizer = self._build_optimizer()
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.plan: EpochPlan | None = None
        self.wall_s = 0.0

    # -- construction -------------------------------------------------------------------------------------
    def _backbone_name(self) -> str:
        return self.task.default_backbone if self.config.backbone == "auto" else self.config.backbone

    def _build_model(self) -> tuple[SRDCNet, Centres]:
        name = self._backbone_name()
        sample = self.task.source.train_set[0][0]
        backbone, dim = build_backbone(name, self.config.weights, in_dim=int(sample.numel()))
        model = SRDCNet(backbone, dim, self.task.num_classes, self.config.bottleneck_dim).to(self.device)
        if self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        spaces = feature_space_dims(self.config.feature_spaces, dim, self.config.bottleneck_dim)
        centres = Centres(spaces if self.config.uses_feature_discrimination else {}, self.task.num_classes)
        return model, centres.to(self.device)

    def _build_optimizer(self) -> torch.optim.SGD:
        """SGD, three groups: new layers (lr), backbone (lr x backbone_lr_mult), centres mu (lr x centres_lr_mult).

        ``backbone_lr_mult`` defaults to 0.1 for a pretrained backbone (paper) and 1 for one trained from scratch.
        """
        config = self.config
        backbone_mult = config.backbone_lr_mult
        if backbone_mult is None:
            backbone_mult = 0.1 if is_pretrained(self._backbone_name(), config.weights) else 1.0
        groups = [
            {"params": self.model.new_layers(), "lr_mult": 1.0},
            {"params": list(self.model.backbone.parameters()), "lr_mult": backbone_mult},
            {"params": list(self.centres.parameters()), "lr_mult": config.centres_lr_mult},
        ]
        groups = [g for g in groups if g["params"]]
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)

    # -- preparation pass ---------------------------------------------------------------------------------
    def _autocast(self) -> Any:
        if self.config.bf16 and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=self.config.pin_memory)
        if self.config.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @torch.no_grad()
    def extract(self, domain: Domain) -> Features:
        """Pooled and bottleneck features and logits of every sample of ``domain`` (eval transform)."""
        self.model.eval()
        pooled, bottleneck, logits = [], [], []
        for inputs, _ in ordered_batches(domain, EVAL_BATCH, self.config.num_workers, self.config.pin_memory):
            with self._autocast():
                out = self.model(self._to_device(inputs))
            pooled.append(out.pooled.float())
            bottleneck.append(out.bottleneck.float())
            logits.append(out.logits.float())
        labels = torch.as_tensor(domain.labels, device=self.device)
        spaces = {"pooled": torch.cat(pooled), "bottleneck": torch.cat(bottleneck)}
        return Features(spaces, torch.cat(logits), labels)

    def prepare(self) -> dict[str, Any]:
        """The epoch's preparation pass: evaluation, K-means, centres, mu, source weights; returns metrics."""
        config, num_classes = self.config, self.task.num_classes
        start = time.perf_counter()
        source, target = self.extract(self.task.source), self.extract(self.task.target)
        test = self.extract(self.task.target_test) if self.task.target_test is not None else None
        time_prepare = time.perf_counter() - start

        start = time.perf_counter()
        predictions = target.logits.argmax(dim=1)
        kmeans_spaces = ["pooled", *[s for s in self.centres.spaces if s != "pooled"]]
        source_centres, target_centres, kmeans_labels = {}, {}, {}
        for space in kmeans_spaces:
            source_centres[space] = class_means(source.spaces[space], source.labels, num_classes)[0]
            init = source_centres[space] if self.epoch == 0 else centroids_with_fallback(
                target.spaces[space], predictions, source_centres[space])
            kmeans_labels[space], target_centres[space] = kmeans(
                target.spaces[space], init, config.kmeans_iters, config.kmeans_chunk)
        time_kmeans = time.perf_counter() - start

        mu = {space: target_centres[space] if config.mu_init == "target"
              else 0.5 * (source_centres[space] + target_centres[space]) for space in self.centres.spaces}
        if config.uses_soft_source_selection and self.epoch > 0:  # Algorithm 1: w = 1 in the first epoch
            weights = losses.source_weights(source.spaces["pooled"], source.labels, target_centres["pooled"])
        else:
            weights = torch.ones(len(source.labels), device=self.device)
        p_target = torch.softmax(target.logits, dim=1)
        feature_p = {space: losses.soft_assignment(target.spaces[space], mu[space], config.feature_kernel)
                     for space in mu}
        column_mass = {"output": p_target.sum(0), **{s: p.sum(0) for s, p in feature_p.items()}}
        self.plan = EpochPlan(mu=mu, target_centres=target_centres, kmeans_labels=kmeans_labels,
                              column_mass=column_mass, source_weights=weights)

        start = time.perf_counter()
        objective = sum(losses.clustering_objective(losses.auxiliary_distribution(p), p)
                        for p in [p_target, *feature_p.values()])
        metrics = {
            "acc_target": _accuracy(predictions, target.labels),
            "acc_source": _accuracy(source.logits.argmax(dim=1), source.labels),
            "clustering_objective": float(objective),
            "infomax": float(losses.information_maximization(p_target)),
            "source_weight_mean": float(weights.mean()),
            "source_weight_min": float(weights.min()),
            "source_weight_max": float(weights.max()),
            "time_prepare_s": time_prepare,
            "time_kmeans_s": time_kmeans,
        }
        for space in kmeans_spaces:
            metrics[f"acc_kmeans_{space}"] = _accuracy(kmeans_labels[space], target.labels)
        if test is not None:
            metrics["acc_target_test"] = _accuracy(test.logits.argmax(dim=1), test.labels)
        metrics["time_eval_s"] = time.perf_counter() - start
        return metrics

    # -- training -----------------------------------------------------------------------------------------
    def _phase(self) -> str:
        """What epoch ``self.epoch`` trains: ``oracle``, ``source`` (source-only/pre-training) or ``adapt``."""
        config = self.config
        if config.variant == "oracle":
            return "oracle"
        if not config.uses_target_clustering or self.epoch < config.pretrain_epochs:
            return "source"
        return "adapt"

    def _iterations(self, phase: str) -> int:
        sizes = {"oracle": [len(self.task.target)], "source": [len(self.task.source)],
                 "adapt": [len(self.task.source), len(self.task.target)]}[phase]
        return max(batches_per_pass(n, self.config.batch_size) for n in sizes)

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]

    def _target_loss(self, out: Any, index: torch.Tensor, first_epoch: bool) -> torch.Tensor:
        """Eq. (6) on a target mini-batch: auxiliary targets by eq. (2), one-hot K-means labels at the first epoch."""
        plan = self.plan
        kernels = self._kernels(out)
        num_classes = self.task.num_classes
        if first_epoch:
            hard = plan.kmeans_labels
            q = F.one_hot(hard["pooled"][index], num_classes).float()
            q_feature = {s: F.one_hot(hard[s][index], num_classes).float() for s in kernels}
        else:
            q = self._auxiliary(torch.softmax(out.logits, dim=1), "output")
            q_feature = {s: self._auxiliary(torch.softmax(k, dim=1), s) for s, k in kernels.items()}
        return losses.target_objective(out.logits, q, [(kernels[s], q_feature[s]) for s in kernels])

    def _kernels(self, out: Any) -> dict[str, torch.Tensor]:
        """Soft-assignment logits (eqs. 4/9) of a mini-batch in each feature space that has centres."""
        features = {"pooled": out.pooled, "bottleneck": out.bottleneck}
        return {space: losses.kernel_logits(features[space], self.centres.mu[space], self.config.feature_kernel)
                for space in self.centres.spaces}

    def _auxiliary(self, p: torch.Tensor, space: str) -> torch.Tensor:
        mass = self.plan.column_mass[space] if self.config.aux_normalizer == "dataset" else None
        q = losses.auxiliary_distribution(p, mass)
        return q if self.config.aux_grad else q.detach()

    def _source_loss(self, out: Any, labels: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eqs. (10)/(13)/(14) on a source mini-batch."""
        kernels = list(self._kernels(out).values())
        weights = self.plan.source_weights[index] if self.config.uses_soft_source_selection else None
        return losses.source_objective(out.logits, labels, kernels, weights)

    def _iteration_loss(self, phase: str, lam: float, source_batch: Any, target_batch: Any,
                        first_epoch: bool) -> tuple[torch.Tensor, float, float]:
        """Total loss (eq. 11 for ``adapt``), target part, source part."""
        if phase == "oracle":
            inputs, labels, _ = target_batch
            with self._autocast():
                logits = self.model(self._to_device(inputs)).logits.float()
            loss = F.cross_entropy(logits, self._to_device(labels))
            return loss, 0.0, float(loss.detach())
        inputs, labels, index = source_batch
        with self._autocast():
            out_s = self.model(self._to_device(inputs))
        out_s = type(out_s)(*(t.float() for t in out_s))
        labels, index = self._to_device(labels), index.to(self.device)
        if phase == "source":
            loss = F.cross_entropy(out_s.logits, labels)
            return loss, 0.0, float(loss.detach())
        zero = out_s.logits.new_zeros(())
        source_out, source_feat = self._source_loss(out_s, labels, index) if \
            self.config.uses_structural_source_reg else (zero, zero)
        t_inputs, _, t_index = target_batch
        with self._autocast():
            out_t = self.model(self._to_device(t_inputs))
        out_t = type(out_t)(*(t.float() for t in out_t))
        target_loss = self._target_loss(out_t, t_index.to(self.device), first_epoch)
        total = losses.total_objective(target_loss, source_out, source_feat, lam, self.config.loss_weighting)
        return total, float(target_loss.detach()), float((source_out + source_feat).detach())

    def train_epoch(self) -> dict[str, Any]:
        """The training iterations of one epoch (Algorithm 1, lines 3-9)."""
        config, phase = self.config, self._phase()
        progress = self.epoch / config.epochs
        lr, lam = lr_at(config, progress), lambda_at(config, progress)
        self._set_lr(lr)
        self.centres.reset(self.plan.mu)
        first_epoch = self.epoch == max(config.pretrain_epochs, 0) and phase == "adapt"
        source_stream = endless_batches(self.task.source, config.batch_size, self.generator,
                                        config.num_workers, config.pin_memory)
        target_stream = endless_batches(self.task.target, config.batch_size, self.generator,
                                        config.num_workers, config.pin_memory)
        iterations = self._iterations(phase)
        sums = np.zeros(3)
        self.model.train()
        start = time.perf_counter()
        bar = tqdm(range(iterations), desc=f"epoch {self.epoch + 1}/{config.epochs}", leave=False,
                   disable=not self.progress, mininterval=2.0)
        for iteration in bar:
            source_batch = next(source_stream) if phase != "oracle" else None
            target_batch = next(target_stream) if phase != "source" else None
            loss, target_part, source_part = self._iteration_loss(phase, lam, source_batch, target_batch, first_epoch)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"the loss became {float(loss.detach())} at epoch {self.epoch + 1}, iteration {iteration + 1}; "
                    f"lower --lr (now {config.lr}) or --lambda_scale; epochs 1..{self.epoch} are kept in the history"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            sums += (float(loss.detach()), target_part, source_part)
        means = sums / iterations
        return {"loss_total": means[0], "loss_target": means[1], "loss_source": means[2], "lr": lr,
                "lambda": lam, "phase": phase, "iterations": iterations,
                "time_train_s": time.perf_counter() - start}

    # -- the epoch loop -----------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.epoch >= self.config.epochs

    def initialise(self) -> None:
        """Evaluate and prepare for the first epoch (history row 0); a no-op after a resume."""
        if self.plan is None:
            start = time.perf_counter()
            row = {"epoch": 0, **self.prepare()}
            row["wall_s_epoch"] = time.perf_counter() - start
            self.wall_s += row["wall_s_epoch"]
            self.history.append(row)

    def step(self) -> dict[str, Any]:
        """Train one epoch, then run the preparation pass that evaluates it; returns the history row."""
        self.initialise()
        start = time.perf_counter()
        train_metrics = self.train_epoch()
        self.epoch += 1
        row = {"epoch": self.epoch, **train_metrics, **self.prepare()}
        row["wall_s_epoch"] = time.perf_counter() - start
        self.wall_s += row["wall_s_epoch"]
        self.history.append(row)
        return row

    def fit(self, on_epoch: Callable[[Trainer, dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Run the remaining epochs; ``on_epoch(trainer, row)`` after each (progress, checkpoints)."""
        self.initialise()
        while not self.done:
            row = self.step()
            if on_epoch is not None:
                on_epoch(self, row)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """acc_last / acc_best_oracle / acc_labelfree with their epochs, plus epochs, wall time and config."""
        return {**summarize(self.history, self.config.labelfree_selector), "epochs": self.epoch,
                "wall_s": self.wall_s, "config": self.config.to_dict()}

    # -- complete training state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit: weights, optimizer (momentum), mu, epoch, plan (source
        weights, centres), history (and so best-so-far), wall time and every random generator."""
        plan = self.plan.to(torch.device("cpu")) if self.plan is not None else None
        return {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "centres": self.centres.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "plan": vars(plan) if plan is not None else None,
            "history": [dict(row) for row in self.history],
            "wall_s": self.wall_s,
            "rng": {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "batches": self.generator.get_state(),
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = SRDCConfig.from_dict(state["config"])
        if _identity(saved) != _identity(self.config):
            raise SRDCInputError(
                "the checkpoint belongs to a different run (config differs in: "
                + ", ".join(k for k in _identity(saved) if _identity(saved)[k] != _identity(self.config)[k])
                + "); use another --out directory or drop --resume"
            )
        self.model.load_state_dict(state["model"])
        self.centres.load_state_dict(state["centres"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = state["epoch"]
        self.plan = EpochPlan(**state["plan"]).to(self.device) if state["plan"] is not None else None
        self.history = [dict(row) for row in state["history"]]
        self.wall_s = state["wall_s"]
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.generator.set_state(rng["batches"])


_EXECUTION_FIELDS = {"device", "num_workers", "pin_memory", "data_root", "path_prefix"}


def _identity(config: SRDCConfig) -> dict[str, Any]:
    """The config fields that must match for a checkpoint to continue a run (not where or how fast it runs)."""
    return {k: v for k, v in config.to_dict().items() if k not in _EXECUTION_FIELDS}


def _accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predictions == labels).float().mean() * 100.0)
