"""The training methods, keyed by the config's ``variant``.

Adding a method is one module with a :class:`Method` subclass and one line ``METHODS["name"] = Class``; the
trainer, ``srdc-train --variant`` and the studies then accept ``variant="name"``.
"""

from __future__ import annotations

import torch

from srdc.config import SRDCConfig
from srdc.errors import SRDCInputError
from srdc.methods.base import Batch, Draw, Loss, Method, Preparation, Prepared, Step, supervised_loss
from srdc.methods.oracle import Oracle
from srdc.methods.source_only import SourceOnly
from srdc.methods.srdc import SRDC

METHODS: dict[str, type[Method]] = {
    "source_only": SourceOnly,
    "srdc_no_struct": SRDC,
    "srdc_no_featdisc": SRDC,
    "srdc_no_softsel": SRDC,
    "srdc": SRDC,
    "oracle": Oracle,
}


def method_class(variant: str) -> type[Method]:
    """The method registered as ``variant``; an unknown name is one clear :class:`SRDCInputError`."""
    if variant not in METHODS:
        raise SRDCInputError(f"unknown variant {variant!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[variant]


def check_variant(variant: str) -> None:
    """Raise :class:`SRDCInputError` unless ``variant`` names a registered method."""
    method_class(variant)


def build_method(config: SRDCConfig, num_classes: int, feature_dims: dict[str, int],
                 device: torch.device) -> Method:
    """The method of ``config.variant``, for ``num_classes`` classes and the network's ``feature_dims``."""
    return method_class(config.variant)(config, num_classes, feature_dims, device)


__all__ = ["METHODS", "Batch", "Draw", "Loss", "Method", "Prepared", "Preparation", "Step", "build_method",
           "check_variant", "method_class", "supervised_loss"]
