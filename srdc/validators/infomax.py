"""Information maximisation of the target predictions."""

from __future__ import annotations

from srdc.validators.base import ValidationInput


def infomax(view: ValidationInput) -> float:
    """Information maximisation ``H(mean p) - mean H(p)`` of the target predictions (higher is better)."""
    from srdc import losses

    return float(losses.information_maximization(view.target_probs))
