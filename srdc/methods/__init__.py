"""The training methods, keyed by the config's ``variant``.

Adding a method is one module with a :class:`Method` subclass and one line in :data:`METHODS`
(``"name": "srdc.methods.module:Class"``); the trainer, ``srdc-train --variant`` and the studies then accept
``variant="name"``. The registry lists its names without importing a method (``--help`` needs no torch); a method's
module, and the interface of :mod:`srdc.methods.base` re-exported here, load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from srdc.base import Registry
from srdc.config import SRDCConfig
from srdc.errors import SRDCInputError

if TYPE_CHECKING:
    import torch

    from srdc.methods.base import Method

METHODS: Registry[type[Method]] = Registry({
    "source_only": "srdc.methods.source_only:SourceOnly",
    "srdc_no_struct": "srdc.methods.srdc:SRDC",
    "srdc_no_featdisc": "srdc.methods.srdc:SRDC",
    "srdc_no_softsel": "srdc.methods.srdc:SRDC",
    "srdc": "srdc.methods.srdc:SRDC",
    "oracle": "srdc.methods.oracle:Oracle",
    "dann": "srdc.methods.dann:DANN",
    "cdan": "srdc.methods.cdan:CDAN",
})
# the method interface, re-exported from srdc.methods.base on first use (module __getattr__, PEP 562)
INTERFACE = ("Batch", "Draw", "Loss", "Method", "Prepared", "Preparation", "Step", "supervised_loss")


def __getattr__(name: str) -> Any:
    if name in INTERFACE:
        from srdc.methods import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def check_variant(variant: str) -> None:
    """Raise :class:`SRDCInputError` unless ``variant`` names a registered method (imports no method)."""
    if variant not in METHODS:
        raise SRDCInputError(f"unknown variant {variant!r}; choose one of: {', '.join(METHODS)}")


def method_class(variant: str) -> type[Method]:
    """The method registered as ``variant`` (its module imported now); an unknown name is one clear
    :class:`SRDCInputError`."""
    check_variant(variant)
    return METHODS[variant]


def build_method(config: SRDCConfig, num_classes: int, feature_dims: dict[str, int],
                 device: torch.device) -> Method:
    """The method of ``config.variant``, for ``num_classes`` classes and the network's ``feature_dims``."""
    return method_class(config.variant)(config, num_classes, feature_dims, device)


__all__ = ["METHODS", *INTERFACE, "build_method", "check_variant", "method_class"]
