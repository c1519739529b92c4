"""The equations of SRDC (Tang et al., CVPR 2020, Section 4), one small function each.

Conventions: ``p`` is a probability matrix N x K (rows sum to 1), ``q`` an auxiliary distribution of the same
shape, ``labels`` int64 N, ``weights`` float N in [0, 1]. Logs are taken through ``log_softmax`` where logits
are at hand, so no loss takes ``log(0)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-12


def auxiliary_distribution(p: torch.Tensor, column_mass: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. (2): ``q_ik = (p_ik / sqrt(sum_i' p_i'k)) / sum_k' (p_ik' / sqrt(sum_i' p_i'k'))``.

    ``column_mass`` is ``sum_i p_ik`` over the set that (2) normalises over: by default the rows of ``p``
    themselves (the released code: the mini-batch); pass the whole target set's column sums for the paper's
    text (``aux_normalizer="dataset"``). Gradients flow through ``q`` unless the caller detaches it.
    """
    mass = p.sum(dim=0) if column_mass is None else column_mass
    unnormalised = p / torch.sqrt(mass.clamp_min(_EPS))
    return unnormalised / unnormalised.sum(dim=1, keepdim=True)


def squared_distances(z: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``||z_i - c_k||^2`` as N x K via ``|z|^2 - 2 z.c + |c|^2`` (no N x K x d tensor; finite gradient at 0)."""
    return (z.pow(2).sum(1, keepdim=True) - 2.0 * z @ centres.t() + centres.pow(2).sum(1)).clamp_min(0.0)


def kernel_logits(z: torch.Tensor, centres: torch.Tensor, kind: str = "paper") -> torch.Tensor:
    """Logits whose softmax is the soft assignment ``p~`` of eqs. (4)/(9), N x K.

    ``kind="paper"`` (eqs. 4/9 as printed, and the released code): the kernel ``(1 + ||z_i - mu_k||^2)^-1`` itself,
    so ``p~ = softmax(kernel)``. ``kind="student_t"`` (the soft assignment of reference [58], DEC, that the paper
    says it follows): ``-log(1 + ||z_i - mu_k||^2)``, so ``p~ = kernel / sum_k kernel``.
    """
    squared = squared_distances(z, centres)
    if kind == "student_t":
        return -torch.log1p(squared)
    return 1.0 / (1.0 + squared)


def soft_assignment(z: torch.Tensor, centres: torch.Tensor, kind: str = "paper") -> torch.Tensor:
    """Eqs. (4) and (9): ``p~_ik = exp((1+||z_i-mu_k||^2)^-1) / sum_k' exp((1+||z_i-mu_k'||^2)^-1)``
    (``kind="paper"``), or DEC's ``(1+||z_i-mu_k||^2)^-1 / sum_k' (1+||z_i-mu_k'||^2)^-1`` (``"student_t"``)."""
    return torch.softmax(kernel_logits(z, centres, kind), dim=1)


def kl_divergence(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """First term of eqs. (1)/(5): ``KL(Q||P) = 1/n sum_i sum_k q_ik log(q_ik / p_ik)``."""
    return (q * (torch.log(q.clamp_min(_EPS)) - torch.log(p.clamp_min(_EPS)))).sum(dim=1).mean()


def balance_term(q: torch.Tensor) -> torch.Tensor:
    """Second term of eqs. (1)/(5): ``sum_k rho_k log rho_k`` with ``rho_k = 1/n sum_i q_ik``.

    It is smallest (``-log K``) when the clusters are of equal size, so minimising it balances cluster sizes.
    """
    rho = q.mean(dim=0)
    return (rho * torch.log(rho.clamp_min(_EPS))).sum()


def clustering_objective(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Eqs. (1)/(5): ``KL(Q||P) + sum_k rho_k log rho_k``."""
    return kl_divergence(q, p) + balance_term(q)


def soft_cross_entropy(q: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """Eq. (3) (and its feature-space twin from (5)): ``-1/n sum_i sum_k q_ik log p_ik``."""
    return -(q * log_p).sum(dim=1).mean()


def weighted_cross_entropy(
    log_p: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Eqs. (7)/(8) and, with ``weights``, their weighted forms (13)/(14):
    ``-1/n sum_j w_j log p_{j, y_j}`` (``w_j = 1`` without weights; the mean is over ``n``, not ``sum w``).
    """
    picked = log_p.gather(1, labels.unsqueeze(1)).squeeze(1)
    if weights is not None:
        picked = picked * weights
    return -picked.mean()


def target_objective(
    logits: torch.Tensor,
    q: torch.Tensor,
    feature_terms: list[tuple[torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """Eq. (6) in its network-update form: eq. (3) in the output space plus, for each feature space,
    ``-1/n sum q~ log p~`` with ``p~`` from eq. (4). ``feature_terms`` holds ``(kernel_logits, q~)`` pairs.
    """
    loss = soft_cross_entropy(q, F.log_softmax(logits, dim=1))
    for kernel, q_feature in feature_terms:
        loss = loss + soft_cross_entropy(q_feature, F.log_softmax(kernel, dim=1))
    return loss


def source_objective(
    logits: torch.Tensor,
    labels: torch.Tensor,
    feature_kernels: list[torch.Tensor],
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (10), weighted as (13)/(14): returns ``(output-space term (7)/(13), feature-space terms (8)/(14))``.

    The two are returned apart because the released code weights them differently in the total (eq. 11).
    """
    output_term = weighted_cross_entropy(F.log_softmax(logits, dim=1), labels, weights)
    feature_term = logits.new_zeros(())
    for kernel in feature_kernels:
        feature_term = feature_term + weighted_cross_entropy(F.log_softmax(kernel, dim=1), labels, weights)
    return output_term, feature_term


def total_objective(
    target_loss: torch.Tensor,
    source_output_loss: torch.Tensor,
    source_feature_loss: torch.Tensor,
    lam: float,
    weighting: str = "code",
) -> torch.Tensor:
    """Eq. (11). ``weighting="paper"``: ``L_t + lambda (L_s_out + L_s_feat)`` as printed.
    ``weighting="code"`` (the released code, which produced the published numbers):
    ``lambda L_t + L_s_out + lambda L_s_feat`` -- lambda ramps the target and source-feature terms in.
    """
    if weighting == "paper":
        return target_loss + lam * (source_output_loss + source_feature_loss)
    return lam * target_loss + source_output_loss + lam * source_feature_loss


def source_weights(features: torch.Tensor, labels: torch.Tensor, target_centres: torch.Tensor) -> torch.Tensor:
    """Eq. (12): ``w_j = (1 + cos(z_j, c^t_{y_j})) / 2`` in [0, 1]."""
    cosine = F.cosine_similarity(features, target_centres[labels], dim=1)
    return (0.5 * (1.0 + cosine)).clamp(0.0, 1.0)


def mean_entropy(p: torch.Tensor) -> torch.Tensor:
    """``mean_i H(p_i)``, the mean entropy of the rows of ``p`` (N x K probabilities): low when each is confident."""
    return -(p * torch.log(p.clamp_min(_EPS))).sum(dim=1).mean()


def marginal_entropy(p: torch.Tensor) -> torch.Tensor:
    """``H(mean_i p_i)``, the entropy of the mean row of ``p``: high when the rows spread over the classes."""
    marginal = p.mean(dim=0)
    return -(marginal * torch.log(marginal.clamp_min(_EPS))).sum()


def information_maximization(p: torch.Tensor) -> torch.Tensor:
    """Label-free validator: ``H(mean_i p_i) - mean_i H(p_i)``, in [0, log K].

    High when predictions are individually confident and collectively balanced over the classes.
    """
    return marginal_entropy(p) - mean_entropy(p)
