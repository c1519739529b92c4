"""Label-free validators: scores of a model computed WITHOUT target labels, used to choose an epoch.

A validator is one module of this package holding its function, with its reference and cost, and one registry entry
(:class:`Validator`): its name (what ``labelfree_selector`` names), the history key it writes (``metric``), whether
higher or lower is better, and the function of what the epoch's preparation pass already holds
(:class:`ValidationInput`), so validating costs no extra pass (but the held-out source samples', where
``source_val_fraction`` keeps some). The trainer computes every registered validator every epoch;
:mod:`srdc.selection` picks an epoch by each. Adding one is one module (its function) and one line
``VALIDATORS["name"] = Validator(...)`` (a :class:`srdc.base.Registry`). The registry imports no torch (``--help``
lists its names); the scores load torch, :mod:`srdc.losses` or scikit-learn when first computed.
"""

from __future__ import annotations

from srdc.base import Registry
from srdc.validators.base import ValidationInput, Validator
from srdc.validators.bnm import batch_nuclear_norm
from srdc.validators.class_cluster import class_cluster_ami
from srdc.validators.clustering import clustering_objective
from srdc.validators.dev import deep_embedded_validation
from srdc.validators.diversity import diversity
from srdc.validators.entropy import entropy
from srdc.validators.infomax import infomax
from srdc.validators.mmd import feature_mmd
from srdc.validators.snd import soft_neighbourhood_density
from srdc.validators.source_accuracy import source_accuracy, source_val_accuracy

__all__ = ["VALIDATORS", "ValidationInput", "Validator", "check_selector", "validate"]

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
