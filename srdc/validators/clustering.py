"""SRDC's own clustering objective (eqs. 1/5/6) as a validator."""

from __future__ import annotations

from srdc.validators.base import ValidationInput


def clustering_objective(view: ValidationInput) -> float:
    """Eq. (6) as the value of eqs. (1)/(5): ``KL(Q||P) + sum rho log rho`` with ``Q`` from eq. (2), in the output
    space and in each feature space that has centres (soft assignment of eq. 4); lower is better."""
    from srdc import losses

    feature_p = [losses.soft_assignment(view.target.spaces[space], mu, view.feature_kernel)
                 for space, mu in view.centres.items()]
    return float(sum(losses.clustering_objective(losses.auxiliary_distribution(p), p)
                     for p in [view.target_probs, *feature_p]))
