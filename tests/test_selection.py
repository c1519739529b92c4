"""Model selection: oracle (target labels), label-free (infomax / clustering objective) and last."""

import pytest

from srdc.selection import summarize

HISTORY = [
    {"epoch": 0, "acc_target": 95.0, "infomax": 0.0, "clustering_objective": -2.3},
    {"epoch": 1, "acc_target": 60.0, "infomax": 1.0, "clustering_objective": -1.0},
    {"epoch": 2, "acc_target": 80.0, "infomax": 1.5, "clustering_objective": -2.0},
    {"epoch": 3, "acc_target": 75.0, "infomax": 2.0, "clustering_objective": -1.5},
    {"epoch": 4, "acc_target": 80.0, "infomax": 1.9, "clustering_objective": -1.2},
]


def test_oracle_labelfree_and_last_pick_their_epochs():
    summary = summarize(HISTORY, "infomax")
    assert summary["acc_last"] == 80.0
    assert (summary["acc_best_oracle"], summary["best_oracle_epoch"]) == (80.0, 2)  # tie -> earlier epoch
    assert (summary["acc_labelfree"], summary["labelfree_epoch"]) == (75.0, 3)
    assert summary["labelfree_selector"] == "infomax"


def test_untrained_epoch_zero_is_never_selected():
    assert summarize(HISTORY, "clustering")["labelfree_epoch"] == 2
    assert summarize(HISTORY, "infomax")["best_oracle_epoch"] != 0


def test_inductive_selects_on_target_train_and_reports_target_test():
    history = [
        {"epoch": 1, "acc_target": 70.0, "acc_target_test": 65.0, "infomax": 2.0, "clustering_objective": 0.0},
        {"epoch": 2, "acc_target": 90.0, "acc_target_test": 60.0, "infomax": 1.0, "clustering_objective": 0.0},
    ]
    summary = summarize(history, "infomax")
    assert summary["acc_best_oracle"] == pytest.approx(60.0)  # chosen by train accuracy, reported on test
    assert summary["acc_labelfree"] == pytest.approx(65.0)
    assert summary["acc_last"] == pytest.approx(60.0)
