"""Seeded, stratified splits: the 50/50 inductive split of paper Table 2, and subsampling for quick runs."""

from __future__ import annotations

import numpy as np


def stratified_split(labels: np.ndarray, seed: int, fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Split indices per class: ``round(fraction * n_c)`` of each class to the first part, the rest to the second.

    Every class with at least two samples appears in both parts. Same labels and seed -> same split.
    Both index arrays are sorted.
    """
    rng = np.random.default_rng(seed)
    first: list[np.ndarray] = []
    second: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = int(round(fraction * len(members)))
        if len(members) >= 2:
            cut = min(max(cut, 1), len(members) - 1)
        first.append(members[:cut])
        second.append(members[cut:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def stratified_subsample(labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """About ``count`` indices with the class proportions of ``labels`` (all of them if ``count >= len``)."""
    if count >= len(labels):
        return np.arange(len(labels))
    chosen, _ = stratified_split(labels, seed, fraction=count / len(labels))
    return chosen


def kept_rows(labels: np.ndarray, max_samples: int | None, seed: int) -> np.ndarray:
    """The rows of a domain a run keeps: all of them, or with ``max_samples`` a stratified subsample."""
    if max_samples is None:
        return np.arange(len(labels))
    return stratified_subsample(labels, max_samples, seed)
