"""The training methods, keyed by the config's ``variant``, and the variants' tables: the paper's rows and the
switches each sets.

Adding a method is one module with a :class:`Method` subclass and one line in :data:`METHODS`
(``"name": "srdc.methods.module:Class"``, or ``METHODS["name"] = Class``); the trainer, ``srdc-train --variant`` and
the studies then accept ``variant="name"``. A method names the option groups it reads beyond the common ones
(``Method.reads``), and may declare options of its own (``Method.options``, a dataclass of
:func:`srdc.config.option` fields): registering it makes them config fields everywhere (``srdc-train --help`` under
their group, ``--set``, a ``param_space``, the trial's MLflow params, the resume identity). The registry lists its
names without importing a method (``--help`` needs no torch); a method's module, and the interface of
:mod:`srdc.methods.base` re-exported here, load on first use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from srdc.base import Registry
from srdc.config import COMMON_GROUPS, SRDCConfig, add_options, declared_options, options_in, remove_options

if TYPE_CHECKING:
    import torch

    from srdc.methods.base import Method


class MethodRegistry(Registry["type[Method]"]):
    """The methods by variant name; a method set directly whose class declares ``options`` adds them to the config
    fields (and removing it removes them)."""

    def __setitem__(self, name: str, method: type[Method]) -> None:
        if name in self:
            del self[name]
        if method.options is not None:
            add_options(method.options, (method.options.__doc__ or method.__name__).strip().splitlines()[0])
        super().__setitem__(name, method)

    def __delitem__(self, name: str) -> None:
        loaded = self.loaded(name)
        if loaded is not None and loaded.options is not None:
            remove_options(loaded.options)
        super().__delitem__(name)


METHODS = MethodRegistry("variant", {
    "source_only": "srdc.methods.source_only:SourceOnly",
    "srdc_no_struct": "srdc.methods.srdc:SRDC",
    "srdc_no_featdisc": "srdc.methods.srdc:SRDC",
    "srdc_no_softsel": "srdc.methods.srdc:SRDC",
    "srdc": "srdc.methods.srdc:SRDC",
    "oracle": "srdc.methods.oracle:Oracle",
    "adabn": "srdc.methods.adabn:AdaBN",
    "dann": "srdc.methods.dann:DANN",
    "cdan": "srdc.methods.cdan:CDAN",
})
# the paper's variants, in the order of its Table 1 (reports and studies list them so)
VARIANTS = ("source_only", "srdc_no_struct", "srdc_no_featdisc", "srdc_no_softsel", "srdc", "oracle")
# other methods, run through the same method seam: AdaBN (the source model with per-domain BatchNorm statistics) and
# those of the paper's comparison tables, DANN [16] and CDAN+E [35]
BASELINES = ("adabn", "dann", "cdan")


@dataclass(frozen=True)
class Switches:
    """SRDC's components a run uses: the variant's (:data:`VARIANT_SWITCHES`), each overridden by its config field
    when set (the full factorial); ``pretrain_epochs``: source-only epochs before target clustering."""

    structural_source_reg: bool
    feature_discrimination: bool
    soft_source_selection: bool
    target_clustering: bool
    pretrain_epochs: int


# variant -> (structural_source_reg, feature_discrimination, soft_source_selection, target_clustering); a variant
# outside the paper's (a method added to the registry) has none of SRDC's components unless set
VARIANT_SWITCHES: dict[str, tuple[bool, bool, bool, bool]] = {
    "source_only": (True, False, False, False),
    "adabn": (True, False, False, False),  # source-only training
    "srdc_no_struct": (False, True, False, True),
    "srdc_no_featdisc": (True, False, True, True),
    "srdc_no_softsel": (True, True, False, True),
    "srdc": (True, True, True, True),
    "oracle": (False, False, False, False),
}
NO_SWITCHES = (False, False, False, False)


def switches(config: SRDCConfig) -> Switches:
    """The components ``config`` runs with. Source pre-training: ``source_pretrain_epochs`` when set (at most all
    epochs but one); unset, a tenth of the epochs (at least 1) without structural source regularisation (variant
    ``srdc_no_struct``, or the switch turned off in a factorial), none with it (the paper's SRDC); none without
    target clustering."""
    struct, featdisc, softsel, clustering = VARIANT_SWITCHES.get(config.variant, NO_SWITCHES)
    struct = struct if config.structural_source_reg is None else config.structural_source_reg
    featdisc = featdisc if config.feature_discrimination is None else config.feature_discrimination
    softsel = softsel if config.soft_source_selection is None else config.soft_source_selection
    if not clustering:
        pretrain = 0
    elif config.source_pretrain_epochs is not None:
        pretrain = min(config.source_pretrain_epochs, config.epochs - 1)
    else:
        pretrain = 0 if struct else max(1, config.epochs // 10)
    return Switches(struct, featdisc, softsel, clustering, pretrain)


def tracked_fields(variant: str) -> list[str]:
    """The config fields a ``variant`` run reads, in declaration order: the common groups' and those of the groups
    its method names and declares (imports the method)."""
    method = METHODS.lookup(variant)
    own = [declared.group for declared in declared_options(method.options).values()] if method.options else []
    return options_in((*COMMON_GROUPS, *method.reads, *own))


# the method interface, re-exported from srdc.methods.base on first use (module __getattr__, PEP 562)
INTERFACE = ("Batch", "Draw", "Loss", "Method", "Prepared", "Preparation", "Step", "supervised_loss")


def __getattr__(name: str) -> Any:
    if name in INTERFACE:
        from srdc.methods import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_method(config: SRDCConfig, num_classes: int, feature_dims: dict[str, int],
                 device: torch.device) -> Method:
    """The method of ``config.variant``, for ``num_classes`` classes and the network's ``feature_dims``."""
    return METHODS.lookup(config.variant)(config, num_classes, feature_dims, device)


__all__ = ["BASELINES", "METHODS", "VARIANTS", "VARIANT_SWITCHES", *INTERFACE, "Switches", "build_method", "switches",
           "tracked_fields"]
