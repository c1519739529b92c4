"""The source-only baseline of Table 1: cross-entropy on labelled source batches, every epoch."""

from __future__ import annotations

from srdc.methods.base import Draw, Loss, Step, supervised_loss
from srdc.methods.srdc import SOURCE, SRDC


class SourceOnly(SRDC):
    """Trains on the source alone. Its preparation pass is SRDC's (K-means accuracy, source weights, column
    masses), so its history has the same diagnostics as the SRDC rows it is compared with."""

    reads = ("clustering",)
    training_batchnorm = "source batches"

    def draw(self, epoch: int) -> Draw:
        return SOURCE

    def loss(self, step: Step) -> Loss:
        return supervised_loss(step, step.source)
