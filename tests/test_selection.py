"""Model selection: oracle (target labels), label-free (infomax / clustering objective) and last; never a
non-finite epoch."""

import math

import pytest

from srdc.base import LABELFREE, ORACLE, SELECTIONS
from srdc.errors import NonFiniteLossError, SRDCInputError
from srdc.selection import labelfree_score, search_score, summarize
from srdc.validators import VALIDATORS, Validator

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


def test_every_registered_validator_in_the_history_gets_its_own_selection():
    summary = summarize(HISTORY, "infomax")
    assert {selection.metric for selection in SELECTIONS.values()} <= set(summary)
    assert (summary["acc_labelfree_infomax"], summary["labelfree_epoch_infomax"]) == (75.0, 3)
    assert (summary["acc_labelfree_clustering"], summary["labelfree_epoch_clustering"]) == (80.0, 2)
    without_clustering = [{k: v for k, v in row.items() if k != "clustering_objective"} for row in HISTORY]
    assert "acc_labelfree_clustering" not in summarize(without_clustering, "infomax")


def test_a_registered_validator_selects_by_its_direction(monkeypatch):
    history = [{**row, "spread": spread} for row, spread in zip(HISTORY, [0.0, 0.3, 0.9, 0.1, 0.1], strict=True)]
    monkeypatch.setitem(VALIDATORS, "spread", Validator("spread", "spread", "min", lambda view: 0.0))
    summary = summarize(history, "spread")
    assert (summary["acc_labelfree"], summary["labelfree_epoch"]) == (75.0, 3)  # lowest after epoch 0; tie -> 3
    assert (summary["acc_labelfree_spread"], summary["labelfree_epoch_spread"]) == (75.0, 3)
    assert labelfree_score(history, "spread") == -0.1


def test_labelfree_score_is_the_best_validator_value_so_far_higher_is_better():
    assert labelfree_score(HISTORY, "infomax") == 2.0
    assert labelfree_score(HISTORY[:3], "infomax") == 1.5  # so far: epochs 1..2
    assert labelfree_score(HISTORY, "clustering") == 2.0  # lowest -2.0 (epoch 0 is no candidate), negated
    assert labelfree_score(HISTORY[:1], "infomax") == 0.0  # only the untrained model so far


def test_the_search_scores_read_the_history_as_the_epoch_selections_do():
    history = [{"epoch": 0, "infomax": 0.9, "clustering_objective": 0.1, "acc_target": 95.0},
               {"epoch": 1, "infomax": 0.2, "clustering_objective": 3.0, "acc_target": 80.0},
               {"epoch": 2, "infomax": 0.5, "clustering_objective": 2.0, "acc_target": 30.0}]
    assert search_score(history, "labelfree", "infomax") == 0.5  # epoch 0 (untrained) is no candidate
    assert search_score(history, "labelfree", "clustering") == -2.0  # lower is better: negated
    assert search_score(history, "oracle", "infomax") == 80.0


def test_unknown_selector_is_one_clear_error():
    with pytest.raises(SRDCInputError, match="unknown labelfree_selector 'vibes'"):
        summarize(HISTORY, "vibes")
    with pytest.raises(SRDCInputError, match="choose one of: infomax, clustering"):
        labelfree_score(HISTORY, "vibes")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("position", [1, 2])
def test_a_non_finite_epoch_is_never_selected(bad, position):
    history = [dict(row) for row in HISTORY]
    for key in ("acc_target", "infomax", "clustering_objective"):
        history[position][key] = bad  # first (1) or in the middle (2): max() of a NaN depends on its place
    summary = summarize(history, "infomax")
    assert summary["best_oracle_epoch"] not in (position, None) and summary["labelfree_epoch"] != position
    assert summary["labelfree_epoch_clustering"] != position
    assert all(math.isfinite(summary[SELECTIONS[selection].metric]) for selection in (ORACLE, LABELFREE))
    assert math.isfinite(labelfree_score(history, "infomax")) and math.isfinite(labelfree_score(history, "clustering"))


def test_a_history_without_a_finite_candidate_is_one_clear_error():
    history = [HISTORY[0], {**HISTORY[1], "infomax": math.nan}]
    with pytest.raises(NonFiniteLossError, match="no epoch has a finite infomax"):
        summarize(history, "infomax")
    with pytest.raises(NonFiniteLossError, match="no epoch has a finite infomax"):
        labelfree_score(history, "infomax")
