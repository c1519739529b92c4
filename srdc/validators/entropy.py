"""The mean entropy of the target predictions."""

from __future__ import annotations

from srdc.validators.base import ValidationInput


def entropy(view: ValidationInput) -> float:
    """The mean entropy ``mean_i H(p_i)`` of the target predictions (lower is better: confident predictions);
    pytorch-adapt's ``EntropyValidator`` is its negative (Musgrave et al., "Benchmarking Validation Methods for
    Unsupervised Domain Adaptation", 2022). Cost: one pass over the N_t x K predictions."""
    from srdc import losses

    return float(losses.mean_entropy(view.target_probs))
