"""Deep embedded validation."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from srdc.validators.base import ValidationInput, evenly_spaced

if TYPE_CHECKING:
    import torch

DEV_POINTS = 2000  # the domain classifier's training samples per domain
DEV_ITERATIONS = 1000  # its L-BFGS iterations at most


def deep_embedded_validation(view: ValidationInput) -> float:
    """Deep embedded validation (You et al., "Towards Accurate Model Selection in Deep Unsupervised Domain
    Adaptation", ICML 2019; pytorch-adapt's ``DeepEmbeddedValidator``): the held-out source samples' cross-entropy
    weighted by the density ratio ``w = p_t(x) / p_s(x)`` of their pooled features, with the paper's control variate
    (:func:`dev_risk`); lower is better. The ratio comes from a logistic-regression domain classifier (scikit-learn,
    features standardised) trained on at most :data:`DEV_POINTS` evenly spaced source-training and target samples
    each: ``w = (n_s / n_t) d / (1 - d)`` with ``d`` its probability of "target". Cost: the classifier's fit
    (2 x 2000 samples of 800-d features: about a second on one core)."""
    import numpy as np
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    assert view.source_val is not None  # validate() leaves it out without them
    source, target = (evenly_spaced(features.spaces["pooled"].float(), DEV_POINTS).cpu().numpy()
                      for features in (view.source, view.target))
    held_out = view.source_val.spaces["pooled"].float().cpu().numpy()
    if not (np.isfinite(source).all() and np.isfinite(target).all() and np.isfinite(held_out).all()):
        return math.nan  # a diverged model, as the other validators say
    scaler = StandardScaler().fit(np.concatenate([source, target]))
    domains = np.concatenate([np.zeros(len(source)), np.ones(len(target))])
    classifier = LogisticRegression(max_iter=DEV_ITERATIONS).fit(scaler.transform(np.concatenate([source, target])),
                                                                 domains)
    target_probability = classifier.predict_proba(scaler.transform(held_out))[:, 1].clip(1e-6, 1 - 1e-6)
    weights = torch.as_tensor(len(source) / len(target) * target_probability / (1 - target_probability))
    losses = torch.nn.functional.cross_entropy(view.source_val.logits.double().cpu(),
                                               view.source_val.labels.cpu(), reduction="none")
    return dev_risk(losses, weights)

def dev_risk(losses: torch.Tensor, weights: torch.Tensor) -> float:
    """DEV's risk of per-sample ``losses`` under density-ratio ``weights`` (You et al. 2019, Algorithm 1):
    ``mean(w L) + eta mean(w) - eta`` with ``eta = -Cov(w L, w) / Var(w)`` (0 where the weights do not vary)."""
    weighted, weights = (losses * weights).double(), weights.double()
    variance = weights.var(unbiased=True) if len(weights) > 1 else weights.new_zeros(())
    covariance = ((weighted - weighted.mean()) * (weights - weights.mean())).sum() / max(len(weights) - 1, 1)
    eta = -covariance / variance if float(variance) > 0 else weights.new_zeros(())
    return float(weighted.mean() + eta * weights.mean() - eta)
