"""Refactors change no number: runs recorded with the code before the Method/validator split, replayed exactly.

``data/pinned_smoke_ablation.json`` holds, for each trial of the smoke ablation (``studies/ablation_office31.py
--smoke-test --tasks A->W D->A --seeds 0``) and a few runs covering the other code paths (oracle, the paper-text
options, inductive, one feature space, a factorial override), its full config, every non-timing history value
and the three accuracies, recorded on CPU with one thread (git 9bb66b4).
"""

import json
from pathlib import Path

import pytest
import torch

from srdc.config import SRDCConfig
from srdc.trainer import TIMING_KEYS, Trainer

PINNED = json.loads((Path(__file__).parent / "data" / "pinned_smoke_ablation.json").read_text())["trials"]


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


@pytest.mark.parametrize("trial", PINNED, ids=[f"{t['name']}-{t['config']['variant']}" for t in PINNED])
def test_history_and_accuracies_are_exactly_the_pinned_ones(trial, one_thread):
    trainer = Trainer(SRDCConfig.from_dict({**trial["config"], "device": "cpu"}))
    summary = trainer.fit()
    history = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in trainer.history]
    assert len(history) == len(trial["history"])
    for got, pinned in zip(history, trial["history"], strict=True):
        assert got == pinned, {k: (got.get(k), v) for k, v in pinned.items() if got.get(k) != v}
    for key in ("acc_last", "acc_best_oracle", "acc_labelfree"):
        assert summary[key] == trial[key], key
