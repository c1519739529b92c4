"""The schedules of Section 5.1: the learning rate and lambda (the weight of eq. 11's ramped terms) as functions of
the training progress p in [0, 1]."""

from __future__ import annotations

import math

from srdc.config import SRDCConfig


def progress_at(config: SRDCConfig, epoch: int, iteration: int, iterations: int) -> float:
    """The training progress p at ``iteration`` of ``iterations`` in ``epoch`` (0-based): it steps once per epoch
    (``schedule_unit`` ``epoch``, the released code's, p = epoch / epochs) or at every iteration."""
    progress = epoch / config.epochs
    if config.schedule_unit == "iteration":
        progress += iteration / (iterations * config.epochs)
    return progress


def lr_at(config: SRDCConfig, progress: float) -> float:
    """Section 5.1: ``eta_p = eta_0 / (1 + alpha p)^beta``."""
    return config.lr / (1.0 + config.lr_alpha * progress) ** config.lr_beta


def lambda_at(config: SRDCConfig, progress: float) -> float:
    """Section 5.1: ``lambda_p = 2 / (1 + exp(-gamma p)) - 1``, times ``lambda_scale``."""
    return config.lambda_scale * (2.0 / (1.0 + math.exp(-config.lambda_gamma * progress)) - 1.0)
