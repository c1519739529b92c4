"""Maximum mean discrepancy between the source and the target features."""

from __future__ import annotations

from srdc.validators.base import SMALLEST, ValidationInput, evenly_spaced

MMD_POINTS = 1024  # samples per domain


def feature_mmd(view: ValidationInput) -> float:
    """Maximum mean discrepancy between the source and the target pooled features (pytorch-adapt's ``MMDValidator``,
    negated there): the biased MMD^2 estimate with a mixture of five Gaussian kernels of bandwidths 2^-2 .. 2^2 times
    the mean squared distance of the pooled sample (DAN's multi-kernel choice), on at most :data:`MMD_POINTS` evenly
    spaced samples of each domain; lower is better (aligned domains). Cost: (2 x MMD_POINTS)^2 distances (800-d:
    0.14 s on one core)."""
    import torch

    source, target = (evenly_spaced(features.spaces["pooled"].float(), MMD_POINTS)
                      for features in (view.source, view.target))
    points = torch.cat([source, target])
    distances = torch.cdist(points, points).square()
    base = (distances.sum() / (len(points) * (len(points) - 1))).clamp_min(SMALLEST)  # identical points: MMD 0
    kernel = sum(torch.exp(-distances / (base * 2.0 ** power)) for power in range(-2, 3)) / 5
    split = len(source)
    return float(kernel[:split, :split].mean() + kernel[split:, split:].mean() - 2 * kernel[:split, split:].mean())
