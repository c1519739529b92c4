"""DANN (Ganin & Lempitsky, ICML 2015; Ganin et al., JMLR 2016): a domain discriminator on the bottleneck
features, trained through the gradient reversal layer (:mod:`srdc.methods.adversarial`)."""

from __future__ import annotations

import torch

from srdc.config import SRDCConfig
from srdc.methods.adversarial import Adversarial
from srdc.model import Outputs


class DANN(Adversarial):
    """The discriminator sees the bottleneck features ``f`` of every sample, unweighted (DANN eq. 18)."""

    def discriminator_dim(self, config: SRDCConfig, num_classes: int) -> int:
        return config.bottleneck_dim

    def discriminator_input(self, out: Outputs, num_source: int) -> tuple[torch.Tensor, None]:
        return out.bottleneck, None
