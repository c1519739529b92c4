"""The options that reproduce the released code where it differs from ours (docs/fidelity_notes.md items 22-26):
each changes exactly what it claims, and its default is the released code's path (the other value is ours)."""

import dataclasses
import io

import pytest
import torch
import torch.nn.functional as F

from srdc import losses
from srdc.clustering import assign, kmeans
from srdc.config import SRDCConfig
from srdc.errors import SRDCInputError
from srdc.methods import Batch, Preparation, Step, build_method
from srdc.model import Features, Outputs
from srdc.schedules import lr_at
from srdc.trainer import TIMING_KEYS, Trainer

CPU = torch.device("cpu")
DIMS = {"pooled": 2, "bottleneck": 2}
# our code path where the released code's differs (the defaults are the release's)
OURS = {"centre_grad_accumulate": False, "bottleneck_kmeans_labels": "own", "kmeans_labels": "final",
        "empty_centre": "source", "forward_order": "source_first"}


def test_the_defaults_are_the_released_codes_and_the_other_values_ours():
    release = {"centre_grad_accumulate": True, "bottleneck_kmeans_labels": "pooled", "kmeans_labels": "before_update",
               "empty_centre": "zero", "aux_kmeans_weight": 0.0, "forward_order": "target_first"}
    assert {field: getattr(SRDCConfig(), field) for field in release} == release
    assert {field: getattr(SRDCConfig(**OURS), field) for field in OURS} == OURS


# -- (d) kmeans_labels --------------------------------------------------------------------------------------
def test_labels_before_update_are_the_last_iterations_assignment_to_the_previous_centres():
    x = torch.tensor([[0.0], [2.0], [3.0], [10.0]])
    init = torch.tensor([[0.0], [2.4]])
    final_labels, centres = kmeans(x, init, iterations=2)
    before_labels, same_centres = kmeans(x, init, iterations=2, labels_before_update=True)
    # iteration 1: [0, 1, 1, 1] -> centres (0, 5); iteration 2: [0, 0, 1, 1] -> centres (1, 6.5), not converged
    assert torch.equal(centres, same_centres) and centres.flatten().tolist() == [1.0, 6.5]
    assert before_labels.tolist() == [0, 0, 1, 1] == assign(x, torch.tensor([[0.0], [5.0]])).tolist()
    assert final_labels.tolist() == [0, 0, 0, 1] == assign(x, centres).tolist()


# -- (e) empty_centre ---------------------------------------------------------------------------------------
def test_an_empty_cluster_gets_a_zero_centre_with_zero_empty():
    x = torch.tensor([[10.0, 0.0], [10.2, 0.0], [20.0, 0.0]])
    init = torch.tensor([[10.0, 0.0], [20.0, 0.0], [100.0, 100.0]])
    labels, kept = kmeans(x, init, iterations=3)
    zero_labels, zeroed = kmeans(x, init, iterations=3, zero_empty=True)
    assert labels.tolist() == zero_labels.tolist() == [0, 0, 1]
    assert kept[2].tolist() == [100.0, 100.0] and zeroed[2].tolist() == [0.0, 0.0]
    assert torch.equal(kept[:2], zeroed[:2])


def features(points: list[list[float]], labels: list[int], predicted: list[int]) -> Features:
    x = torch.tensor(points)
    return Features({"pooled": x, "bottleneck": 2 * x}, F.one_hot(torch.tensor(predicted), 2).float() * 3,
                    torch.tensor(labels))


def nobody_predicts_class_1(epoch: int) -> Preparation:
    """Source classes at x = 10 and 20, target classes at 11 and 21; the classifier predicts class 0 everywhere."""
    source = features([[10, 0], [10, 1], [20, 0], [20, 1]], [0, 0, 1, 1], [0, 0, 1, 1])
    target = features([[11, 0], [11, 1], [21, 0], [21, 1]], [0, 0, 1, 1], [0, 0, 0, 0])
    return Preparation(epoch, 2, source, target, torch.softmax(target.logits, dim=1))


def test_a_class_nobody_predicts_starts_from_its_source_centroid_or_from_zero():
    prep = nobody_predicts_class_1(epoch=1)
    ours = build_method(SRDCConfig(empty_centre="source"), 2, DIMS, CPU).prepare(prep).plan
    release = build_method(SRDCConfig(), 2, DIMS, CPU).prepare(prep).plan
    # ours: K-means from (16, 0.5) and class 1's source centroid (20, 0.5) finds both target blobs
    assert ours.target_centres["pooled"].tolist() == [[11.0, 0.5], [21.0, 0.5]]
    assert ours.kmeans_labels["pooled"].tolist() == [0, 0, 1, 1]
    # the release: from (16, 0.5) and a zero centre, every point joins cluster 0 and cluster 1 stays at zero
    assert release.target_centres["pooled"].tolist() == [[16.0, 0.5], [0.0, 0.0]]
    assert release.kmeans_labels["pooled"].tolist() == [0, 0, 0, 0]
    source_centres = torch.tensor([[10.0, 0.5], [20.0, 0.5]])
    assert torch.equal(release.mu["pooled"][1], source_centres[1] / 2)  # mu = (c_s + 0) / 2
    assert torch.equal(release.mu["bottleneck"][1], source_centres[1])  # bottleneck features are 2x
    # eq. (12) against a zero centre: cos = 0, so w = 0.5 for every source sample of class 1
    assert release.source_weights[2:].tolist() == [0.5, 0.5]
    assert ours.source_weights[2:].tolist() != [0.5, 0.5]
    expected = losses.source_weights(prep.source.spaces["pooled"], prep.source.labels, ours.target_centres["pooled"])
    assert torch.equal(ours.source_weights, expected)


# -- (b), (c): the targets q of the target loss -------------------------------------------------------------
BATCH = torch.tensor([[11.0, 0.0, 3.0, -1.0], [11.0, 1.0, 0.5, 0.2], [21.0, 0.0, -1.0, 2.0], [21.0, 1.0, 0.0, 1.0]])


def network(x: torch.Tensor) -> Outputs:
    """A stand-in network: columns 0-1 are the pooled feature (the bottleneck is 2x), 2-3 the logits."""
    return Outputs(x[:, :2], 2 * x[:, :2], x[:, 2:])


def target_loss(config: SRDCConfig, epoch: int, bottleneck_labels: list[int]) -> tuple[float, dict]:
    """SRDC's target loss on :data:`BATCH` with the plan of :func:`nobody_predicts_class_1` whose bottleneck
    K-means labels are replaced by ``bottleneck_labels``; also the plan's one-hot labels and the kernels."""
    srdc = build_method(config, 2, DIMS, CPU)
    plan = srdc.prepare(nobody_predicts_class_1(epoch=0)).plan
    plan = dataclasses.replace(plan, kmeans_labels={**plan.kmeans_labels,
                                                    "bottleneck": torch.tensor(bottleneck_labels)})
    srdc.start_epoch(plan, epoch)
    index = torch.arange(4)
    batch = Batch(BATCH, torch.tensor([0, 0, 1, 1]), index)
    loss = srdc.loss(Step(network, batch, batch, plan, epoch, "adapt", lam=0.5))
    out = network(BATCH)
    kernels = {s: losses.kernel_logits(f, srdc.centres.mu[s].detach()) for s, f in
               (("pooled", out.pooled), ("bottleneck", out.bottleneck))}
    hard = {s: F.one_hot(labels, 2).float() for s, labels in plan.kmeans_labels.items()}
    return loss.parts["target"], {"hard": hard, "kernels": kernels, "logits": out.logits}


def objective(parts: dict, q: dict) -> float:
    kernels = parts["kernels"]
    return float(losses.target_objective(parts["logits"], q["output"],
                                         [(kernels["pooled"], q["pooled"]), (kernels["bottleneck"], q["bottleneck"])]))


def test_first_epoch_bottleneck_term_uses_its_own_or_the_pooled_kmeans_labels():
    bottleneck_labels = [1, 0, 0, 1]  # differ from the pooled space's [0, 0, 1, 1]
    ours, parts = target_loss(SRDCConfig(bottleneck_kmeans_labels="own"), 0, bottleneck_labels)
    release, _ = target_loss(SRDCConfig(), 0, bottleneck_labels)
    hard = parts["hard"]
    assert hard["pooled"].argmax(1).tolist() == [0, 0, 1, 1]
    assert ours == pytest.approx(objective(parts, {"output": hard["pooled"], "pooled": hard["pooled"],
                                                   "bottleneck": hard["bottleneck"]}), rel=1e-6)
    assert release == pytest.approx(objective(parts, {"output": hard["pooled"], "pooled": hard["pooled"],
                                                      "bottleneck": hard["pooled"]}), rel=1e-6)
    assert abs(ours - release) > 0.1


def test_aux_kmeans_weight_mixes_one_hot_labels_into_q_after_the_first_epoch():
    bottleneck_labels = [1, 0, 0, 1]
    own = SRDCConfig(bottleneck_kmeans_labels="own")  # the bottleneck's own K-means labels in the mix
    ours, parts = target_loss(own, 1, bottleneck_labels)
    mixed, _ = target_loss(dataclasses.replace(own, aux_kmeans_weight=0.5), 1, bottleneck_labels)
    first_epoch, _ = target_loss(dataclasses.replace(own, aux_kmeans_weight=0.5), 0, bottleneck_labels)
    default_first_epoch, _ = target_loss(own, 0, bottleneck_labels)
    logits = {"output": parts["logits"], **parts["kernels"]}
    big_q = {s: losses.auxiliary_distribution(torch.softmax(x, dim=1)) for s, x in logits.items()}  # eq. (2)
    hard = parts["hard"]
    labels = {"output": hard["pooled"], "pooled": hard["pooled"], "bottleneck": hard["bottleneck"]}
    assert ours == pytest.approx(objective(parts, big_q), rel=1e-6)
    assert mixed == pytest.approx(objective(parts, {s: 0.5 * labels[s] + 0.5 * big_q[s] for s in big_q}), rel=1e-6)
    assert abs(ours - mixed) > 0.05
    assert first_epoch == default_first_epoch  # the first epoch's q is the one-hot labels either way


def test_first_epoch_targets_predictions_trains_towards_the_classifiers_labels_in_every_space():
    """The large-gap option (docs/fidelity_notes.md): the first clustering epoch's one-hot q is the classifier's
    prediction of the preparation pass (class 0 everywhere here), not the K-means labels [0, 0, 1, 1]; later
    epochs are unchanged."""
    predictions = SRDCConfig(first_epoch_targets="predictions")
    first, parts = target_loss(predictions, 0, [0, 0, 1, 1])
    kmeans_first, _ = target_loss(SRDCConfig(), 0, [0, 0, 1, 1])
    class_0 = F.one_hot(torch.zeros(4, dtype=torch.long), 2).float()
    assert first == pytest.approx(objective(parts, {"output": class_0, "pooled": class_0, "bottleneck": class_0}),
                                  rel=1e-6)
    assert abs(first - kmeans_first) > 0.1
    assert target_loss(predictions, 1, [0, 0, 1, 1])[0] == target_loss(SRDCConfig(), 1, [0, 0, 1, 1])[0]


# -- (a) centre_grad_accumulate -----------------------------------------------------------------------------
def small_config(**overrides) -> SRDCConfig:
    # loss_weighting "paper": the target terms reach the centres in the first epoch too (lambda = 0 there)
    values = {"epochs": 3, "batch_size": 32, "max_samples": 120, "device": "cpu", "loss_weighting": "paper"}
    return SRDCConfig(**{**values, **overrides})


def spied_epoch(monkeypatch, config: SRDCConfig) -> tuple[Trainer, list, list]:
    """One epoch; for every step, the loss's own gradient w.r.t. the centres, and (grad, value) of each centre
    as the optimizer receives them."""
    trainer = Trainer(config)
    centres = list(trainer.method.centres.parameters())
    fresh, received = [], []
    loss_of, step_of = trainer.method.loss, trainer.optimizer.step

    def loss_spy(step):
        loss = loss_of(step)
        fresh.append(torch.autograd.grad(loss.total, centres, retain_graph=True))
        return loss

    def step_spy(*args, **kwargs):
        received.append([(mu.grad.clone(), mu.detach().clone()) for mu in centres])
        return step_of(*args, **kwargs)

    monkeypatch.setattr(trainer.method, "loss", loss_spy)
    monkeypatch.setattr(trainer.optimizer, "step", step_spy)
    trainer.step()
    return trainer, fresh, received


def test_with_zeroed_centre_gradients_each_step_sees_only_its_own(monkeypatch):
    _, fresh, received = spied_epoch(monkeypatch, small_config(centre_grad_accumulate=False))
    assert len(fresh) >= 3
    for grads, got in zip(fresh, received, strict=True):
        for g, (grad, _) in zip(grads, got, strict=True):
            assert torch.allclose(grad, g, rtol=1e-5, atol=1e-7)


def test_accumulated_centre_gradients_sum_every_steps_gradient_and_decay(monkeypatch):
    config = small_config(centre_grad_accumulate=True, weight_decay=0.01)
    trainer, fresh, received = spied_epoch(monkeypatch, config)
    assert len(fresh) >= 3 and all(float(g.abs().max()) > 0 for g in fresh[0])
    mu = trainer.method.centres.mu["pooled"]
    (group,) = [g for g in trainer.optimizer.param_groups if any(p is mu for p in g["params"])]
    assert group["weight_decay"] == 0.0  # the decay is in the gradient, not applied a second time
    lr = lr_at(config, 0.0) * config.centres_lr_mult
    for space in range(2):
        total = buffer = torch.zeros_like(fresh[0][space])
        for t, (grads, got) in enumerate(zip(fresh, received, strict=True)):
            grad, value = got[space]
            total = total + grads[space] + config.weight_decay * value  # PyTorch 1.1: d_p.add_(wd, p) in place
            assert torch.allclose(grad, total, rtol=1e-4, atol=1e-6), t
            buffer = config.momentum * buffer + grad if t else grad
            if t + 1 < len(received):  # plain SGD with momentum on the accumulated gradient
                assert torch.allclose(received[t + 1][space][1], value - lr * buffer, rtol=1e-5, atol=1e-6)


def test_accumulated_gradients_without_decay_are_the_plain_sum(monkeypatch):
    _, fresh, received = spied_epoch(monkeypatch, small_config(centre_grad_accumulate=True, weight_decay=0.0))
    first, second = fresh[0][0], fresh[1][0]
    assert torch.allclose(received[1][0][0], first + second, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(received[1][0][0], second, rtol=1e-3)


def roundtrip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def history(trainer: Trainer) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in trainer.history]


def test_resume_with_accumulated_centre_gradients_is_bit_identical():
    config = small_config(centre_grad_accumulate=True)
    uninterrupted = Trainer(config)
    uninterrupted.fit()
    first = Trainer(config)
    first.initialise()
    first.step()
    state = roundtrip(first.state_dict())
    assert set(state["method"]["centre_grads"]) == {"pooled", "bottleneck"}
    assert all(float(g.abs().max()) > 0 for g in state["method"]["centre_grads"].values())
    resumed = Trainer(config)
    resumed.load_state_dict(state)
    resumed.fit()
    assert history(resumed) == history(uninterrupted)
    for a, b in zip(uninterrupted.method.centres.parameters(), resumed.method.centres.parameters(), strict=True):
        assert torch.equal(a, b) and torch.equal(a.grad, b.grad)
    # the saved gradients matter: a resume without them is another run
    forgetful = Trainer(config)
    forgetful.load_state_dict({**state, "method": {**state["method"], "centre_grads": {}}})
    forgetful.fit()
    assert history(forgetful) != history(uninterrupted)


def test_with_zeroed_centre_gradients_none_is_checkpointed():
    srdc = build_method(SRDCConfig(centre_grad_accumulate=False), 2, DIMS, CPU)
    assert srdc.persistent_grad_params() == [] and srdc.state_dict()["centre_grads"] == {}
    (group,) = srdc.parameter_groups()
    assert "weight_decay" not in group  # the optimizer's weight decay, as before


# -- configuration ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, says", [
    ("bottleneck_kmeans_labels", "mine", "choose one of: own, pooled"),
    ("kmeans_labels", "last", "choose one of: final, before_update"),
    ("empty_centre", "nan", "choose one of: source, zero"),
    ("first_epoch_targets", "classifier", "choose one of: kmeans, predictions"),
    ("aux_kmeans_weight", 1.0, "in [0, 1)"),
    ("aux_kmeans_weight", -0.5, "in [0, 1)"),
])
def test_bad_values_are_one_line_errors_naming_the_field(field, value, says):
    with pytest.raises(SRDCInputError) as error:
        SRDCConfig(**{field: value})
    assert "\n" not in str(error.value) and field in str(error.value) and says in str(error.value)



# -- (e) forward_order ----------------------------------------------------------------------------------------
def first_step_batchnorm(monkeypatch, order: str) -> tuple[list[str], torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """The first training step of a run with ``forward_order`` ``order``, seen by the network's first BatchNorm: the
    domains forwarded in order, its running mean before, its input's batch mean in each forward, its running mean
    after."""
    trainer = Trainer(small_config(forward_order=order))
    trainer.initialise()
    norm = next(module for module in trainer.model.modules()
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm))
    domains, means, running = [], [], [norm.running_mean.clone()]
    loss_of, forward_of = trainer.method.loss, trainer._forward
    steps = []

    def loss_spy(step):
        steps.append(step)
        return loss_of(step)

    def forward_spy(inputs):
        if norm.training and len(steps) == 1:
            domains.append("target" if inputs is steps[0].target.inputs else "source")
        return forward_of(inputs)

    def batch_mean(module, args):
        if module.training and len(steps) == 1:
            means.append(args[0].detach().double().mean(dim=[d for d in range(args[0].dim()) if d != 1]))

    def after(module, args, output):
        if module.training and len(steps) == 1:
            running.append(module.running_mean.clone())

    monkeypatch.setattr(trainer.method, "loss", loss_spy)
    monkeypatch.setattr(trainer, "_forward", forward_spy)
    norm.register_forward_pre_hook(batch_mean)
    norm.register_forward_hook(after)
    trainer.step()
    return domains, running[0], means, running[-1]


@pytest.mark.parametrize("order, domains", [("target_first", ["target", "source"]),
                                            ("source_first", ["source", "target"])])
def test_the_domain_forwarded_last_weighs_most_in_batchnorms_running_statistics(monkeypatch, order, domains):
    forwarded, before, (first, last), after = first_step_batchnorm(monkeypatch, order)
    assert forwarded == domains
    # the running-average recurrence r <- 0.9 r + 0.1 mean over the two forwards, by hand
    expected = 0.81 * before.double() + 0.09 * first + 0.1 * last
    assert torch.allclose(after.double(), expected, atol=1e-5)
    assert not torch.allclose(after.double(), 0.81 * before.double() + 0.09 * last + 0.1 * first, atol=1e-5)
