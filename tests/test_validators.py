"""Label-free validators: the registry, the two built-in scores, and a toy validator added with one line."""

import math

import numpy as np
import pytest
import torch
from toys import TOY_VALIDATOR

from srdc import losses
from srdc.config import SRDCConfig
from srdc.errors import SRDCInputError
from srdc.model import Features
from srdc.trainer import Trainer
from srdc.validators import VALIDATORS, ValidationInput, validate
from srdc.validators.dev import dev_risk

RUN = {"epochs": 3, "batch_size": 32, "max_samples": 200, "device": "cpu"}


def view(probs: torch.Tensor, centres: dict | None = None, features: torch.Tensor | None = None) -> ValidationInput:
    spaces = {"pooled": features if features is not None else torch.zeros(len(probs), 2)}
    target = Features(spaces, probs.log(), torch.zeros(len(probs), dtype=torch.long))
    return ValidationInput(probs, target, target, centres or {}, "paper")


def test_registry_names_metrics_and_directions():
    assert {name: (v.metric, v.better) for name, v in VALIDATORS.items()} == {
        "infomax": ("infomax", "max"), "clustering": ("clustering_objective", "min"), "entropy": ("entropy", "min"),
        "diversity": ("diversity", "max"), "bnm": ("bnm", "max"), "snd": ("snd", "max"),
        "class_ami": ("class_ami", "max"), "mmd": ("mmd", "min"), "source_accuracy": ("acc_source", "max"),
        "source_val_accuracy": ("acc_source_val", "max"), "dev": ("dev", "min")}
    message = ("^unknown labelfree_selector 'vibes'; choose one of: infomax, clustering, entropy, diversity, bnm, snd, "
               "class_ami, mmd, source_accuracy, source_val_accuracy, dev$")
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
    assert validate(view(probs))["snd"] == pytest.approx(expected, rel=1e-5)  # float32 against float64
    monkeypatch.setattr("srdc.validators.snd.SND_ROWS", 7)  # in blocks of rows: the same number
    assert validate(view(probs))["snd"] == pytest.approx(expected, rel=1e-5)


def two_domains(source: torch.Tensor, target: torch.Tensor, probs: torch.Tensor | None = None,
                source_logits: torch.Tensor | None = None,
                source_labels: torch.Tensor | None = None) -> ValidationInput:
    """A view with pooled features of both domains (target predictions uniform unless given)."""
    probs = probs if probs is not None else torch.full((len(target), 2), 0.5)
    logits = source_logits if source_logits is not None else torch.zeros(len(source), 2)
    labels = source_labels if source_labels is not None else torch.zeros(len(source), dtype=torch.long)
    source_view = Features({"pooled": source}, logits, labels)
    target_view = Features({"pooled": target}, probs.log(), torch.full((len(target),), -1))  # no target label read
    return ValidationInput(probs, target_view, source_view, {}, "paper")


def test_class_cluster_ami_by_hand_and_as_scikit_learn_scores_the_refined_clusters():
    # two tight groups of features; the predictions split them right (AMI 1) or put one point of the first group
    # in the second class: K-means from those classes' centres moves it back, and the AMI of the two labellings
    # is scikit-learn's
    from sklearn.metrics import adjusted_mutual_info_score

    features = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0], [5.0, 5.1]])
    right = torch.tensor([[0.9, 0.1]] * 3 + [[0.1, 0.9]] * 3)
    assert validate(two_domains(features, features, right))["class_ami"] == pytest.approx(1.0)
    wrong = right.clone()
    wrong[2] = torch.tensor([0.1, 0.9])
    expected = adjusted_mutual_info_score([0, 0, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1])
    assert validate(two_domains(features, features, wrong))["class_ami"] == pytest.approx(expected)
    assert expected < 1.0


def test_feature_mmd_by_hand():
    same = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    assert validate(two_domains(same, same))["mmd"] == pytest.approx(0.0, abs=1e-12)
    zeros = torch.zeros(3, 4)  # a dead network's identical features: 0, not NaN
    assert validate(two_domains(zeros, zeros))["mmd"] == 0.0
    # one point each at squared distance 4: the pooled sample's mean squared distance over its 2 ordered pairs is 4,
    # MMD^2 = k(x,x) + k(y,y) - 2 k(x,y) with k the mean of exp(-4 / (4 2^p)), p = -2..2
    x, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 0.0]])
    cross = sum(math.exp(-1 / 2.0 ** power) for power in range(-2, 3)) / 5
    assert validate(two_domains(x, y))["mmd"] == pytest.approx(2 - 2 * cross)


def test_feature_mmd_takes_evenly_spaced_samples_beyond_its_limit(monkeypatch):
    source = torch.arange(10.0).unsqueeze(1)
    target = source + 3
    monkeypatch.setattr("srdc.validators.mmd.MMD_POINTS", 4)
    limited = validate(two_domains(source, target))["mmd"]
    chosen = torch.tensor([0, 3, 6, 9])  # linspace(0, 9, 4) rounded
    monkeypatch.setattr("srdc.validators.mmd.MMD_POINTS", 100)
    assert limited == pytest.approx(validate(two_domains(source[chosen], target[chosen]))["mmd"])


def test_source_accuracy_is_the_histories_acc_source_in_percent():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 5.0]])
    labels = torch.tensor([0, 1, 1, 1])
    scores = validate(two_domains(torch.zeros(4, 2), torch.zeros(2, 2), source_logits=logits, source_labels=labels))
    assert scores["acc_source"] == pytest.approx(75.0)


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


def test_a_held_out_source_split_keeps_a_share_of_each_class_out_of_training_and_scores_the_model_on_it():
    config = SRDCConfig(**RUN, source_val_fraction=0.25, labelfree_selector="source_val_accuracy")
    whole = Trainer(SRDCConfig(**RUN)).task.source
    trainer = Trainer(config)
    train, held_out = trainer.task.source, trainer.task.source_val
    assert len(train) + len(held_out) == len(whole)
    for label in np.unique(whole.labels):  # about a quarter of each class, stratified
        total = int((whole.labels == label).sum())
        assert int((held_out.labels == label).sum()) == total - round(0.75 * total)
    again = Trainer(config).task
    assert np.array_equal(again.source_val.labels, held_out.labels)  # seeded by split_seed
    summary = trainer.fit()
    last = trainer.history[-1]
    predictions = trainer.extract(held_out).logits.argmax(dim=1)
    assert last["acc_source_val"] == float((predictions == torch.as_tensor(held_out.labels)).float().mean() * 100.0)
    assert summary["labelfree_selector"] == "source_val_accuracy"
    assert summary["acc_labelfree_source_val_accuracy"] == summary["acc_labelfree"]


def test_without_a_held_out_split_its_validator_has_no_value_and_cannot_select():
    scores = validate(view(torch.eye(3)))
    assert "acc_source_val" not in scores and "dev" not in scores
    with pytest.raises(SRDCInputError, match="^labelfree_selector source_val_accuracy scores held-out source samples: "
                                             "set --source_val_fraction"):
        Trainer(SRDCConfig(**RUN, labelfree_selector="source_val_accuracy"))


def test_dev_risk_by_hand():
    # weights that do not vary: no control variate, the mean loss
    assert dev_risk(torch.tensor([1.0, 2.0, 3.0]), torch.ones(3)) == pytest.approx(2.0)
    # wL = (2, 0): mean 1; w = (1, 3): mean 2, Var 2, Cov(wL, w) = -2, eta = 1: 1 + 1 * 2 - 1
    assert dev_risk(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 3.0])) == pytest.approx(2.0)


def test_dev_weighs_the_held_out_losses_about_equally_when_the_domains_cannot_be_told_apart():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(400, 6, generator=generator)
    held_out = Features({"pooled": torch.randn(50, 6, generator=generator)},
                        torch.randn(50, 3, generator=generator), torch.randint(0, 3, (50,), generator=generator))
    same = Features({"pooled": features}, torch.zeros(400, 3), torch.zeros(400, dtype=torch.long))
    scores = validate(ValidationInput(torch.full((400, 3), 1 / 3), same, same, {}, "paper", held_out))
    mean_loss = float(torch.nn.functional.cross_entropy(held_out.logits, held_out.labels))
    assert scores["dev"] == pytest.approx(mean_loss, rel=0.02)
    assert scores["acc_source_val"] == float((held_out.logits.argmax(1) == held_out.labels).float().mean() * 100)
