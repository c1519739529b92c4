"""Model selection over a run's epochs, honestly labelled.

* ``acc_last``: the model after the final epoch.
* ``acc_best_oracle``: the epoch with the best target accuracy, measured WITH target labels -- the paper's and
  the released code's protocol (Appendix A item 5). Optimistic: it tunes on the test labels.
* ``acc_labelfree``: the epoch chosen WITHOUT target labels by the run's label-free validator
  (``labelfree_selector``, :mod:`srdc.validators`): by default the information-maximisation validator
  ``H(mean p) - mean H(p)`` on the target training set (``"infomax"``), or the lowest target clustering
  objective, eq. (6) (``"clustering"``; see docs/fidelity_notes.md for why it is not the default).
  ``acc_labelfree_<name>`` / ``labelfree_epoch_<name>`` give the same for every registered validator.

Candidates are the models after each training epoch (epochs 1..E; epoch 0 is the untrained model). An epoch
whose value of the selecting key is NaN or infinite is never picked; a history where no candidate has a finite
value is a :class:`srdc.errors.NonFiniteLossError` (the trainer stops a run before such a row is recorded).
In the inductive setting, selection uses the target training half and the reported accuracy is measured on
the held-out target test half (paper Table 2).
"""

from __future__ import annotations

import math
from typing import Any

from srdc.base import LABELFREE, LAST, ORACLE, SELECTIONS
from srdc.errors import NonFiniteLossError
from srdc.validators import VALIDATORS

_BETTER = {"max": max, "min": min}


def reported_accuracy_key(row: dict[str, Any]) -> str:
    """``acc_target_test`` when a held-out target test split exists (inductive), else ``acc_target``."""
    return "acc_target_test" if "acc_target_test" in row else "acc_target"


def _candidates(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trained models (epochs >= 1); the untrained one only when nothing has been trained yet."""
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


def summarize(history: list[dict[str, Any]], selector: str) -> dict[str, Any]:
    """acc_last / acc_best_oracle / acc_labelfree and the epochs they come from, from a run's history; plus
    ``acc_labelfree_<name>`` and ``labelfree_epoch_<name>`` for every registered validator the history holds."""
    candidates = _candidates(history)
    accuracy = reported_accuracy_key(candidates[-1])
    oracle = _pick(candidates, "acc_target", "max")
    selected = VALIDATORS.lookup(selector)
    labelfree = _pick(candidates, selected.metric, selected.better)
    chosen = {LAST: candidates[-1], ORACLE: oracle, LABELFREE: labelfree}
    summary = {
        **{SELECTIONS[selection].metric: row[accuracy] for selection, row in chosen.items()},
        "best_oracle_epoch": oracle["epoch"],
        "labelfree_epoch": labelfree["epoch"],
        "labelfree_selector": selector,
    }
    for name, validator in VALIDATORS.items():
        if all(validator.metric in row for row in candidates):
            row = _pick(candidates, validator.metric, validator.better)
            summary[f"acc_labelfree_{name}"] = row[accuracy]
            summary[f"labelfree_epoch_{name}"] = row["epoch"]
    return summary


def labelfree_score(history: list[dict[str, Any]], selector: str) -> float:
    """The best value so far of the selector's validator over epochs >= 1 (the value behind ``acc_labelfree``),
    negated when lower is better, so that higher is always better: a search objective."""
    validator = VALIDATORS.lookup(selector)
    best = _BETTER[validator.better](row[validator.metric] for row in _finite(_candidates(history), validator.metric))
    return best if validator.better == "max" else -best


def search_score(history: list[dict[str, Any]], selection: str, selector: str) -> float:
    """A run's score under the searched ``selection`` (:data:`srdc.base.SEARCH_SELECTIONS`) after its latest epoch,
    higher is better (a search trial's objective is the mean over its runs): ``oracle``, its ``acc_best_oracle``;
    ``labelfree``, its :func:`labelfree_score`."""
    if selection == ORACLE:
        return summarize(history, selector)[SELECTIONS[ORACLE].metric]
    return labelfree_score(history, selector)
