"""The entropy of the mean target prediction."""

from __future__ import annotations

from srdc.validators.base import ValidationInput


def diversity(view: ValidationInput) -> float:
    """The entropy ``H(mean_i p_i)`` of the mean target prediction (higher is better: predictions spread over the
    classes); pytorch-adapt's ``DiversityValidator``. Cost: one pass over the N_t x K predictions."""
    from srdc import losses

    return float(losses.marginal_entropy(view.target_probs))
