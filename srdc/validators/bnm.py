"""Batch nuclear-norm of the target predictions."""

from __future__ import annotations

import math

from srdc.validators.base import ValidationInput


def batch_nuclear_norm(view: ValidationInput) -> float:
    """The nuclear norm of the N_t x K target prediction matrix over N_t (higher is better: confident and diverse
    predictions; Cui et al., "Towards Discriminability and Diversity: Batch Nuclear-norm Maximization", CVPR 2020;
    pytorch-adapt's ``BNMValidator``). Cost: the singular values of an N_t x K matrix."""
    import torch

    probs = view.target_probs.double()
    if not bool(torch.isfinite(probs).all()):  # a diverged model: NaN, as the other validators say
        return math.nan
    return float(torch.linalg.svdvals(probs).sum() / len(probs))
