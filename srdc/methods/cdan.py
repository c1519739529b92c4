"""CDAN+E (Long et al., NeurIPS 2018): the domain discriminator conditioned on the classifier's predictions
through the multilinear map ``f (x) g``, each sample weighted by the certainty of its prediction
(:mod:`srdc.methods.adversarial` for the gradient reversal and the discriminator).

* Multilinear map (CDAN eq. 4): ``T(f, g) = vec(g f^T)``, dimension ``K d_f``; when ``d_f K > 4096`` (with
  ``cdan_map="auto"``, CDAN Section 3.1) the randomized map ``T(f, g) = (R_f f) * (R_g g) / sqrt(d)`` with
  fixed Gaussian ``R_f``, ``R_g`` (d = ``cdan_random_dim`` = 1024), as the released code.
* ``g`` is the softmax of the logits, detached (the released code and Transfer-Learning-Library): the
  adversarial gradient reaches the network through ``f`` only.
* Entropy conditioning (CDAN+E, eq. 10): ``w = 1 + exp(-H(g))``, normalised to sum 1 within each domain of the
  batch, as the released code (detached, as in Transfer-Learning-Library; the released code also lets the
  reversed gradient flow through ``H(g)``, docs/fidelity_notes.md item 21).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from srdc.config import SRDCConfig
from srdc.methods.adversarial import Adversarial
from srdc.model import Outputs

MULTILINEAR_LIMIT = 4096


def multilinear_map(f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``vec(g f^T)`` per row: N x d_f and N x K -> N x (K d_f), entry ``k d_f + j`` = ``g_k f_j``."""
    return (g.unsqueeze(2) * f.unsqueeze(1)).flatten(1)


def entropy_weights(g: torch.Tensor, num_source: int) -> torch.Tensor:
    """CDAN+E's ``w = 1 + exp(-H(g))`` of each row of ``g`` (probabilities), divided by its domain's sum."""
    entropy = -(g * torch.log(g.clamp_min(1e-12))).sum(dim=1)
    w = 1.0 + torch.exp(-entropy)
    return torch.cat([w[:num_source] / w[:num_source].sum(), w[num_source:] / w[num_source:].sum()])


class RandomizedMap(nn.Module):
    """``(R_f f) * (R_g g) / sqrt(d)`` with fixed standard-normal ``R_f`` (d_f x d) and ``R_g`` (K x d): an
    unbiased estimate of the multilinear map's inner products (CDAN Theorem 1). The matrices are buffers, so they
    are part of the method's checkpointed state."""

    def __init__(self, feature_dim: int, num_classes: int, dim: int, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("r_f", torch.randn(feature_dim, dim, generator=generator))
        self.register_buffer("r_g", torch.randn(num_classes, dim, generator=generator))

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (f @ self.r_f) * (g @ self.r_g) / math.sqrt(self.r_f.shape[1])


def uses_randomized_map(config: SRDCConfig, num_classes: int) -> bool:
    """``cdan_map``: ``auto`` randomizes when the multilinear map would exceed 4096 dimensions."""
    if config.cdan_map == "auto":
        return config.bottleneck_dim * num_classes > MULTILINEAR_LIMIT
    return config.cdan_map == "randomized"


class CDAN(Adversarial):
    """The discriminator sees ``T(f, g)`` of the bottleneck features ``f`` and the predictions ``g``."""

    def __init__(self, config: SRDCConfig, num_classes: int, feature_dims: dict[str, int],
                 device: torch.device) -> None:
        super().__init__(config, num_classes, feature_dims, device)
        self.randomized = (RandomizedMap(config.bottleneck_dim, num_classes, config.cdan_random_dim, config.seed)
                           .to(device) if uses_randomized_map(config, num_classes) else None)

    def resolved(self) -> dict[str, Any]:
        return {"cdan_map": "multilinear" if self.randomized is None else "randomized"}

    def discriminator_dim(self, config: SRDCConfig, num_classes: int) -> int:
        if uses_randomized_map(config, num_classes):
            return config.cdan_random_dim
        return config.bottleneck_dim * num_classes

    def discriminator_input(self, out: Outputs, num_source: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        g = torch.softmax(out.logits, dim=1).detach()
        h = multilinear_map(out.bottleneck, g) if self.randomized is None else self.randomized(out.bottleneck, g)
        return h, entropy_weights(g, num_source) if self.config.cdan_entropy else None

    def state_dict(self) -> dict[str, Any]:
        maps = {} if self.randomized is None else {"randomized_map": self.randomized.state_dict()}
        return {**super().state_dict(), **maps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.randomized is not None:
            self.randomized.load_state_dict(state["randomized_map"])

