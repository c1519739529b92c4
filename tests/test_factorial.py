"""2^k effects against hand-computed values."""

import itertools
import math

import pytest

from srdc.factorial import (
    Effect,
    block_effects,
    cell_label,
    estimate_effects,
    factorial_tables,
    paper_variant,
    render_effects,
)

FACTORS = ("A", "B")


def cells(y00, y10, y01, y11):
    """Levels are (A, B)."""
    return {(False, False): y00, (True, False): y10, (False, True): y01, (True, True): y11}


def test_two_factor_effects_by_hand():
    # y: (A-,B-)=70, (A+,B-)=80, (A-,B+)=74, (A+,B+)=90
    # main A = ((80-70) + (90-74)) / 2 = 13; main B = ((74-70) + (90-80)) / 2 = 7
    # AB = ((90-74) - (80-70)) / 2 = 3
    effects = block_effects(cells(70, 80, 74, 90), FACTORS)
    assert effects[("A",)] == pytest.approx(13.0)
    assert effects[("B",)] == pytest.approx(7.0)
    assert effects[("A", "B")] == pytest.approx(3.0)


def test_three_factor_main_effect_is_mean_difference():
    names = ("s", "f", "w")
    ys = {(s, f, w): 60 + 10 * s + 4 * f + 1 * w + 2 * (s and f) for s in (0, 1) for f in (0, 1) for w in (0, 1)}
    effects = block_effects({tuple(bool(v) for v in k): y for k, y in ys.items()}, names)
    # s: on-mean minus off-mean = 10 + 2 * P(f) = 11; f: 4 + 2 * P(s) = 5; w: 1; s x f: 2 / 2 * 2 / 2 ... = 1
    assert effects[("s",)] == pytest.approx(11.0)
    assert effects[("f",)] == pytest.approx(5.0)
    assert effects[("w",)] == pytest.approx(1.0)
    assert effects[("s", "f")] == pytest.approx(1.0)
    assert effects[("s", "w")] == pytest.approx(0.0)
    assert effects[("s", "f", "w")] == pytest.approx(0.0)


def test_effects_across_blocks_with_standard_error_and_incomplete_blocks_left_out():
    records = []
    for seed, ys in ((0, (70, 80, 74, 90)), (1, (70, 82, 74, 90)), (2, (70, 78, 74, 90))):
        for (a, b), y in zip(((0, 0), (1, 0), (0, 1), (1, 1)), ys, strict=True):
            records.append({"A": a, "B": b, "acc": y, "task": "t", "seed": seed})
    records.append({"A": 1, "B": 1, "acc": 99.0, "task": "t", "seed": 3})  # incomplete block
    effects = {e.factors: e for e in estimate_effects(records, FACTORS, "acc", ("task", "seed"))}
    # A per block: 13, 14, 12 -> mean 13, sample std 1, stderr 1/sqrt(3)
    assert effects[("A",)].mean == pytest.approx(13.0)
    assert effects[("A",)].stderr == pytest.approx(1 / math.sqrt(3))
    assert effects[("A",)].n_blocks == 3
    # AB per block: 3, 2, 4 -> mean 3
    assert effects[("A", "B")].mean == pytest.approx(3.0)
    assert effects[("A", "B")].name == "A x B"


def test_cells_are_labelled_by_their_switches_and_named_after_the_papers_variants():
    assert [cell_label(levels) for levels in ((True, True, True), (True, True, False), (False, True, False),
                                              (False, True, True))] == \
        ["S+ F+ W+ = srdc", "S+ F+ W- = srdc_no_softsel", "S- F+ W- = srdc_no_struct", "S- F+ W+"]
    assert paper_variant((True, False, True)) == "srdc_no_featdisc" and paper_variant((False, False, False)) is None


def test_the_factorial_table_has_a_row_per_cell_and_the_effects_under_it():
    # y = 60 + 10 S + 4 F + 2 W (W only with S on, as in the trainer), + seed; task x seed blocks 0 and 1
    records = []
    for seed in (0, 1):
        for s, f, w in itertools.product((True, False), repeat=3):
            y = 60 + 10 * s + 4 * f + 2 * (w and s) + seed
            records.append({"dataset": "office31", "task": "A->W", "seed": seed, "status": "FINISHED",
                            "structural_source_reg": s, "feature_discrimination": f, "soft_source_selection": w,
                            "variant": "srdc", "acc_best_oracle": float(y), "acc_labelfree": 0.0, "acc_last": 0.0,
                            "epochs": 20})
    # an incomplete block (seed 2, one cell): in the results table, not in the effects
    records.append({**records[-1], "seed": 2, "acc_best_oracle": 62.0})
    text = factorial_tables(records, "oracle", 3, "f")
    lines = text.splitlines()
    header = lines.index("| switches | A->W | Avg |")
    assert [line.split(" |")[0] for line in lines[header + 2: header + 10]] == [
        "| S+ F+ W+ = srdc", "| S+ F+ W- = srdc_no_softsel", "| S+ F- W+ = srdc_no_featdisc", "| S+ F- W-",
        "| S- F+ W+", "| S- F+ W- = srdc_no_struct", "| S- F- W+", "| S- F- W-"]
    assert "| S+ F+ W+ = srdc | 76.5±0.7 n=2 (SRDC paper 95.7, -19.2) | 76.5 n=2 |" in text  # 2 of 3 planned seeds
    assert "| S- F- W- | 61.0±1.0 | 61.0 |" in text
    # both captions state the budget: the cells' table and the effects'
    assert "after 20 epochs of training, mean±std over 3 seeds per cell" in text
    assert "Main effects and interactions of the 2^3 factorial after 20 epochs of training, in accuracy points" in text
    # S: 10 + 2 * P(W) = 11; W: 2 * P(S) = 1, and S x W the same; seeds shift every cell alike: s.e. 0
    for effect, mean in (("structural_source_reg", "+11.0"), ("feature_discrimination", "+4.0"),
                         ("soft_source_selection", "+1.0"), ("structural_source_reg x soft_source_selection", "+1.0"),
                         ("structural_source_reg x feature_discrimination", "+0.0")):
        assert f"| {effect} | {mean} ± 0.0 | 2 |" in text
    assert "Model selection: oracle = epoch chosen with target labels" in text


def test_effects_render_a_dash_for_one_block_and_a_line_when_no_block_is_complete():
    text = render_effects([Effect(("A",), 2.5, float("nan"), 1)], "T", "C")
    assert "| A | +2.5 ± — | 1 |" in text and text.startswith("**T**") and "*C*" in text
    assert "no task x seed block has all its cells finished yet" in render_effects([], "T", "C")
