"""What a trial's figures need of one epoch's preparation pass, kept small enough for every checkpoint.

A snapshot holds, for the model after one epoch: the confusion matrix of its target predictions (K x K counts over
the whole target set), a fixed random subset of at most :data:`POINTS` source and :data:`POINTS` target samples
(their labels, the target predictions, and their pooled features scaled into [-1, 1] in float16: the input of the
t-SNE, reduced by
:func:`principal_components` only when the figure is drawn, so that taking a snapshot costs an epoch an index and a
copy, not an eigendecomposition), and, for a method that weights its source samples (SRDC's eq. 12), every source
weight (float16) and the indices of the :data:`EXTREMES` highest- and lowest-weighted source samples. Tensors and
plain values only, on the CPU: a checkpoint holds it and loads with ``weights_only=True``.

The subset comes from its own generator seeded with the run's seed, so that it is the same in every epoch and after
a resume, and the training's random states are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

POINTS = 500  # per domain: a t-SNE of 1000 points takes about 2 s on one core
DIMENSIONS = 50
EXTREMES = 8


@dataclass(frozen=True)
class PassView:
    """The part of a preparation pass a snapshot is taken of (tensors on any device)."""

    epoch: int
    num_classes: int
    source_features: torch.Tensor  # pooled, N_s x d
    source_labels: torch.Tensor
    target_features: torch.Tensor  # pooled, N_t x d
    target_logits: torch.Tensor
    target_labels: torch.Tensor
    source_weights: torch.Tensor | None  # eq. (12), None for a method without soft source selection


def figure_subset(source_size: int, target_size: int, seed: int, limit: int = POINTS) -> tuple[np.ndarray, np.ndarray]:
    """The sorted indices of at most ``limit`` source and ``limit`` target samples, drawn once from a generator of
    their own seeded with ``seed``."""
    generator = np.random.default_rng(seed)
    return tuple(np.sort(generator.choice(size, size=min(size, limit), replace=False))
                 for size in (source_size, target_size))


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """K x K counts: row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def principal_components(features: torch.Tensor, dimensions: int = DIMENSIONS) -> torch.Tensor:
    """The centred ``features`` projected on their first ``dimensions`` principal axes (float32). An eigendecomposition
    (no random state) of the smaller of the Gram matrix (samples x samples) and the scatter matrix (dimensions x
    dimensions): for 400 samples of 800-d features a third of an SVD's time."""
    centred = features.float() - features.float().mean(dim=0)
    if len(centred) <= centred.shape[1]:
        values, vectors = torch.linalg.eigh(centred @ centred.T)
        projected = vectors * values.clamp_min(0.0).sqrt()  # U S of the SVD centred = U S V^T
    else:
        projected = centred @ torch.linalg.eigh(centred.T @ centred)[1]
    keep = min(dimensions, projected.shape[1])
    return projected[:, -keep:].flip(1)  # eigh sorts ascending: the largest first


def scaled_half(features: torch.Tensor) -> torch.Tensor:
    """``features`` divided by their largest magnitude (into [-1, 1], where float16 holds any feature's scale) as a
    float16 tensor on the CPU."""
    features = features.float()
    return (features / features.abs().max().clamp_min(1e-12)).half().cpu()


def take_snapshot(view: PassView, subset: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """The snapshot (module docstring) of ``view`` with the ``subset`` of :func:`figure_subset`."""
    source_index, target_index = (torch.as_tensor(index, dtype=torch.long) for index in subset)
    predictions = view.target_logits.argmax(dim=1)
    features = torch.cat([view.source_features[source_index.to(view.source_features.device)],
                          view.target_features[target_index.to(view.target_features.device)]])
    snapshot: dict[str, Any] = {
        "epoch": view.epoch,
        "confusion": confusion_matrix(view.target_labels, predictions, view.num_classes),
        "source_index": source_index,
        "target_index": target_index,
        "source_labels": view.source_labels.cpu()[source_index],
        "target_labels": view.target_labels.cpu()[target_index],
        "target_predictions": predictions.cpu()[target_index],
        "features": scaled_half(features),
    }
    if view.source_weights is not None:
        weights = view.source_weights.float().cpu()
        order = torch.argsort(weights, descending=True, stable=True)
        snapshot.update({"source_weights": weights.half(), "weights_top": order[:EXTREMES],
                         "weights_bottom": order.flip(0)[:EXTREMES]})
    return snapshot
