"""The method registry and seam: the paper's variants, one clear error for an unknown one, and a toy method
added with one registry line, trained by the generic Trainer."""


import numpy as np
import pytest
import torch
from conftest import roundtrip, without_timings
from toys import TOY_ITERATIONS, ToyMethod

from srdc import losses
from srdc.config import SRDCConfig
from srdc.data import load_task
from srdc.errors import SRDCInputError
from srdc.methods import BASELINES, METHODS, VARIANTS, Preparation, build_method
from srdc.methods.oracle import Oracle
from srdc.methods.source_only import SourceOnly
from srdc.methods.srdc import SRDC
from srdc.model import Features
from srdc.schedules import lr_at
from srdc.trainer import Trainer

TOY = {"variant": "toy", "epochs": 2, "batch_size": 32, "max_samples": 200, "device": "cpu"}


def test_registry_holds_the_paper_variants_in_table_order_then_the_baselines():
    assert list(METHODS) == [*VARIANTS, *BASELINES]
    assert METHODS.lookup("source_only") is SourceOnly and METHODS.lookup("oracle") is Oracle
    assert all(METHODS.lookup(v) is SRDC for v in ("srdc", "srdc_no_struct", "srdc_no_featdisc", "srdc_no_softsel"))


def test_unknown_variant_is_one_line_naming_the_known_ones():
    with pytest.raises(SRDCInputError) as error:
        METHODS.check("magic")
    message = str(error.value)
    assert "\n" not in message
    assert message == ("unknown variant 'magic'; choose one of: source_only, srdc_no_struct, srdc_no_featdisc, "
                       "srdc_no_softsel, srdc, oracle, adabn, dann, cdan")
    assert METHODS.check("srdc") == "srdc"
    with pytest.raises(SRDCInputError, match="^unknown variant 'magic'; choose one of: source_only, .*, cdan$"):
        METHODS.lookup("magic")


def test_draws_follow_the_variant_and_its_pretraining():
    dims = {"pooled": 8, "bottleneck": 4}
    cpu = torch.device("cpu")

    def draws(**values):
        method = build_method(SRDCConfig(epochs=4, **values), 3, dims, cpu)
        return [(d.phase, d.source, d.target) for d in map(method.draw, range(4))]

    assert draws(variant="srdc") == [("adapt", True, True)] * 4
    assert draws(variant="srdc_no_struct", source_pretrain_epochs=2) == \
        [("source", True, False)] * 2 + [("adapt", True, True)] * 2
    assert draws(variant="source_only") == [("source", True, False)] * 4
    assert draws(variant="oracle") == [("oracle", False, True)] * 4


def test_srdc_owns_one_centre_set_per_feature_space_with_feature_discrimination():
    dims = {"pooled": 8, "bottleneck": 4}
    srdc = build_method(SRDCConfig(centres_lr_mult=0.5), 3, dims, torch.device("cpu"))
    assert {s: tuple(mu.shape) for s, mu in srdc.centres.mu.items()} == {"pooled": (3, 8), "bottleneck": (3, 4)}
    (group,) = srdc.parameter_groups()
    assert group["lr_mult"] == 0.5 and len(group["params"]) == 2
    no_featdisc = build_method(SRDCConfig(variant="srdc_no_featdisc"), 3, dims, torch.device("cpu"))
    assert no_featdisc.parameter_groups()[0]["params"] == [] and no_featdisc.state_dict()["centres"] == {}


def two_blobs(offset: float, labels: list[int]) -> Features:
    """Class k at (4k + offset, 0) (+- 0.5 along y) in both spaces; logits that predict the class."""
    y = torch.tensor(labels)
    points = torch.stack([4.0 * y + offset, torch.tensor([0.5, -0.5] * (len(labels) // 2))], dim=1)
    return Features({"pooled": points, "bottleneck": points * 2}, torch.nn.functional.one_hot(y, 2).float() * 3, y)


def preparation(epoch: int) -> Preparation:
    source, target = two_blobs(0.0, [0, 0, 1, 1, 1, 1]), two_blobs(1.0, [0, 0, 0, 0, 1, 1])
    return Preparation(epoch, 2, source, target, torch.softmax(target.logits, dim=1))


def test_srdc_preparation_gives_mu_weights_and_column_masses():
    srdc = build_method(SRDCConfig(), 2, {"pooled": 2, "bottleneck": 2}, torch.device("cpu"))
    first = srdc.prepare(preparation(0))
    source_means = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    target_centres = torch.tensor([[1.0, 0.0], [5.0, 0.0]])  # K-means from the source means finds the blobs
    assert torch.allclose(first.plan.target_centres["pooled"], target_centres)
    assert torch.allclose(first.plan.mu["pooled"], 0.5 * (source_means + target_centres))  # (c_s + c_t) / 2
    assert torch.allclose(first.plan.mu["bottleneck"], source_means + target_centres)
    assert first.plan.kmeans_labels["pooled"].tolist() == [0, 0, 0, 0, 1, 1]
    assert first.metrics["acc_kmeans_pooled"] == first.metrics["acc_kmeans_bottleneck"] == 100.0
    assert torch.equal(first.plan.source_weights, torch.ones(6))  # Algorithm 1: w = 1 in the first epoch
    assert first.metrics["source_weight_min"] == 1.0
    for space in ("output", "pooled", "bottleneck"):  # eq. (2)'s column sums over the target set: N in all
        assert float(first.plan.column_mass[space].sum()) == pytest.approx(6.0)
    assert srdc.validation_centres(first.plan) is first.plan.mu

    later = srdc.prepare(preparation(1))  # eq. (12) from the second epoch on
    source = preparation(1).source
    expected = losses.source_weights(source.spaces["pooled"], source.labels, target_centres)
    assert torch.allclose(later.plan.source_weights, expected) and float(expected.min()) < 1.0
    assert later.metrics["source_weight_mean"] == pytest.approx(float(expected.mean()))

    target_init = build_method(SRDCConfig(mu_init="target"), 2, {"pooled": 2}, torch.device("cpu"))
    assert torch.allclose(target_init.prepare(preparation(0)).plan.mu["pooled"], target_centres)


def test_srdc_plan_is_checkpointed_as_plain_tensors_and_rebuilt():
    srdc = build_method(SRDCConfig(), 2, {"pooled": 2, "bottleneck": 2}, torch.device("cpu"))
    plan = srdc.prepare(preparation(1)).plan
    rebuilt = srdc.plan_from_state(roundtrip(srdc.plan_state(plan)))
    assert type(rebuilt) is type(plan)
    assert torch.equal(rebuilt.source_weights, plan.source_weights)
    for name in ("mu", "target_centres", "kmeans_labels", "column_mass"):
        assert getattr(rebuilt, name).keys() == getattr(plan, name).keys()
        assert all(torch.equal(getattr(rebuilt, name)[k], getattr(plan, name)[k]) for k in getattr(plan, name))


def train_toy(monkeypatch, **overrides) -> Trainer:
    monkeypatch.setitem(METHODS, "toy", ToyMethod)
    trainer = Trainer(SRDCConfig(**{**TOY, **overrides}))
    trainer.fit()
    return trainer


def test_a_toy_method_registered_with_one_line_is_trained_by_the_trainer(monkeypatch):
    trainer = train_toy(monkeypatch)
    config, history = trainer.config, trainer.history
    assert isinstance(trainer.method, ToyMethod)
    assert [row.get("phase") for row in history] == [None, "toy", "toy"]
    assert [row.get("iterations") for row in history[1:]] == [TOY_ITERATIONS] * 2
    # its loss drives the network to answer class 0 everywhere: the target accuracy becomes class 0's share
    target = load_task(config).target
    class0_share = float(np.mean(np.asarray(target.labels) == 0) * 100.0)
    assert history[0]["toy_class0_share"] < 50.0
    assert history[-1]["toy_class0_share"] == 100.0
    assert history[-1]["acc_target"] == pytest.approx(class0_share)
    assert history[-1]["loss_push"] < history[1]["loss_push"]
    # the parameter it owns follows SGD (momentum, weight decay) on (anchor - 1)^2 at 10x the scheduled lr
    anchor = torch.nn.Parameter(torch.zeros(()))
    sgd = torch.optim.SGD([anchor], lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    pulls = []
    for epoch in range(config.epochs):
        sgd.param_groups[0]["lr"] = 10.0 * lr_at(config, epoch / config.epochs)
        losses = []
        for _ in range(TOY_ITERATIONS):
            loss = (anchor - 1.0) ** 2
            losses.append(float(loss.detach()))
            sgd.zero_grad()
            loss.backward()
            sgd.step()
        pulls.append(sum(losses) / TOY_ITERATIONS)
    assert float(trainer.method.anchor.detach()) == pytest.approx(float(anchor.detach()), rel=1e-6)
    assert abs(float(anchor.detach()) - 1.0) < 0.5  # from 0 to near 1 (momentum overshoots a little)
    assert [row["loss_pull"] for row in history[1:]] == pytest.approx(pulls, rel=1e-6)
    for row in history[1:]:
        assert row["loss_total"] == pytest.approx(row["loss_push"] + row["loss_pull"])
    # the validators still run from the same pass, and the summary selects as for any method
    assert {"infomax", "clustering_objective"} <= set(history[-1])
    assert trainer.summary()["acc_last"] == history[-1]["acc_target"]


def test_a_toy_method_resumes_exactly(monkeypatch):
    uninterrupted = train_toy(monkeypatch, epochs=3)
    first = Trainer(SRDCConfig(**{**TOY, "epochs": 3}))
    first.initialise()
    first.step()
    state = roundtrip(first.state_dict())
    torch.manual_seed(777)
    resumed = Trainer(SRDCConfig(**{**TOY, "epochs": 3}))
    resumed.load_state_dict(state)
    resumed.fit()
    assert without_timings(resumed.history) == without_timings(uninterrupted.history)
    assert torch.equal(resumed.method.anchor, uninterrupted.method.anchor)


def test_adabn_is_the_source_model_evaluated_with_each_domains_own_batchnorm_statistics():
    run = {"epochs": 2, "batch_size": 32, "max_samples": 120, "device": "cpu"}
    adabn = Trainer(SRDCConfig(**run, variant="adabn"))
    by_hand = Trainer(SRDCConfig(**run, variant="source_only", prep_batchnorm="domain"))
    plain = Trainer(SRDCConfig(**run, variant="source_only"))
    adabn.fit(), by_hand.fit(), plain.fit()
    assert without_timings(adabn.history) == without_timings(by_hand.history)
    assert without_timings(adabn.history) != without_timings(plain.history)  # the same weights, other statistics
    for name, value in adabn.model.state_dict().items():
        assert torch.equal(value, plain.model.state_dict()[name]), name
    assert (adabn.resolved()["prep_batchnorm"], plain.resolved()["prep_batchnorm"]) == ("domain", "running")
