"""The classifier's accuracy on the source: its training samples, and the held-out ones."""

from __future__ import annotations

from srdc.validators.base import ValidationInput


def source_accuracy(view: ValidationInput) -> float:
    """Accuracy (%) of the classifier on the source samples the preparation pass holds, with their labels (the
    source training set; Musgrave et al. 2022's "source train accuracy"); higher is better. It is the history's
    ``acc_source``. Cost: none beyond the pass."""
    return float((view.source.logits.argmax(dim=1) == view.source.labels).float().mean() * 100.0)

def source_val_accuracy(view: ValidationInput) -> float:
    """Accuracy (%) of the classifier on the held-out source samples (``source_val_fraction``; Musgrave et al.
    2022's "source val accuracy", the usual practice of selecting on a source validation split); higher is better.
    Cost: one more pass over the held-out samples."""
    assert view.source_val is not None  # validate() leaves it out without them
    return float((view.source_val.logits.argmax(dim=1) == view.source_val.labels).float().mean() * 100.0)
