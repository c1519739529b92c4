"""K-means as SRDC uses it (Appendix A; released code): Euclidean, a fixed number of Lloyd iterations,
initialised from given centres (the source class centroids at the first epoch), so cluster k stands for class k.

Runs in torch on the features' device, chunked over samples: memory is O(N*d + N*K + chunk*K), never N x K x d.
"""

from __future__ import annotations

import torch

from srdc.losses import squared_distances


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of each class, K x d, and the class counts, K. A class without samples gets a zero row."""
    sums = features.new_zeros(num_classes, features.shape[1]).index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=num_classes).to(features.dtype)
    return sums / counts.clamp_min(1.0).unsqueeze(1), counts


def assign(features: torch.Tensor, centres: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Index of the nearest centre for each row of ``features``, computed ``chunk`` rows at a time."""
    parts = [squared_distances(block, centres).argmin(dim=1) for block in features.split(chunk)]
    return torch.cat(parts)


def kmeans(
    features: torch.Tensor,
    init_centres: torch.Tensor,
    iterations: int = 5,
    chunk: int = 4096,
    *,
    zero_empty: bool = False,
    labels_before_update: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's K-means from ``init_centres`` (K x d); returns ``(assignments N, centres K x d)``.

    A cluster that loses all its members keeps its previous centre (so cluster k keeps meaning class k), or with
    ``zero_empty`` gets a zero centre (the released code). The assignments returned are those of the returned
    centres, or with ``labels_before_update`` those of the last iteration, made before its centre update (the
    released code).
    """
    centres = init_centres.clone()
    num_clusters = centres.shape[0]
    for _ in range(iterations):
        labels = assign(features, centres, chunk)
        means, counts = class_means(features, labels, num_clusters)
        centres = means if zero_empty else torch.where(counts.unsqueeze(1) > 0, means, centres)
    return (labels if labels_before_update else assign(features, centres, chunk)), centres


def centroids_with_fallback(
    features: torch.Tensor, labels: torch.Tensor, fallback: torch.Tensor
) -> torch.Tensor:
    """Class means of ``features`` grouped by ``labels``; a class with no member takes its ``fallback`` row."""
    means, counts = class_means(features, labels, fallback.shape[0])
    return torch.where(counts.unsqueeze(1) > 0, means, fallback)
