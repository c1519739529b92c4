"""The oracle of Table 2: the base network fine-tuned on the labelled target training set."""

from __future__ import annotations

from srdc.methods.base import Draw, Loss, Step, supervised_loss
from srdc.methods.srdc import SRDC

ORACLE = Draw("oracle", source=False, target=True)


class Oracle(SRDC):
    """Cross-entropy on labelled target batches (an upper bound: it uses the target labels). Its preparation
    pass is SRDC's, so its history has the same diagnostics as the SRDC rows it is compared with."""

    reads = ("clustering",)
    training_batchnorm = "labelled target batches"

    def draw(self, epoch: int) -> Draw:
        return ORACLE

    def loss(self, step: Step) -> Loss:
        return supervised_loss(step, step.target)
