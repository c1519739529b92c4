"""The generic training loop (Algorithm 1's skeleton), epoch by epoch, with complete, exactly resumable state.

Each epoch begins with ONE no-grad preparation pass over the source and the target training set (eval
transform). It serves everything the epoch needs: the target evaluation (labels used only to measure), the
method's preparation (for SRDC: K-means in each feature space, the target centres c^t, the re-initialisation of
mu, the source weights of eq. 12) and every label-free validator (:mod:`srdc.validators`). The training
iterations follow, with the losses of the run's method (:mod:`srdc.methods`, chosen by ``variant``). The pass
that follows epoch e doubles as the evaluation of the model after e epochs and the preparation of epoch e+1, so
the target set is never passed twice.

With ``group`` (``srdc-train --workers N``, :mod:`srdc.parallel`) the run is one of N data-parallel ranks: every rank
draws the global batch, trains the network on its slice of it (BatchNorm of the global batch with ``batchnorm_sync``
``sync``) and computes the method's loss on the gathered global outputs; the preparation pass is sharded over the
ranks and gathered, so K-means, the plan and the validators see the whole data once, the same on every rank.

History keys of the training part: ``loss_total`` and ``loss_<part>`` for each part the method reports (SRDC and
the baselines: ``loss_target``, the label-free target term of eq. 6, and ``loss_source``, the supervised term),
``lr``, ``lambda`` (their values in the epoch; with ``schedule_unit`` ``iteration``, their means over it),
``phase``, ``iterations``.

Observers (:class:`EpochObserver`, e.g. the figures' recorder :class:`srdc.figures.recorder.FigureRecorder`) see
each preparation pass and each recorded row; the trainer checkpoints their state beside its own. They must not touch
a random state the training draws from.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from srdc.base import RESOLVED_KEY, bar_disabled, capture_rng, native_rng, portable_rng, resolve_device, restore_rng
from srdc.batches import endless_batches, ordered_batches
from srdc.config import SRDCConfig
from srdc.data import BackboneChoice, TaskData, backbone_choice, load_task
from srdc.data.base import Domain
from srdc.data.release_splits import inductive_split
from srdc.divergence import check_finite, diverged_fix
from srdc.errors import NonFiniteLossError, SRDCInputError
from srdc.methods import METHODS, Batch, Method, Preparation, Step, build_method, switches
from srdc.model import (
    Features,
    Outputs,
    SRDCNet,
    batchnorm_statistics_of,
    build_backbone,
    check_weights,
    feature_space_dims,
    is_pretrained,
)
from srdc.parallel import Group, synchronise_batchnorm
from srdc.schedules import lambda_at, lr_at, progress_at
from srdc.selection import summarize_run
from srdc.validators import ValidationInput, check_selector, validate

TIMING_KEYS = frozenset({"wall_s_epoch", "time_train_s", "time_prepare_s", "time_kmeans_s", "time_eval_s",
                         "time_observers_s"})
"""History keys that measure time: the only ones allowed to differ between a run and its exact resume."""


class EpochObserver(Protocol):
    """What follows a run without being part of its training (the figures' recorder): it sees each preparation pass
    (with the method's source weights of the plan it made) and the history after each recorded row; its state is
    checkpointed under its ``name``."""

    name: str

    def prepared(self, pass_: Preparation, source_weights: torch.Tensor | None) -> None: ...

    def recorded(self, history: list[dict[str, Any]]) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def check_backbone(config: SRDCConfig) -> BackboneChoice:
    """The run's backbone and why, its initial weights found (:func:`srdc.model.check_weights`): called before the
    data is loaded, so that a weights problem is reported before any image is decoded."""
    choice = backbone_choice(config)
    check_weights(choice.name, config.weights)
    return choice


class Trainer:
    """One run of the config's method (``variant``): ``step()`` trains one epoch and evaluates the result;
    ``observers`` follow it (:class:`EpochObserver`)."""

    def __init__(self, config: SRDCConfig, task: TaskData | None = None, progress: bool = False,
                 observers: Sequence[EpochObserver] = (), group: Group | None = None) -> None:
        METHODS.check(config.variant)
        check_selector(config.labelfree_selector, config.source_val_fraction)
        self.config = config
        self.device = resolve_device(config.device)
        cuda = self.device.type == "cuda"
        self.bf16, self.channels_last = config.uses_bf16(cuda), config.uses_channels_last(cuda)
        if task is None:
            check_backbone(config)
            task = load_task(config)
        self.task = task
        self.group = group
        _check_workers(config, task, group)
        self.progress = progress
        random.seed(config.seed)
        np.random.seed(config.seed)
        torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.model, self.method = self._build_model()
        self.optimizer = self._build_optimizer()
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.plan: Any = None
        self.wall_s = 0.0
        self.observers = list(observers)

    # -- construction -------------------------------------------------------------------------------------
    def _backbone_name(self) -> str:
        return self.task.default_backbone if self.config.backbone == "auto" else self.config.backbone

    def _build_model(self) -> tuple[SRDCNet, Method]:
        name = self._backbone_name()
        sample = self.task.source.train_set[0][0]
        backbone, dim = build_backbone(name, self.config.weights, in_dim=int(sample.numel()))
        model = SRDCNet(backbone, dim, self.task.num_classes, self.config.bottleneck_dim,
                        self.config.head_bn_init).to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        if self.group is not None and self.config.batchnorm_sync == "sync":
            model = synchronise_batchnorm(model)
        if self.config.compile:
            model.compile()  # in place: the state dict keeps its keys (no "_orig_mod." prefix)
        dims = feature_space_dims(self.config.feature_spaces, dim, self.config.bottleneck_dim)
        return model, build_method(self.config, self.task.num_classes, dims, self.device)

    def _build_optimizer(self) -> torch.optim.SGD:
        """SGD: new layers (lr), backbone (lr x backbone_lr_mult), then the method's own groups (SRDC: centres mu
        at lr x centres_lr_mult).

        ``backbone_lr_mult`` defaults to 0.1 for a pretrained backbone (paper) and 1 for one trained from scratch.
        """
        config = self.config
        groups = [
            {"params": self.model.new_layers(), "lr_mult": 1.0},
            {"params": list(self.model.backbone.parameters()), "lr_mult": self._backbone_lr_mult()},
            *self.method.parameter_groups(),
        ]
        groups = [g for g in groups if g["params"]]
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                               **self._sgd_kernels())

    def _backbone_lr_mult(self) -> float:
        """``backbone_lr_mult``, else 0.1 for a pretrained backbone (paper) and 1 for one trained from scratch."""
        if self.config.backbone_lr_mult is not None:
            return self.config.backbone_lr_mult
        return 0.1 if is_pretrained(self._backbone_name(), self.config.weights) else 1.0

    def _sgd_kernels(self) -> dict[str, bool]:
        """SGD's implementation on this device: one fused kernel per step on CUDA, else the multi-tensor
        (``foreach``) one, whose results on a CPU are bit-identical to the per-parameter loop's."""
        cuda = self.device.type == "cuda"
        return {"fused": cuda, "foreach": not cuda}

    # -- preparation pass ---------------------------------------------------------------------------------
    def _autocast(self) -> Any:
        if self.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=self.config.pin_memory)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @property
    def prep_batchnorm(self) -> str:
        """The preparation pass's BatchNorm regime: the method's where it fixes one (AdaBN), else the config's."""
        return self.method.preparation_batchnorm or self.config.prep_batchnorm

    def extract(self, domain: Domain, statistics: Domain | None = None) -> Features:
        """Pooled and bottleneck features and logits of every sample of ``domain`` (eval transform), in batches of
        ``eval_batch_size`` under inference mode; concatenated outside it, into normal tensors that the method's
        plan may use in training. With ``prep_batchnorm`` ``domain``, BatchNorm normalises with the statistics of
        ``statistics`` (default: ``domain`` itself), gathered by one pass over it first."""
        if self.prep_batchnorm == "running":
            return self._extract(domain)
        config = self.config
        batches = (self._to_device(inputs) for inputs, _ in
                   ordered_batches(statistics or domain, config.eval_batch_size, config.num_workers, config.pin_memory))
        with self._autocast(), batchnorm_statistics_of(self.model, batches):
            return self._extract(domain)

    def _extract(self, domain: Domain) -> Features:
        """The outputs of every sample of ``domain``; with ``group``, each rank runs its share of the samples and
        the shares are gathered."""
        self.model.eval()
        config, outputs = self.config, []
        rows = self.group.bounds(len(domain)) if self.group is not None else None
        for inputs, _ in ordered_batches(domain, config.eval_batch_size, config.num_workers, config.pin_memory, rows):
            with torch.inference_mode(), self._autocast():
                outputs.append(self.model(self._to_device(inputs)))
        pooled, bottleneck, logits = (self._gathered(torch.cat(parts).float(), len(domain))
                                      for parts in zip(*outputs, strict=True))
        labels = torch.as_tensor(domain.labels, device=self.device)
        return Features({"pooled": pooled, "bottleneck": bottleneck}, logits, labels)

    def prepare(self) -> dict[str, Any]:
        """The epoch's preparation pass: evaluation, the method's preparation, the validators; returns metrics."""
        start = time.perf_counter()
        if self.group is not None:
            self.group.broadcast_buffers(self.model)
        source, target = self.extract(self.task.source), self.extract(self.task.target)
        test = self.extract(self.task.target_test, statistics=self.task.target) \
            if self.task.target_test is not None else None
        source_val = self.extract(self.task.source_val, statistics=self.task.source) \
            if self.task.source_val is not None else None
        time_prepare = time.perf_counter() - start

        target_probs = torch.softmax(target.logits, dim=1)
        pass_ = Preparation(self.epoch, self.task.num_classes, source, target, target_probs)
        prepared = self.method.prepare(pass_)
        self.plan = prepared.plan
        for observer in self.observers:
            observer.prepared(pass_, self.method.source_weights(self.plan))

        start = time.perf_counter()
        view = ValidationInput(target_probs, target, source, self.method.validation_centres(self.plan),
                               self.config.feature_kernel, source_val)
        metrics = {
            "acc_target": _accuracy(target.logits.argmax(dim=1), target.labels),
            **validate(view),  # acc_source among them (the source_accuracy validator)
            **prepared.metrics,
            "time_prepare_s": time_prepare,
        }
        if test is not None:
            metrics["acc_target_test"] = _accuracy(test.logits.argmax(dim=1), test.labels)
        metrics["time_eval_s"] = time.perf_counter() - start
        return metrics

    # -- training -----------------------------------------------------------------------------------------
    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_mult"]

    def _stream(self, domain: Domain, drawn: bool) -> Iterator[Batch] | None:
        """Endless shuffled batches of ``domain`` on the device (``None`` when the epoch does not draw it)."""
        if not drawn:
            return None
        config = self.config
        batches = endless_batches(domain, config.batch_size, self.generator, config.num_workers, config.pin_memory)
        return (Batch(self._to_device(inputs), self._to_device(labels), index.to(self.device))
                for inputs, labels, index in batches)

    def _forward(self, inputs: torch.Tensor) -> Outputs:
        """The network on a training batch, under autocast, outputs in float32; with ``group``, on this rank's
        slice of the global batch, the outputs of the whole batch gathered with autograd."""
        rows = len(inputs)
        if self.group is not None:
            start, stop = self.group.bounds(rows)
            inputs = inputs[start:stop]
        with self._autocast():
            out = self.model(inputs)
        return Outputs(*(self._gathered(t.float(), rows) for t in out))

    def _gathered(self, local: torch.Tensor, rows: int) -> torch.Tensor:
        """``local``, this rank's share of ``rows`` rows, as all the rows (itself without ``group``)."""
        return local if self.group is None else self.group.gather_rows(local, rows)

    def train_epoch(self) -> dict[str, Any]:
        """The training iterations of one epoch (Algorithm 1, lines 3-9) with the method's losses."""
        config, draw = self.config, self.method.draw(self.epoch)
        self.method.start_epoch(self.plan, self.epoch)
        source_stream = self._stream(self.task.source, draw.source)
        target_stream = self._stream(self.task.target, draw.target)
        iterations = draw.epoch_iterations(len(self.task.source), len(self.task.target), config.batch_size)
        sums: dict[str, float] = {}
        schedule: list[tuple[float, float]] = []
        self.model.train()
        start = time.perf_counter()
        bar = tqdm(range(iterations), desc=f"epoch {self.epoch + 1}/{config.epochs}", leave=False,
                   disable=bar_disabled(self.progress), mininterval=2.0)
        for iteration in bar:
            lr, lam = self.schedule(iteration, iterations)
            schedule.append((lr, lam))
            source = next(source_stream) if source_stream is not None else None
            target = next(target_stream) if target_stream is not None else None
            loss = self.method.loss(Step(self._forward, source, target, self.plan, self.epoch, draw.phase, lam))
            if not torch.isfinite(loss.total):
                raise NonFiniteLossError(
                    f"the run diverged: the loss became {float(loss.total.detach())} at epoch {self.epoch + 1}, "
                    f"iteration {iteration + 1}; {diverged_fix(config, self.epoch)}"
                )
            _zero_grads(self.optimizer, kept=self.method.persistent_grad_params())
            loss.total.backward()
            if self.group is not None:
                self.group.average_gradients(list(self.model.parameters()))
            self.optimizer.step()
            for name, value in {"total": float(loss.total.detach()), **loss.parts}.items():
                sums[f"loss_{name}"] = sums.get(f"loss_{name}", 0.0) + value
        lr, lam = schedule[0] if config.schedule_unit == "epoch" else map(statistics.fmean, zip(*schedule, strict=True))
        return {**{name: total / iterations for name, total in sums.items()}, "lr": lr, "lambda": lam,
                "phase": draw.phase, "iterations": iterations, "time_train_s": time.perf_counter() - start}

    def schedule(self, iteration: int, iterations: int) -> tuple[float, float]:
        """The learning rate (set on the optimizer) and lambda of ``iteration`` of this epoch
        (:mod:`srdc.schedules`)."""
        progress = progress_at(self.config, self.epoch, iteration, iterations)
        lr, lam = lr_at(self.config, progress), lambda_at(self.config, progress)
        if iteration == 0 or self.config.schedule_unit == "iteration":
            self._set_lr(lr)
        return lr, lam

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
            self._record(row)

    def step(self) -> dict[str, Any]:
        """Train one epoch, then run the preparation pass that evaluates it; returns the history row.

        Raises :class:`NonFiniteLossError` when the loss, or any number of the epoch's row (a validator, an
        accuracy), is not finite, before the row is recorded: history, summary and whatever ``fit``'s
        ``on_epoch`` saved stay those of the last finite epoch. The trainer itself is then past that epoch
        (weights, plan, epoch counter) and must not be stepped again; resuming from the last checkpoint with the
        same config replays the same divergence, so the fix is a new run with a lower learning rate.
        """
        self.initialise()
        start = time.perf_counter()
        train_metrics = self.train_epoch()
        self.epoch += 1
        row = {"epoch": self.epoch, **train_metrics, **self.prepare()}
        row["wall_s_epoch"] = time.perf_counter() - start
        self._record(row)
        return row

    def _record(self, row: dict[str, Any]) -> None:
        """Append ``row`` to the history after checking that every number in it is finite, then show it to the
        observers: the time they take (e.g. a figure snapshot) is the row's ``time_observers_s``, and part of its
        ``wall_s_epoch``."""
        check_finite(row, self.config)
        self.history.append(row)
        start = time.perf_counter()
        for observer in self.observers:
            observer.recorded(self.history)
        row["time_observers_s"] = time.perf_counter() - start
        row["wall_s_epoch"] += row["time_observers_s"]
        self.wall_s += row["wall_s_epoch"]

    def fit(self, on_epoch: Callable[[Trainer, dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Run the remaining epochs; ``on_epoch(trainer, row)`` after each (progress, checkpoints)."""
        self.initialise()
        while not self.done:
            row = self.step()
            if on_epoch is not None:
                on_epoch(self, row)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        """acc_last / acc_best_oracle / acc_labelfree with their epochs (and per validator), plus epochs (the
        history's last: the last finite one after a :class:`NonFiniteLossError`), wall time, config, what the
        what the config's ``auto`` and unset options resolved to (``resolved``: :meth:`resolved`)."""
        return {**summarize_run(self.history, self.config), "epochs": self.history[-1]["epoch"],
                "wall_s": self.wall_s, "config": self.config.to_dict(), RESOLVED_KEY: self.resolved()}

    def resolved(self) -> dict[str, Any]:
        """The one place where the run's ``auto`` and unset options are resolved, as the run uses them (summary.json's
        ``resolved``; the trial's MLflow run has each as a tag ``resolved.KEY``): the backbone and why, what each
        data view applies (augment, normalize, size; decoded from the cache or in memory), the backbone's lr
        multiplier, SRDC's components (:func:`srdc.methods.switches`), the preparation pass's BatchNorm regime
        (:attr:`prep_batchnorm`), the inductive split (``--inductive_split``), the method's own choices
        (:meth:`~srdc.methods.Method.resolved`, e.g. CDAN's map) and how the run executes (:meth:`execution`)."""
        reason = self.task.backbone_reason if self.config.backbone == "auto" else "--backbone"
        return {"backbone": self._backbone_name(), "backbone_reason": reason,
                "transforms": {"source": self.task.source.transform, "target": self.task.target.transform},
                "backbone_lr_mult": self._backbone_lr_mult(), "switches": dataclasses.asdict(switches(self.config)),
                "prep_batchnorm": self.prep_batchnorm, "inductive_split": self._inductive_split(),
                **self.method.resolved(), **self.execution()}

    def _inductive_split(self) -> str | None:
        """The inductive split the target was divided by (``release`` or ``seeded``); ``None``: transductive."""
        return inductive_split(self.config) if self.config.setting == "inductive" else None

    def execution(self) -> dict[str, Any]:
        """How the run executes, the config's auto choices resolved for its device (``bf16``, ``channels_last``)."""
        return {"device": str(self.device), "workers": self.config.workers,
                "precision": "bf16" if self.bf16 else "fp32",
                "channels_last": self.channels_last, "compile": self.config.compile,
                "sgd": "fused" if self._sgd_kernels()["fused"] else "foreach"}

    # -- complete training state --------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit: weights, optimizer (momentum), what the method owns (mu),
        epoch, plan (source weights, centres), history (and so best-so-far), wall time and every random generator."""
        return {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "plan": _move(self.method.plan_state(self.plan), torch.device("cpu")),
            "history": [dict(row) for row in self.history],
            "wall_s": self.wall_s,
            "observers": {observer.name: observer.state_dict() for observer in self.observers},
            "rng": portable_rng({**capture_rng(), "batches": self.generator.get_state()}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; a checkpoint of another run (config) is an :class:`SRDCInputError`."""
        missing = sorted(STATE_KEYS - set(state))
        if missing:
            raise SRDCInputError(f"the checkpoint is incomplete (no {', '.join(missing)}); start a new run")
        saved = SRDCConfig.from_dict(state["config"])
        saved_identity, identity = saved.identity(), self.config.identity()
        if saved_identity != identity:
            raise SRDCInputError(
                "the checkpoint belongs to a different run (config differs in: "
                + ", ".join(k for k in saved_identity if saved_identity[k] != identity[k])
                + "); use another --out directory or drop --resume"
            )
        self.model.load_state_dict(state["model"])
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        for group in self.optimizer.param_groups:  # the saved groups carry the kernels of the device they ran on
            group.update(self._sgd_kernels())
        self.epoch = state["epoch"]
        self.plan = self.method.plan_from_state(_move(state["plan"], self.device))
        self.history = [dict(row) for row in state["history"]]
        self.wall_s = state["wall_s"]
        for observer in self.observers:
            observer.load_state_dict(state.get("observers", {}).get(observer.name, {}))
        rng = native_rng(state["rng"])
        restore_rng(rng)
        self.generator.set_state(rng["batches"])


STATE_KEYS = frozenset({"config", "model", "method", "optimizer", "epoch", "plan", "history", "wall_s", "rng"})
"""The keys of :meth:`Trainer.state_dict` (and ``observers``, its observers' states: absent from older checkpoints)."""


def _move(value: Any, device: torch.device) -> Any:
    """``value`` (a plan's state: tensors in dicts and lists) with every tensor on ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {key: _move(item, device) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_move(item, device) for item in value)
    return value


def _zero_grads(optimizer: torch.optim.Optimizer, kept: list[torch.Tensor]) -> None:
    """Zero (set to ``None``) every gradient of ``optimizer``'s parameters except those of ``kept``."""
    grads = [param.grad for param in kept]
    optimizer.zero_grad(set_to_none=True)
    for param, grad in zip(kept, grads, strict=True):
        param.grad = grad


def _check_workers(config: SRDCConfig, task: TaskData, group: Group | None) -> None:
    """``workers`` is the process group's size (1 without one), no batch or domain is smaller than it, and the
    synchronised BatchNorm is not compiled (its autograd all-reduce is not supported under torch.compile)."""
    size = group.size if group is not None else 1
    if config.workers != size:
        raise SRDCInputError(f"workers={config.workers} runs through srdc-train --workers {config.workers} only (a "
                             f"study's trial is one worker in this version); set workers=1")
    if size > 1 and config.compile and config.batchnorm_sync == "sync":
        raise SRDCInputError("--compile true cannot compile --batchnorm_sync sync's BatchNorm (torch.compile does "
                             "not support its autograd all-reduce); use --compile false or --batchnorm_sync per_device")
    domains = [task.source, task.target, *([task.target_test] if task.target_test is not None else [])]
    smallest = min(config.batch_size, *(len(domain) for domain in domains))
    if smallest < size:
        raise SRDCInputError(f"--workers {size} splits every batch and domain over the workers, but one holds "
                             f"{smallest} samples; use at most {smallest} workers")


def _accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return float((predictions == labels).float().mean() * 100.0)
