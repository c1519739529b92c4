"""What a run keeps for its figures while it trains: a recorder subscribed to the trainer's preparation and epoch
hooks (:class:`srdc.trainer.EpochObserver`).

For the oracle's and the label-free selection it keeps a small snapshot of the preparation pass of the epoch each
picks so far (:mod:`srdc.figures.snapshot`: confusion matrix, PCA-reduced features of a fixed subset, source
weights); the trainer checkpoints its state beside its own, so a resumed run ends with the same snapshots.
:meth:`FigureRecorder.trial_record` is what the run's figures are drawn from at its end. Nothing of it touches a
random state the training draws from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from srdc.base import LABELFREE, ORACLE
from srdc.config import SRDCConfig
from srdc.data.base import Domain
from srdc.figures.snapshot import PassView, figure_subset, take_snapshot
from srdc.figures.trial import TrialRecord
from srdc.methods import Preparation
from srdc.selection import summarize_run
from srdc.validators import VALIDATORS


def selected_epochs(history: list[dict[str, Any]], config: SRDCConfig) -> dict[str, int]:
    """The epoch the oracle (best target accuracy) and the label-free selector pick in ``history`` under ``config``'s
    selection options (:func:`srdc.selection.summarize_run`)."""
    summary = summarize_run(history, config)
    return {ORACLE: summary["best_oracle_epoch"], LABELFREE: summary["labelfree_epoch"]}


class FigureRecorder:
    """Snapshots of the passes the selections pick, for a run of ``config`` (its selection options, and its seed:
    the seed of the fixed subset of points the t-SNE shows)."""

    name = "figures"

    def __init__(self, config: SRDCConfig) -> None:
        self.config, self.selector, self.seed = config, config.labelfree_selector, config.seed
        self.snapshots: dict[str, dict[str, Any]] = {}
        self._pass: PassView | None = None  # the latest preparation pass, until its row is recorded
        self._subset: tuple[np.ndarray, np.ndarray] | None = None

    def prepared(self, pass_: Preparation, source_weights: torch.Tensor | None) -> None:
        """Keep what a snapshot of this preparation pass needs, until its history row is recorded."""
        self._pass = PassView(pass_.epoch, pass_.num_classes, pass_.source.spaces["pooled"], pass_.source.labels,
                              pass_.target.spaces["pooled"], pass_.target.logits, pass_.target.labels, source_weights)

    def recorded(self, history: list[dict[str, Any]]) -> None:
        """Snapshot the pass of the row just recorded for each selection that picks its epoch now: the best so far
        (the label-free pick at the end is known from the epochs up to it only), so that at the end each selection
        holds its pick's snapshot."""
        view, self._pass = self._pass, None
        if view is None:
            return
        picked = [selection for selection, pick in selected_epochs(history, self.config).items()
                  if pick == history[-1]["epoch"]]
        if not picked:
            return
        if self._subset is None:
            self._subset = figure_subset(len(view.source_labels), len(view.target_labels), self.seed)
        snapshot = take_snapshot(view, self._subset)
        self.snapshots.update(dict.fromkeys(picked, snapshot))

    def state_dict(self) -> dict[str, Any]:
        """The snapshots, tensors and plain values only (a checkpoint holds them)."""
        return {"snapshots": {selection: dict(snapshot) for selection, snapshot in self.snapshots.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (empty: a checkpoint made without this recorder)."""
        self.snapshots = {selection: dict(snapshot) for selection, snapshot in state.get("snapshots", {}).items()}

    def trial_record(self, history: list[dict[str, Any]], source: Domain) -> TrialRecord:
        """What the run's figures are drawn from (:class:`srdc.figures.trial.TrialRecord`), with the images of the
        highest- and lowest-weighted ``source`` samples at the label-free pick."""
        snapshot = self.snapshots.get(LABELFREE, {})
        extremes = [*snapshot["weights_top"].tolist(), *snapshot["weights_bottom"].tolist()] \
            if "source_weights" in snapshot else []
        return TrialRecord(
            history=[dict(row) for row in history], picks=selected_epochs(history, self.config),
            selector=self.selector, validators=[v.metric for v in VALIDATORS.values()], snapshots=self.snapshots,
            classes=[str(name) for name in source.classes], seed=self.seed,
            source_images=source_images(source, extremes))


def recorder_for(config: SRDCConfig) -> FigureRecorder | None:
    """The recorder of the run of ``config``; ``None`` when its ``figures`` option is off."""
    return FigureRecorder(config) if config.figures else None


def source_images(source: Domain, indices: list[int]) -> dict[int, tuple[torch.Tensor, int]]:
    """By index, the ``source`` domain's evaluation-view image (uint8, rescaled for display: H x W x C, H x W for one
    channel) and class at each of ``indices``; empty for a feature dataset."""
    items = {index: source.eval_set[index] for index in dict.fromkeys(indices)}
    if any(image.ndim != 3 for image, _ in items.values()):
        return {}
    return {index: (_displayable(image), int(label)) for index, (image, label) in items.items()}


def _displayable(image: torch.Tensor) -> torch.Tensor:
    """A C x H x W image tensor (normalised) as an H x W x C uint8 tensor (H x W for one channel) spanning 0-255."""
    scaled = image.float() - image.min()
    scaled = (scaled * (255.0 / max(float(scaled.max()), 1e-12))).round().to(torch.uint8)
    return scaled[0] if len(scaled) == 1 else scaled.permute(1, 2, 0).contiguous()
