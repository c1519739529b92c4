"""Model selection over a run's epochs, honestly labelled.

* ``acc_last``: the model after the final epoch.
* ``acc_best_oracle``: the epoch with the best target accuracy, measured WITH target labels -- the paper's and
  the released code's protocol (Appendix A item 5). Optimistic: it tunes on the test labels.
* ``acc_labelfree``: the epoch chosen WITHOUT target labels, by the information-maximisation validator
  ``H(mean p) - mean H(p)`` on the target training set (``labelfree_selector="infomax"``, the default), or
  by the lowest target clustering objective, eq. (6) (``"clustering"``; see docs/fidelity_notes.md for why
  it is not the default).

Candidates are the models after each training epoch (epochs 1..E; epoch 0 is the untrained model).
In the inductive setting, selection uses the target training half and the reported accuracy is measured on
the held-out target test half (paper Table 2).
"""

from __future__ import annotations

from typing import Any

LABELFREE_KEYS = {"infomax": ("infomax", max), "clustering": ("clustering_objective", min)}


def reported_accuracy_key(row: dict[str, Any]) -> str:
    """``acc_target_test`` when a held-out target test split exists (inductive), else ``acc_target``."""
    return "acc_target_test" if "acc_target_test" in row else "acc_target"


def _pick(rows: list[dict[str, Any]], key: str, better: Any) -> dict[str, Any]:
    """The first row with the best ``key`` (ties go to the earlier epoch)."""
    best_value = better(row[key] for row in rows)
    return next(row for row in rows if row[key] == best_value)


def summarize(history: list[dict[str, Any]], selector: str) -> dict[str, Any]:
    """acc_last / acc_best_oracle / acc_labelfree and the epochs they come from, from a run's history."""
    candidates = [row for row in history if row["epoch"] >= 1] or history
    accuracy = reported_accuracy_key(candidates[-1])
    oracle = _pick(candidates, "acc_target", max)
    key, better = LABELFREE_KEYS[selector]
    labelfree = _pick(candidates, key, better)
    return {
        "acc_last": candidates[-1][accuracy],
        "acc_best_oracle": oracle[accuracy],
        "acc_labelfree": labelfree[accuracy],
        "best_oracle_epoch": oracle["epoch"],
        "labelfree_epoch": labelfree["epoch"],
        "labelfree_selector": selector,
    }
