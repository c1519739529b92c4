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
        "infomax": ("infomax", "max"), "clustering": ("clustering_objective", "min"), "entropy": ("entropy", "min"),
        "diversity": ("diversity", "max"), "bnm": ("bnm", "max"), "snd": ("snd", "max")}
    message = "^unknown labelfree_selector 'vibes'; choose one of: infomax, clustering, entropy, diversity, bnm, snd$"
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


def test_entropy_and_diversity_by_hand():
    probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    scores = validate(view(probs))
    # H(1, 0) = 0, H(.5, .5) = log 2: mean log 2 / 2; the mean prediction (.75, .25)
    assert scores["entropy"] == pytest.approx(math.log(2) / 2)
    assert scores["diversity"] == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert scores["infomax"] == pytest.approx(scores["diversity"] - scores["entropy"])


def test_batch_nuclear_norm_by_hand_and_as_pytorch_adapts_formula():
    # orthogonal rows: the singular values are the rows' norms, 1 and sqrt(.5)
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    assert validate(view(probs))["bnm"] == pytest.approx((1 + math.sqrt(0.5)) / 2)
    logits = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    probs = torch.softmax(logits, dim=1)  # pytorch-adapt: -BNMLoss = ||softmax(x)||_* / N
    assert validate(view(probs))["bnm"] == pytest.approx(float(torch.linalg.norm(probs, "nuc") / len(probs)))
    assert validate(view(torch.full((3, 2), math.nan)))["bnm"] != validate(view(torch.full((3, 2), math.nan)))["bnm"]


def snd_as_pytorch_adapt_tests_it(probs: torch.Tensor, temperature: float) -> float:
    """pytorch-adapt's reference computation in its SNDValidator test, on predictions (after the softmax)."""
    normalised = torch.nn.functional.normalize(probs, dim=1)
    similarity = normalised @ normalised.T
    n = len(similarity)
    similarity = similarity[~torch.eye(n, dtype=torch.bool)].view(n, n - 1)
    neighbours = torch.softmax(similarity / temperature, dim=1)
    return float(-(neighbours * neighbours.log()).sum(dim=1).mean())


def test_soft_neighbourhood_density_by_hand_and_as_pytorch_adapts_test_computes_it(monkeypatch):
    # three identical predictions: each sees its two others equally, the entropy of (1/2, 1/2)
    probs = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    assert validate(view(probs))["snd"] == pytest.approx(math.log(2))
    probs = torch.softmax(torch.randn(50, 5, generator=torch.Generator().manual_seed(1)) * 3, dim=1)
    expected = snd_as_pytorch_adapt_tests_it(probs.double(), 0.05)
    assert validate(view(probs))["snd"] == pytest.approx(expected, rel=1e-9)
    monkeypatch.setattr("srdc.validators.SND_ROWS", 7)  # in blocks of rows: the same number
    assert validate(view(probs))["snd"] == pytest.approx(expected, rel=1e-9)


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
