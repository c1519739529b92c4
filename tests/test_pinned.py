"""Refactors change no number: runs recorded with the code before the Method/validator split, replayed exactly.

``data/pinned_smoke_ablation.json`` holds, for each trial of the smoke ablation (``studies/ablation_office31.py
--smoke-test --tasks A->W D->A --seeds 0``) and a few runs covering the other code paths (oracle, the paper-text
options, inductive, one feature space, a factorial override), its full config, every non-timing history value
and the three accuracies; on a machine other than the one it was recorded on, the baseline code is replayed
first (:mod:`pinned`).
"""

import pytest
import torch
from pinned import LEGACY, PINNED, reference

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


@pytest.mark.parametrize("index", range(len(PINNED)), ids=[f"{t['name']}-{t['config']['variant']}" for t in PINNED])
def test_history_and_accuracies_are_exactly_the_pinned_ones(index, baseline, one_thread):
    trial = baseline[index]
    trainer = Trainer(SRDCConfig.from_dict({**LEGACY, **trial["config"], "device": "cpu"}))
    summary = trainer.fit()
    history = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in trainer.history]
    assert len(history) == len(trial["history"])
    for got, pinned in zip(history, trial["history"], strict=True):
        assert got == pinned, {k: (got.get(k), v) for k, v in pinned.items() if got.get(k) != v}
    for key in ("acc_last", "acc_best_oracle", "acc_labelfree"):
        assert summary[key] == trial[key], key
