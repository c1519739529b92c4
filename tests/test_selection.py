"""Model selection: oracle (target labels), label-free (infomax / clustering objective) and last; never a
non-finite epoch."""

import math

import pytest

from srdc.base import LABELFREE, ORACLE, SELECTIONS
from srdc.config import SRDCConfig
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


INDUCTIVE_HISTORY = [  # epochs 2 and 4 tie on the training half (80.0); epoch 0, untrained, is the best on the test
    {"epoch": 0, "acc_target": 50.0, "acc_target_test": 95.0, "infomax": 0.0, "clustering_objective": 0.0},
    {"epoch": 1, "acc_target": 70.0, "acc_target_test": 66.0, "infomax": 1.0, "clustering_objective": 0.0},
    {"epoch": 2, "acc_target": 80.0, "acc_target_test": 61.0, "infomax": 3.0, "clustering_objective": 0.0},
    {"epoch": 3, "acc_target": 75.0, "acc_target_test": 72.0, "infomax": 2.0, "clustering_objective": 0.0},
    {"epoch": 4, "acc_target": 80.0, "acc_target_test": 64.0, "infomax": 1.5, "clustering_objective": 0.0},
]


def test_inductive_summaries_hold_the_released_codes_three_accuracies_under_either_tie_rule():
    release = summarize(INDUCTIVE_HISTORY, "infomax", ties="release")
    assert (release["acc_best_oracle"], release["best_oracle_epoch"]) == (64.0, 4)  # the tie's best test half
    earliest = summarize(INDUCTIVE_HISTORY, "infomax", ties="earliest")
    assert (earliest["acc_best_oracle"], earliest["best_oracle_epoch"]) == (61.0, 2)
    for summary in (release, earliest):
        assert summary["acc_best_target_train"] == 80.0
        assert (summary["acc_best_target_test"], summary["best_target_test_epoch"]) == (72.0, 3)
        assert (summary["acc_labelfree"], summary["acc_last"]) == (61.0, 64.0)
    assert summarize(INDUCTIVE_HISTORY, "infomax") == release  # the default: the released code's rule
    assert "acc_best_target_test" not in summarize(HISTORY, "infomax")  # transductive: one target set


def test_the_releases_candidates_are_the_models_before_each_epoch_and_last_stays_the_final_model():
    release = summarize(INDUCTIVE_HISTORY, "infomax", epochs="release")  # epochs 0..3
    assert (release["acc_best_oracle"], release["best_oracle_epoch"]) == (61.0, 2)
    assert (release["acc_best_target_test"], release["best_target_test_epoch"]) == (95.0, 0)
    assert (release["acc_labelfree"], release["labelfree_epoch"]) == (61.0, 2)
    assert release["acc_last"] == 64.0
    assert summarize(HISTORY, "clustering", epochs="release")["labelfree_epoch"] == 0  # -2.3: the untrained model
    assert summarize(HISTORY[:1], "infomax", epochs="release")["best_oracle_epoch"] == 0  # nothing trained yet
    best_last = [*HISTORY[:4], {**HISTORY[4], "infomax": 5.0}]
    assert labelfree_score(best_last, "infomax") == 5.0
    assert labelfree_score(best_last, "infomax", epochs="release") == 2.0  # epoch 4 is no candidate there


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
    assert search_score(history, "labelfree", SRDCConfig()) == 0.5  # epoch 0 (untrained) is no candidate
    clustering = SRDCConfig(labelfree_selector="clustering")
    assert search_score(history, "labelfree", clustering) == -2.0  # lower is better: negated
    assert search_score(history, "oracle", SRDCConfig()) == 80.0


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
