"""The classifier's accuracy on the source: its training samples, and the held-out ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from srdc.validators.base import ValidationInput

if TYPE_CHECKING:
    from srdc.model import Features


def source_accuracy(view: ValidationInput) -> float:
    """Accuracy (%) of the classifier on the source samples the preparation pass holds, with their labels (the
    source training set; Musgrave et al. 2022's "source train accuracy"); higher is better. It is the history's
    ``acc_source``. Cost: none beyond the pass."""
    return accuracy(view.source)


def source_val_accuracy(view: ValidationInput) -> float:
    """Accuracy (%) of the classifier on the held-out source samples (``source_val_fraction``; Musgrave et al.
    2022's "source val accuracy", the usual practice of selecting on a source validation split); higher is better.
    Cost: one more pass over the held-out samples."""
    assert view.source_val is not None  # validate() leaves it out without them
    return accuracy(view.source_val)


def accuracy(samples: Features) -> float:
    """Accuracy (%) of the logits' argmax against the labels of ``samples`` (as the trainer computes acc_target)."""
    return float((samples.logits.argmax(dim=1) == samples.labels).float().mean() * 100.0)
