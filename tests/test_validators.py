"""Label-free validators: the registry, the two built-in scores, and a toy validator added with one line."""

import math

import pytest
import torch
from toys import TOY_VALIDATOR

from srdc import losses
from srdc.config import SRDCConfig
from srdc.errors import SRDCInputError
from srdc.model import Features
from srdc.trainer import Trainer
from srdc.validators import VALIDATORS, ValidationInput, validate

RUN = {"epochs": 3, "batch_size": 32, "max_samples": 200, "device": "cpu"}


def view(probs: torch.Tensor, centres: dict | None = None, features: torch.Tensor | None = None) -> ValidationInput:
    spaces = {"pooled": features if features is not None else torch.zeros(len(probs), 2)}
    target = Features(spaces, probs.log(), torch.zeros(len(probs), dtype=torch.long))
    return ValidationInput(probs, target, target, centres or {}, "paper")


def test_registry_names_metrics_and_directions():
    assert {name: (v.metric, v.better) for name, v in VALIDATORS.items()} == {
        "infomax": ("infomax", "max"), "clustering": ("clustering_objective", "min")}
    message = "^unknown labelfree_selector 'vibes'; choose one of: infomax, clustering$"
    with pytest.raises(SRDCInputError, match=message):
        VALIDATORS.check("vibes")
    with pytest.raises(SRDCInputError, match=message):
        VALIDATORS.lookup("vibes")
    assert VALIDATORS.lookup("clustering").metric == "clustering_objective"


def test_infomax_is_log_k_for_confident_balanced_predictions_and_zero_for_uniform_ones():
    confident = torch.eye(4)
    uniform = torch.full((4, 4), 0.25)
    assert validate(view(confident))["infomax"] == pytest.approx(math.log(4))
    assert validate(view(uniform))["infomax"] == pytest.approx(0.0, abs=1e-6)


def test_clustering_objective_adds_one_term_per_feature_space_with_centres():
    probs = torch.tensor([[0.7, 0.3], [0.2, 0.8], [0.6, 0.4]])
    output_term = float(losses.clustering_objective(losses.auxiliary_distribution(probs), probs))
    assert validate(view(probs))["clustering_objective"] == pytest.approx(output_term)
    features = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.5, 0.0]])
    centres = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    p_feature = losses.soft_assignment(features, centres)
    feature_term = float(losses.clustering_objective(losses.auxiliary_distribution(p_feature), p_feature))
    with_centres = validate(view(probs, {"pooled": centres}, features))["clustering_objective"]
    assert with_centres == pytest.approx(output_term + feature_term)


def test_a_toy_validator_registered_with_one_line_is_recorded_and_selects(monkeypatch):
    monkeypatch.setitem(VALIDATORS, "toy", TOY_VALIDATOR)
    trainer = Trainer(SRDCConfig(**RUN, labelfree_selector="toy"))
    summary = trainer.fit()
    scores = [row["toy_confidence"] for row in trainer.history]
    # the recorded value is the mean max-probability of the model the pass evaluated
    probs = torch.softmax(trainer.extract(trainer.task.target).logits, dim=1)
    assert scores[-1] == float(probs.max(dim=1).values.mean())
    best = max(range(1, len(scores)), key=lambda epoch: (scores[epoch], -epoch))
    assert summary["labelfree_epoch_toy"] == summary["labelfree_epoch"] == best
    assert summary["acc_labelfree_toy"] == summary["acc_labelfree"] == trainer.history[best]["acc_target"]
    assert summary["labelfree_selector"] == "toy"
    # the built-in validators are still recorded and summarised from the same pass
    assert summary["labelfree_epoch_infomax"] == max(
        range(1, len(scores)), key=lambda epoch: (trainer.history[epoch]["infomax"], -epoch))
    assert "acc_labelfree_clustering" in summary
