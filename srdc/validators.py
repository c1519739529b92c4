"""Label-free validators: scores of a model computed WITHOUT target labels, used to choose an epoch.

A validator is one registry entry (:class:`Validator`): its name (what ``labelfree_selector`` names), the history
key it writes (``metric``), whether higher or lower is better, and a function of what the epoch's preparation
pass already holds (:class:`ValidationInput`), so validating costs no extra pass (but the held-out source
samples', where ``source_val_fraction`` keeps some). The trainer computes every
registered validator every epoch; :mod:`srdc.selection` picks an epoch by each. Adding one is one function and
one line ``VALIDATORS["name"] = Validator(...)`` (a :class:`srdc.base.Registry`). The registry imports no torch
(``--help`` lists its names); the scores load :mod:`srdc.losses` when first computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from srdc.base import Registry

if TYPE_CHECKING:
    import torch

    from srdc.model import Features


SMALLEST = 1e-12  # probabilities are clamped to this before their logarithm
SND_TEMPERATURE = 0.05  # Saito et al.'s, and pytorch-adapt's default
SND_ROWS = 1024  # the soft neighbourhood density's similarities are computed this many target rows at a time
CLUSTER_ITERATIONS = 10  # Lloyd iterations of the class-cluster agreement's K-means
MMD_POINTS = 1024  # the MMD's samples per domain
DEV_POINTS = 2000  # the DEV domain classifier's training samples per domain
DEV_ITERATIONS = 1000  # its L-BFGS iterations at most


@dataclass(frozen=True)
class ValidationInput:
    """What the preparation pass holds once the method has prepared the epoch."""

    target_probs: torch.Tensor  # softmax of the target logits, N_t x K
    target: Features
    source: Features
    centres: dict[str, torch.Tensor]  # the method's cluster centres mu per feature space (may be empty)
    feature_kernel: str  # the config's soft assignment of eqs. (4)/(9)
    source_val: Features | None = None  # the held-out source samples (source_val_fraction > 0), else None


@dataclass(frozen=True)
class Validator:
    """``compute`` scores the model; ``metric`` is its history key; ``better`` is ``"max"`` or ``"min"``;
    ``held_out_source``: it reads :attr:`ValidationInput.source_val`, and a run without one has no value of it."""

    name: str
    metric: str
    better: str
    compute: Callable[[ValidationInput], float]
    held_out_source: bool = False


def infomax(view: ValidationInput) -> float:
    """Information maximisation ``H(mean p) - mean H(p)`` of the target predictions (higher is better)."""
    from srdc import losses

    return float(losses.information_maximization(view.target_probs))


def clustering_objective(view: ValidationInput) -> float:
    """Eq. (6) as the value of eqs. (1)/(5): ``KL(Q||P) + sum rho log rho`` with ``Q`` from eq. (2), in the output
    space and in each feature space that has centres (soft assignment of eq. 4); lower is better."""
    from srdc import losses

    feature_p = [losses.soft_assignment(view.target.spaces[space], mu, view.feature_kernel)
                 for space, mu in view.centres.items()]
    return float(sum(losses.clustering_objective(losses.auxiliary_distribution(p), p)
                     for p in [view.target_probs, *feature_p]))


def entropy(view: ValidationInput) -> float:
    """The mean entropy ``mean_i H(p_i)`` of the target predictions (lower is better: confident predictions);
    pytorch-adapt's ``EntropyValidator`` is its negative (Musgrave et al., "Benchmarking Validation Methods for
    Unsupervised Domain Adaptation", 2022). Cost: one pass over the N_t x K predictions."""
    probs = view.target_probs
    return float(-(probs * probs.clamp_min(SMALLEST).log()).sum(dim=1).mean())


def diversity(view: ValidationInput) -> float:
    """The entropy ``H(mean_i p_i)`` of the mean target prediction (higher is better: predictions spread over the
    classes); pytorch-adapt's ``DiversityValidator``. Cost: one pass over the N_t x K predictions."""
    marginal = view.target_probs.mean(dim=0)
    return float(-(marginal * marginal.clamp_min(SMALLEST).log()).sum())


def batch_nuclear_norm(view: ValidationInput) -> float:
    """The nuclear norm of the N_t x K target prediction matrix over N_t (higher is better: confident and diverse
    predictions; Cui et al., "Towards Discriminability and Diversity: Batch Nuclear-norm Maximization", CVPR 2020;
    pytorch-adapt's ``BNMValidator``). Cost: the singular values of an N_t x K matrix."""
    import torch

    probs = view.target_probs.double()
    if not bool(torch.isfinite(probs).all()):  # a diverged model: NaN, as the other validators say
        return math.nan
    return float(torch.linalg.svdvals(probs).sum() / len(probs))


def soft_neighbourhood_density(view: ValidationInput, temperature: float = SND_TEMPERATURE) -> float:
    """Soft neighbourhood density (Saito et al., "Tune it the Right Way: Unsupervised Validation of Domain
    Adaptation via Soft Neighborhood Density", ICCV 2021; pytorch-adapt's ``SNDValidator``): the mean entropy of each
    target sample's softmax (temperature 0.05) over its cosine similarities to every other target sample's
    prediction; higher is better (neighbourhoods that are dense, not collapsed to a point). Cost: N_t x N_t
    similarities, computed :data:`SND_ROWS` rows at a time (digits' 10,000 targets: 1.1 s on one core)."""
    import torch

    normalised = torch.nn.functional.normalize(view.target_probs.float(), dim=1)
    total = 0.0
    for start in range(0, len(normalised), SND_ROWS):
        rows = normalised[start:start + SND_ROWS]
        similarity = rows @ normalised.T / temperature
        similarity[torch.arange(len(rows)), torch.arange(start, start + len(rows))] = -math.inf  # not itself
        neighbours = torch.softmax(similarity, dim=1)
        total += float(-(neighbours * neighbours.clamp_min(SMALLEST).log()).sum())
    return total / len(normalised)


def class_cluster_ami(view: ValidationInput) -> float:
    """Class-cluster agreement (pytorch-adapt's ``ClassClusterValidator`` with ``centroid_init="label_centers"``, as
    benchmarked by Musgrave et al. 2022): K-means of the target pooled features, started from the centres of the
    predicted classes (no random state), and the adjusted mutual information between its clusters and the
    predictions; higher is better (the classifier's partition is the features' cluster structure). Cost: 10 Lloyd
    iterations over the N_t x d features and scikit-learn's AMI."""
    import torch
    from sklearn.metrics import adjusted_mutual_info_score

    from srdc.clustering import class_means, kmeans

    features = view.target.spaces["pooled"].float()
    predictions = view.target_probs.argmax(dim=1)
    if not bool(torch.isfinite(features).all()):  # a diverged model: NaN, as the other validators say
        return math.nan
    classes, labels = torch.unique(predictions, return_inverse=True)  # the predicted classes only
    clusters, _ = kmeans(features, class_means(features, labels, len(classes))[0], iterations=CLUSTER_ITERATIONS)
    return float(adjusted_mutual_info_score(labels.cpu().numpy(), clusters.cpu().numpy()))


def feature_mmd(view: ValidationInput) -> float:
    """Maximum mean discrepancy between the source and the target pooled features (pytorch-adapt's ``MMDValidator``,
    negated there): the biased MMD^2 estimate with a mixture of five Gaussian kernels of bandwidths 2^-2 .. 2^2 times
    the mean squared distance of the pooled sample (DAN's multi-kernel choice), on at most :data:`MMD_POINTS` evenly
    spaced samples of each domain; lower is better (aligned domains). Cost: (2 x MMD_POINTS)^2 distances (800-d:
    0.14 s on one core)."""
    import torch

    source, target = (_evenly_spaced(features.spaces["pooled"].float(), MMD_POINTS)
                      for features in (view.source, view.target))
    points = torch.cat([source, target])
    distances = torch.cdist(points, points).square()
    base = (distances.sum() / (len(points) * (len(points) - 1))).clamp_min(SMALLEST)  # identical points: MMD 0
    kernel = sum(torch.exp(-distances / (base * 2.0 ** power)) for power in range(-2, 3)) / 5
    split = len(source)
    return float(kernel[:split, :split].mean() + kernel[split:, split:].mean() - 2 * kernel[:split, split:].mean())


def _evenly_spaced(rows: torch.Tensor, limit: int) -> torch.Tensor:
    """At most ``limit`` rows of ``rows``, evenly spaced (no random state)."""
    import torch

    if len(rows) <= limit:
        return rows
    return rows[torch.linspace(0, len(rows) - 1, limit, device=rows.device).round().long()]


def source_accuracy(view: ValidationInput) -> float:
    """Accuracy (%) of the classifier on the source samples the preparation pass holds, with their labels (the
    source training set; Musgrave et al. 2022's "source train accuracy"); higher is better. It is the history's
    ``acc_source``. Cost: none beyond the pass."""
    return float((view.source.logits.argmax(dim=1) == view.source.labels).float().mean() * 100.0)


def source_val_accuracy(view: ValidationInput) -> float:
    """Accuracy (%) of the classifier on the held-out source samples (``source_val_fraction``; Musgrave et al.
    2022's "source val accuracy", the usual practice of selecting on a source validation split); higher is better.
    Cost: one more pass over the held-out samples."""
    assert view.source_val is not None  # validate() leaves it out without them
    return float((view.source_val.logits.argmax(dim=1) == view.source_val.labels).float().mean() * 100.0)


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
    source, target = (_evenly_spaced(features.spaces["pooled"].float(), DEV_POINTS).cpu().numpy()
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


# the validators by the name ``labelfree_selector`` gives them
VALIDATORS: Registry[Validator] = Registry("labelfree_selector", entries={
    "infomax": Validator("infomax", "infomax", "max", infomax),
    "clustering": Validator("clustering", "clustering_objective", "min", clustering_objective),
    "entropy": Validator("entropy", "entropy", "min", entropy),
    "diversity": Validator("diversity", "diversity", "max", diversity),
    "bnm": Validator("bnm", "bnm", "max", batch_nuclear_norm),
    "snd": Validator("snd", "snd", "max", soft_neighbourhood_density),
    "class_ami": Validator("class_ami", "class_ami", "max", class_cluster_ami),
    "mmd": Validator("mmd", "mmd", "min", feature_mmd),
    "source_accuracy": Validator("source_accuracy", "acc_source", "max", source_accuracy),
    "source_val_accuracy": Validator("source_val_accuracy", "acc_source_val", "max", source_val_accuracy,
                                     held_out_source=True),
    "dev": Validator("dev", "dev", "min", deep_embedded_validation, held_out_source=True),
})


def validate(view: ValidationInput) -> dict[str, float]:
    """Every registered validator's score, under its metric key (those that need held-out source data only where the
    view has it)."""
    return {validator.metric: validator.compute(view) for validator in VALIDATORS.values()
            if view.source_val is not None or not validator.held_out_source}


def check_selector(selector: str, source_val_fraction: float) -> None:
    """An :class:`srdc.errors.SRDCInputError` naming the fix when ``selector`` is unknown, or needs held-out source
    data that ``source_val_fraction`` 0 does not keep."""
    from srdc.errors import SRDCInputError

    if VALIDATORS.lookup(selector).held_out_source and source_val_fraction == 0:
        raise SRDCInputError(f"labelfree_selector {selector} scores held-out source samples: set --source_val_fraction "
                             "(e.g. 0.1) to keep some out of training")
