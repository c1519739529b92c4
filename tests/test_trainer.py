"""The trainer: exact resume (from weights-only checkpoints), component switches, the embedded pair's domain gap,
non-finite losses and metrics."""


import numpy as np
import pytest
import torch
from conftest import roundtrip, without_timings
from torch.utils.data import Dataset

from srdc.batches import ordered_batches
from srdc.config import SRDCConfig
from srdc.data import load_task
from srdc.data.base import Domain, TaskData
from srdc.errors import NonFiniteLossError, SRDCInputError
from srdc.model import batchnorm_statistics_of
from srdc.schedules import lambda_at, lr_at
from srdc.trainer import Trainer
from srdc.validators import VALIDATORS, Validator


def small_config(**overrides) -> SRDCConfig:
    values = {"epochs": 4, "batch_size": 32, "max_samples": 300, "device": "cpu"}
    values.update(overrides)
    return SRDCConfig(**values)


def assert_same_run(a: Trainer, b: Trainer) -> None:
    assert without_timings(a.history) == without_timings(b.history)
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    for x, y in zip(a.method.centres.parameters(), b.method.centres.parameters(), strict=True):
        assert torch.equal(x, y)
    momentum_a = [s["momentum_buffer"] for s in a.optimizer.state.values()]
    momentum_b = [s["momentum_buffer"] for s in b.optimizer.state.values()]
    assert all(torch.equal(x, y) for x, y in zip(momentum_a, momentum_b, strict=True))


@pytest.mark.parametrize("stop_at, unit", [(1, "epoch"), (2, "epoch"), (2, "iteration")])
def test_resume_at_an_epoch_boundary_is_bit_identical(stop_at, unit):
    config = small_config(schedule_unit=unit)
    task = load_task(config)
    uninterrupted = Trainer(config, task)
    uninterrupted.fit()

    first = Trainer(config, task)
    first.initialise()
    for _ in range(stop_at):
        first.step()
    state = roundtrip(first.state_dict())
    torch.manual_seed(12345)  # a fresh process would have other RNG states: the checkpoint must restore them
    np.random.seed(999)
    resumed = Trainer(config, task)
    resumed.load_state_dict(state)
    resumed.fit()
    assert_same_run(uninterrupted, resumed)
    assert resumed.summary()["acc_last"] == uninterrupted.summary()["acc_last"]


class FlippingDataset(Dataset):
    """An image-like dataset whose train view draws from torch's global RNG (like RandomHorizontalFlip)."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor, augment: bool) -> None:
        self.inputs, self.labels, self.augment = inputs, labels, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.inputs[i]
        if self.augment and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.labels[i]


def as_image_domain(domain: Domain) -> Domain:
    inputs, labels = domain.train_set.tensors
    return Domain(domain.name, domain.classes, domain.labels, FlippingDataset(inputs, labels, True),
                  FlippingDataset(inputs, labels, False))


def test_resume_is_bit_identical_through_dataloaders_with_random_augmentation():
    config = small_config(epochs=3)
    base = load_task(config)
    task = TaskData(as_image_domain(base.source), as_image_domain(base.target), None, base.default_backbone)
    uninterrupted = Trainer(config, task)
    uninterrupted.fit()
    first = Trainer(config, task)
    first.initialise()
    first.step()
    state = roundtrip(first.state_dict())
    torch.manual_seed(4321)
    resumed = Trainer(config, task)
    resumed.load_state_dict(state)
    resumed.fit()
    assert_same_run(uninterrupted, resumed)


def test_resume_refuses_a_checkpoint_of_another_run():
    config = small_config(epochs=2)
    trainer = Trainer(config)
    trainer.initialise()
    other = Trainer(small_config(epochs=2, lambda_scale=0.5))
    with pytest.raises(ValueError, match="lambda_scale"):
        other.load_state_dict(trainer.state_dict())


def test_schedules_of_section_5_1():
    config = SRDCConfig()
    assert lr_at(config, 0.0) == pytest.approx(0.01)
    assert lr_at(config, 1.0) == pytest.approx(0.01 / 11**0.75)
    assert lambda_at(config, 0.0) == 0.0
    assert lambda_at(config, 0.5) == pytest.approx(2 / (1 + np.exp(-5)) - 1)
    assert lambda_at(SRDCConfig(lambda_scale=0.5), 1.0) == pytest.approx(0.5 * (2 / (1 + np.exp(-10)) - 1))


def test_optimizer_groups_use_the_paper_learning_rate_ratios():
    trainer = Trainer(small_config(backbone="resnet18", weights="none", image_size=32, max_samples=40))
    trainer.initialise()
    trainer._set_lr(0.01)
    lrs = [group["lr"] for group in trainer.optimizer.param_groups]
    assert lrs == pytest.approx([0.01, 0.01, 0.001])  # from scratch: backbone at 1x; centres 0.1x
    pretrained = Trainer(small_config(backbone_lr_mult=0.1, max_samples=40))
    pretrained._set_lr(0.01)
    assert [g["lr"] for g in pretrained.optimizer.param_groups] == pytest.approx([0.01, 0.001, 0.001])


def test_the_summary_says_what_each_auto_option_resolved_to_as_the_run_uses_it():
    scratch = Trainer(small_config(backbone="resnet18", weights="none", image_size=32, max_samples=40))
    resolved = scratch.resolved()
    lr_mults = [group["lr_mult"] for group in scratch.optimizer.param_groups]
    assert (resolved["backbone"], resolved["backbone_reason"], resolved["backbone_lr_mult"]) == \
        ("resnet18", "--backbone", lr_mults[1]) == ("resnet18", "--backbone", 1.0)
    assert resolved["switches"] == {"structural_source_reg": True, "feature_discrimination": True,
                                    "soft_source_selection": True, "target_clustering": True, "pretrain_epochs": 0}
    assert resolved["device"] == "cpu" and "cdan_map" not in resolved
    factorial = Trainer(small_config(backbone_lr_mult=0.3, soft_source_selection=False, max_samples=40))
    resolved = factorial.resolved()
    assert resolved["backbone"] == factorial.task.default_backbone and resolved["backbone_reason"].startswith("auto")
    assert resolved["backbone_lr_mult"] == 0.3 and resolved["switches"]["soft_source_selection"] is False
    for bottleneck, expected in ((16, "multilinear"), (1024, "randomized")):  # 10 classes x d > 4096: randomized
        cdan = Trainer(small_config(variant="cdan", cdan_map="auto", bottleneck_dim=bottleneck, max_samples=40))
        assert cdan.task.num_classes == 10 and cdan.resolved()["cdan_map"] == expected
    cdan.initialise()
    assert cdan.summary()["resolved"] == cdan.resolved()


def run_variant(variant: str, **overrides) -> Trainer:
    trainer = Trainer(small_config(variant=variant, epochs=3, **overrides))
    trainer.fit()
    return trainer


def test_variants_switch_the_components():
    srdc = run_variant("srdc")
    assert sorted(srdc.method.centres.spaces) == ["bottleneck", "pooled"]
    assert srdc.history[-1]["source_weight_min"] < 1.0  # soft selection weights the source
    assert all(row["loss_target"] > 0 for row in srdc.history[2:])

    no_featdisc = run_variant("srdc_no_featdisc")
    assert no_featdisc.method.centres.spaces == [] and list(no_featdisc.method.centres.parameters()) == []

    no_softsel = run_variant("srdc_no_softsel")
    assert no_softsel.history[-1]["source_weight_min"] == no_softsel.history[-1]["source_weight_max"] == 1.0

    source_only = run_variant("source_only")
    assert {row["phase"] for row in source_only.history[1:]} == {"source"}
    assert all(row["loss_target"] == 0.0 for row in source_only.history[1:])

    no_struct = run_variant("srdc_no_struct", source_pretrain_epochs=1)
    assert [row["phase"] for row in no_struct.history[1:]] == ["source", "adapt", "adapt"]
    assert [row["loss_source"] for row in no_struct.history[2:]] == [0.0, 0.0]

    oracle = run_variant("oracle")
    assert {row["phase"] for row in oracle.history[1:]} == {"oracle"}


def test_single_feature_space_option():
    trainer = Trainer(small_config(feature_spaces="bottleneck", epochs=1))
    trainer.fit()
    assert trainer.method.centres.spaces == ["bottleneck"]
    assert trainer.method.centres.mu["bottleneck"].shape == (10, 512)


def test_paper_text_options_run_and_change_the_result():
    code = run_variant("srdc")
    paper = run_variant("srdc", loss_weighting="paper", aux_normalizer="dataset", aux_grad=False,
                        feature_kernel="student_t")
    assert code.history[-1]["loss_total"] != paper.history[-1]["loss_total"]
    assert np.isfinite(paper.history[-1]["acc_target"])


def test_non_finite_loss_raises_and_keeps_the_history():
    trainer = Trainer(small_config(lr=1e12, epochs=3))
    with pytest.raises(NonFiniteLossError, match="lower --lr"):
        trainer.fit()
    assert trainer.history[0]["epoch"] == 0  # what was computed before the failure is still there


def nan_from_call(n: int) -> Validator:
    """A validator that is finite for its first ``n - 1`` calls (epochs 0..n-2), then NaN."""
    calls = []

    def compute(view) -> float:
        calls.append(1)
        return float("nan") if len(calls) >= n else 0.5

    return Validator("flaky", "flaky_score", "max", compute)


def test_a_non_finite_metric_stops_the_run_before_its_epoch_is_recorded(monkeypatch):
    monkeypatch.setitem(VALIDATORS, "flaky", nan_from_call(3))  # NaN in epoch 2's row, the loss stays finite
    trainer = Trainer(small_config(epochs=4))
    saved = []
    with pytest.raises(NonFiniteLossError, match=r"flaky_score became nan at epoch 2; lower --lr .*epochs 0\.\.1 "
                                                 r"are kept in the history and the last checkpoint") as error:
        trainer.fit(lambda trainer, row: saved.append(roundtrip(trainer.state_dict())))
    assert "\n" not in str(error.value)
    assert [row["epoch"] for row in trainer.history] == [0, 1]
    assert trainer.summary()["labelfree_epoch"] == 1 and trainer.summary()["epochs"] == 1
    assert [state["epoch"] for state in saved] == [1]  # the last checkpoint is the last finite epoch's
    assert [row["epoch"] for row in saved[-1]["history"]] == [0, 1]
    assert trainer.wall_s == sum(row["wall_s_epoch"] for row in trainer.history)


def test_a_non_finite_metric_of_the_untrained_model_says_so(monkeypatch):
    monkeypatch.setitem(VALIDATORS, "flaky", nan_from_call(1))
    trainer = Trainer(small_config(epochs=2))
    with pytest.raises(NonFiniteLossError, match=r"flaky_score is nan for the untrained model \(epoch 0\)"):
        trainer.initialise()
    assert trainer.history == []


def test_a_checkpoint_loads_weights_only_and_an_incomplete_one_is_refused():
    trainer = Trainer(small_config(epochs=1))
    trainer.initialise()
    state = roundtrip(trainer.state_dict())
    assert isinstance(state["rng"]["numpy"][1], torch.Tensor)
    resumed = Trainer(small_config(epochs=1))
    resumed.load_state_dict(state)
    assert np.array_equal(np.random.get_state()[1], trainer.state_dict()["rng"]["numpy"][1].numpy())
    del state["optimizer"]
    with pytest.raises(SRDCInputError, match="the checkpoint is incomplete \\(no optimizer\\)"):
        Trainer(small_config(epochs=1)).load_state_dict(state)


@pytest.mark.slow
def test_embedded_pair_shows_a_real_domain_gap():
    """Source-only on grey digits transfers badly to photo-blended digits; training on the target does not."""
    config = {"epochs": 15, "device": "cpu"}
    source_only = Trainer(SRDCConfig(variant="source_only", **config))
    oracle = Trainer(SRDCConfig(variant="oracle", **config))
    gap = oracle.fit()["acc_last"] - source_only.fit()["acc_last"]
    assert source_only.history[-1]["acc_source"] > 95.0  # the source itself is learnt
    assert gap > 25.0, gap


def test_unknown_variant_or_selector_is_one_clear_error_at_construction():
    with pytest.raises(SRDCInputError, match="unknown variant 'magic'; choose one of: source_only, .*oracle"):
        Trainer(small_config(variant="magic"))
    with pytest.raises(SRDCInputError, match="unknown labelfree_selector 'vibes'; choose one of: infomax, clustering"):
        Trainer(small_config(labelfree_selector="vibes"))


def test_plan_appears_with_the_first_preparation_pass_and_checkpoints_on_the_cpu():
    trainer = Trainer(small_config(epochs=1))
    assert trainer.plan is None and trainer.history == []
    trainer.initialise()
    assert trainer.plan is not None and [row["epoch"] for row in trainer.history] == [0]
    plan = trainer.state_dict()["plan"]
    assert isinstance(plan, dict)  # the method's plan as plain data: a checkpoint holds no class to unpickle
    assert plan["source_weights"].device.type == "cpu"
    assert torch.equal(plan["mu"]["pooled"], trainer.plan.mu["pooled"])
    trainer.initialise()  # a second call does not evaluate again
    assert len(trainer.history) == 1


def test_loss_parts_compose_as_eq_11_and_the_baselines_report_their_cross_entropy():
    paper = run_variant("srdc", loss_weighting="paper")
    for row in paper.history[1:]:  # L = L_t + lambda L_s, averaged over the epoch (lambda fixed within it)
        assert row["loss_total"] == pytest.approx(row["loss_target"] + row["lambda"] * row["loss_source"])
    assert paper.history[2]["lambda"] > 0 and paper.history[2]["loss_target"] > 0
    for variant in ("source_only", "oracle"):
        for row in run_variant(variant).history[1:]:
            assert row["loss_total"] == pytest.approx(row["loss_source"]) and row["loss_target"] == 0.0


def test_the_schedule_steps_every_iteration_when_asked(monkeypatch):
    config = small_config(schedule_unit="iteration", epochs=3)
    trainer = Trainer(config)
    seen: list[float] = []
    original = trainer.optimizer.step

    def step(*args, **kwargs):
        seen.append(trainer.optimizer.param_groups[-1]["lr"] / trainer.optimizer.param_groups[-1]["lr_mult"])
        return original(*args, **kwargs)

    monkeypatch.setattr(trainer.optimizer, "step", step)
    trainer.fit()
    rows = trainer.history[1:]
    iterations = rows[0]["iterations"]
    assert len(seen) == sum(row["iterations"] for row in rows) and len(set(seen)) == len(seen)  # all different
    expected = [lr_at(config, (epoch + i / iterations) / 3) for epoch in range(3) for i in range(iterations)]
    assert seen == pytest.approx(expected, rel=1e-12)
    first = [lambda_at(config, i / (iterations * 3)) for i in range(iterations)]
    assert rows[0]["lambda"] == pytest.approx(sum(first) / iterations, rel=1e-12) and rows[0]["lambda"] > 0
    by_epoch = Trainer(small_config(epochs=3))
    by_epoch.fit()
    assert [row["lambda"] for row in by_epoch.history[1:]] == [lambda_at(config, e / 3) for e in range(3)]
    assert by_epoch.history[1]["lambda"] == 0.0  # per epoch, the first epoch trains without the target terms


def test_preparation_with_domain_statistics_changes_the_features_not_the_training_state():
    config = SRDCConfig(epochs=1, max_samples=60, batch_size=16, device="cpu")
    running = Trainer(config)
    domain = Trainer(SRDCConfig(**{**config.to_dict(), "prep_batchnorm": "domain"}))
    running.model.train()
    for _ in range(3):  # running statistics that are the source's only
        running.model(next(iter(ordered_batches(running.task.source, 16)))[0])
    domain.model.load_state_dict(running.model.state_dict())
    state = {key: value.clone() for key, value in domain.model.state_dict().items()}
    target_running = running.extract(running.task.target)
    target_own = domain.extract(domain.task.target)
    assert not torch.allclose(target_running.spaces["pooled"], target_own.spaces["pooled"])
    assert all(torch.equal(value, domain.model.state_dict()[key]) for key, value in state.items())
    # the target's own statistics: each BatchNorm output channel averages to ~0 over the target (before the ReLU)
    bottleneck_bn = domain.model.bottleneck[1]
    inputs = torch.cat([x for x, _ in ordered_batches(domain.task.target, 64)])
    with batchnorm_statistics_of(domain.model, [inputs]), torch.no_grad():
        normalised = bottleneck_bn(domain.model.bottleneck[0](domain.model.backbone(inputs).flatten(1)))
    assert torch.allclose(normalised.mean(0), bottleneck_bn.bias, atol=1e-3)
