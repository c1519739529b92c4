"""A diverged run: the check that every number of an epoch's history row is finite, and what the error says to do.

A run stops with :class:`NonFiniteLossError` before its NaN or infinite epoch is recorded: its history, summary and
last checkpoint stay those of the last finite epoch.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from srdc.config import SRDCConfig
from srdc.errors import NonFiniteLossError


def check_finite(row: dict[str, Any], config: SRDCConfig) -> None:
    """Raise :class:`NonFiniteLossError` naming the first number of the history ``row`` that is NaN or infinite."""
    for key, value in row.items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isfinite(value):
            epoch = row["epoch"]
            if epoch == 0:
                raise NonFiniteLossError(
                    f"{key} is {value} for the untrained model (epoch 0): the inputs or the backbone give "
                    f"non-finite outputs; check the data and --weights"
                )
            raise NonFiniteLossError(f"the run diverged: {key} became {value} at epoch {epoch}; "
                                     f"{diverged_fix(config, epoch - 1)}")


def diverged_fix(config: SRDCConfig, last_finite: int) -> str:
    """What a diverged run's message says to do, and what it keeps."""
    kept = "epoch 0 is" if last_finite == 0 else f"epochs 0..{last_finite} are"
    return (f"lower --lr (now {config.lr}) or --lambda_scale and start a new run; {kept} kept in the history and "
            f"the last checkpoint")
