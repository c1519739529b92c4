"""Model selection over a run's epochs, honestly labelled.

* ``acc_last``: the model after the final epoch.
* ``acc_best_oracle``: the epoch with the best target accuracy, measured WITH target labels -- the paper's and
  the released code's protocol (Appendix A item 5). Optimistic: it tunes on the test labels.
* ``acc_labelfree``: the epoch chosen WITHOUT target labels by the run's label-free validator
  (``labelfree_selector``, :mod:`srdc.validators`): by default the information-maximisation validator
  ``H(mean p) - mean H(p)`` on the target training set (``"infomax"``), or the lowest target clustering
  objective, eq. (6) (``"clustering"``; see docs/fidelity_notes.md for why it is not the default).
  ``acc_labelfree_<name>`` / ``labelfree_epoch_<name>`` give the same for every registered validator.

Candidates are the models after each training epoch (epochs 1..E; epoch 0 is the untrained model), or with
``selection_epochs release`` the models the released code evaluates, before each epoch (0..E-1). An epoch
whose value of the selecting key is NaN or infinite is never picked; a history where no candidate has a finite
value is a :class:`srdc.errors.NonFiniteLossError` (the trainer stops a run before such a row is recorded).
In the inductive setting, selection uses the target training half and the reported accuracy is measured on
the held-out target test half (paper Table 2). The released code logs three accuracies there, all three are in the
summary: the test-half accuracy at the epoch of the best training-half accuracy (``acc_best_oracle``; among
epochs of equal training-half accuracy the highest test-half accuracy, ``inductive_oracle_ties release``, or the
earliest epoch's), the best training-half accuracy (``acc_best_target_train``) and the best test-half accuracy
(``acc_best_target_test``, chosen on the reported half itself).
"""

from __future__ import annotations

import math
from typing import Any

from srdc.base import LABELFREE, LAST, ORACLE, SELECTIONS
from srdc.config import ORACLE_TIES, SELECTION_EPOCHS, SRDCConfig
from srdc.errors import NonFiniteLossError
from srdc.validators import VALIDATORS

_BETTER = {"max": max, "min": min}


def reported_accuracy_key(row: dict[str, Any]) -> str:
    """``acc_target_test`` when a held-out target test split exists (inductive), else ``acc_target``."""
    return "acc_target_test" if "acc_target_test" in row else "acc_target"


def _candidates(history: list[dict[str, Any]], epochs: str = SELECTION_EPOCHS[0]) -> list[dict[str, Any]]:
    """The models a selection may pick (``selection_epochs``): ``trained``, those after epochs 1..E; ``release``,
    those before each epoch, 0..E-1. The untrained model alone while nothing has been trained yet."""
    if epochs == "release":
        return history[:-1] or history
    return [row for row in history if row["epoch"] >= 1] or history


def _finite(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The rows whose ``key`` is a finite number; an error naming the key when there is none."""
    finite = [row for row in rows if math.isfinite(row[key])]
    if not finite:
        raise NonFiniteLossError(f"no epoch has a finite {key} (epochs {', '.join(str(r['epoch']) for r in rows)}); "
                                 f"the run diverged: lower --lr and start a new run")
    return finite


def _pick(rows: list[dict[str, Any]], key: str, better: str) -> dict[str, Any]:
    """The first row with the best finite ``key`` (ties go to the earlier epoch)."""
    finite = _finite(rows, key)
    best_value = _BETTER[better](row[key] for row in finite)
    return next(row for row in finite if row[key] == best_value)


def _oracle(rows: list[dict[str, Any]], ties: str) -> dict[str, Any]:
    """The epoch of the best target (training-half) accuracy; in the inductive setting with ``ties`` ``release``,
    among the epochs of that accuracy the one of the highest test-half accuracy (the released code's rule)."""
    best = _pick(rows, "acc_target", "max")
    if ties != "release" or "acc_target_test" not in best:
        return best
    return _pick([row for row in rows if row["acc_target"] == best["acc_target"]], "acc_target_test", "max")


def summarize(history: list[dict[str, Any]], selector: str, epochs: str = SELECTION_EPOCHS[0],
              ties: str = ORACLE_TIES[0]) -> dict[str, Any]:
    """acc_last / acc_best_oracle / acc_labelfree and the epochs they come from, from a run's history; plus
    ``acc_labelfree_<name>`` and ``labelfree_epoch_<name>`` for every registered validator the history holds, and in
    the inductive setting the best training-half and test-half accuracies. ``epochs`` and ``ties``: the run's
    ``selection_epochs`` and ``inductive_oracle_ties`` (module docstring)."""
    candidates = _candidates(history, epochs)
    accuracy = reported_accuracy_key(history[-1])
    oracle = _oracle(candidates, ties)
    selected = VALIDATORS.lookup(selector)
    labelfree = _pick(candidates, selected.metric, selected.better)
    chosen = {LAST: history[-1], ORACLE: oracle, LABELFREE: labelfree}
    summary = {
        **{SELECTIONS[selection].metric: row[accuracy] for selection, row in chosen.items()},
        "best_oracle_epoch": oracle["epoch"],
        "labelfree_epoch": labelfree["epoch"],
        "labelfree_selector": selector,
    }
    if accuracy == "acc_target_test":
        best_test = _pick(candidates, "acc_target_test", "max")
        summary.update(acc_best_target_train=oracle["acc_target"], acc_best_target_test=best_test["acc_target_test"],
                       best_target_test_epoch=best_test["epoch"])
    for name, validator in VALIDATORS.items():
        if all(validator.metric in row for row in candidates):
            row = _pick(candidates, validator.metric, validator.better)
            summary[f"acc_labelfree_{name}"] = row[accuracy]
            summary[f"labelfree_epoch_{name}"] = row["epoch"]
    return summary


def summarize_run(history: list[dict[str, Any]], config: SRDCConfig) -> dict[str, Any]:
    """:func:`summarize` under ``config``'s selection options."""
    return summarize(history, config.labelfree_selector, config.selection_epochs, config.inductive_oracle_ties)


def labelfree_score(history: list[dict[str, Any]], selector: str, epochs: str = SELECTION_EPOCHS[0]) -> float:
    """The best value so far of the selector's validator over the candidate epochs (the value behind
    ``acc_labelfree``), negated when lower is better, so that higher is always better: a search objective."""
    validator = VALIDATORS.lookup(selector)
    rows = _finite(_candidates(history, epochs), validator.metric)
    best = _BETTER[validator.better](row[validator.metric] for row in rows)
    return best if validator.better == "max" else -best


def search_score(history: list[dict[str, Any]], selection: str, config: SRDCConfig) -> float:
    """A run's score under the searched ``selection`` (:data:`srdc.base.SEARCH_SELECTIONS`) after its latest epoch,
    higher is better (a search trial's objective is the mean over its runs): ``oracle``, its ``acc_best_oracle``;
    ``labelfree``, its :func:`labelfree_score`; under ``config``'s selection options."""
    if selection == ORACLE:
        return summarize_run(history, config)[SELECTIONS[ORACLE].metric]
    return labelfree_score(history, config.labelfree_selector, config.selection_epochs)
