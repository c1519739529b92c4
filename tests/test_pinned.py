"""Refactors change no number: runs recorded with the code before the Method/validator split, replayed exactly.

``data/pinned_smoke_ablation.json`` holds, for each trial of the smoke ablation (``studies/ablation_office31.py
--smoke-test --tasks A->W D->A --seeds 0``) and a few runs covering the other code paths (oracle, the paper-text
options, inductive, one feature space, a factorial override), its full config, every non-timing history value
and the three accuracies; on a machine other than the one it was recorded on, the baseline code is replayed
first (:mod:`pinned`).
"""

import pytest
import torch
from pinned import LEGACY, PINNED, assert_history_matches, reference

from srdc.config import SRDCConfig
from srdc.trainer import TIMING_KEYS, Trainer


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The pinned trials as the baseline code computes them on this machine."""
    return reference(tmp_path_factory.mktemp("baseline"))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_record_covers_every_paper_variant_and_the_selectors():
    assert {trial["config"]["variant"] for trial in PINNED} == {
        "source_only", "srdc_no_struct", "srdc_no_featdisc", "srdc_no_softsel", "srdc", "oracle"}
    assert {trial["config"]["labelfree_selector"] for trial in PINNED} == {"infomax", "clustering"}


def test_the_comparison_ignores_a_new_history_key_and_fails_on_a_changed_or_missing_one():
    recorded = [{"epoch": 0, "acc_target": 50.0, "loss_total": 1.5}]
    assert_history_matches([{**recorded[0], "new_key": 1.0}], recorded)
    for changed in ({**recorded[0], "acc_target": 50.000001}, {"epoch": 0, "acc_target": 50.0}):
        with pytest.raises(AssertionError):
            assert_history_matches([changed], recorded)
    with pytest.raises(AssertionError):
        assert_history_matches([], recorded)


@pytest.mark.integration  # the baseline's replay is a process of its own
@pytest.mark.parametrize("index", range(len(PINNED)), ids=[f"{t['name']}-{t['config']['variant']}" for t in PINNED])
def test_history_and_accuracies_are_exactly_the_pinned_ones(index, baseline, one_thread):
    trial = baseline[index]
    trainer = Trainer(SRDCConfig.from_dict({**LEGACY, **trial["config"], "device": "cpu"}))
    summary = trainer.fit()
    history = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in trainer.history]
    assert_history_matches(history, trial["history"], trial["name"])
    for key in ("acc_last", "acc_best_oracle", "acc_labelfree"):
        assert summary[key] == trial[key], key
