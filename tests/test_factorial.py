"""2^k effects against hand-computed values."""

import math

import pytest

from srdc.factorial import block_effects, estimate_effects

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
