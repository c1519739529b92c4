"""DANN and CDAN+E through the method seam: the gradient reversal layer, the discriminator's loss and gradients,
CDAN's multilinear map and entropy weights against hand computations, and exact resume."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import roundtrip, without_timings

from srdc.config import SRDCConfig
from srdc.data import load_task
from srdc.methods import BASELINES, METHODS, Batch, Step, build_method, switches
from srdc.methods.adversarial import DomainDiscriminator, domain_loss, reverse_gradient
from srdc.methods.cdan import CDAN, RandomizedMap, entropy_weights, multilinear_map, uses_randomized_map
from srdc.methods.dann import DANN
from srdc.model import SRDCNet, build_backbone
from srdc.trainer import Trainer

CPU = torch.device("cpu")
SMALL = {"epochs": 3, "batch_size": 32, "max_samples": 300, "device": "cpu"}

ADVERSARIAL = ("dann", "cdan")  # the baselines with a domain discriminator


def test_the_baselines_are_registered_variants():
    assert BASELINES == ("adabn", *ADVERSARIAL) and all(name in METHODS for name in BASELINES)
    assert METHODS.lookup("dann") is DANN and METHODS.lookup("cdan") is CDAN
    for variant in ADVERSARIAL:  # none of SRDC's components
        used = switches(SRDCConfig(variant=variant))
        assert not (used.structural_source_reg or used.feature_discrimination or used.soft_source_selection
                    or used.target_clustering)


@pytest.mark.parametrize("coeff", [0.0, 0.37, 1.0])
def test_gradient_reversal_is_the_identity_forward_and_minus_coeff_times_the_gradient_backward(coeff):
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(5, 3, dtype=torch.float64)
    y = reverse_gradient(x, coeff)
    assert torch.equal(y, x)
    (y * upstream).sum().backward()
    assert torch.equal(x.grad, -coeff * upstream)


def test_the_discriminator_descends_its_loss_and_the_features_ascend_it():
    """One backward through the reversal: the discriminator's gradient is its own loss's (unreversed); the
    features' gradient is -coeff times the loss's; a step along each lowers / raises the loss (numerically)."""
    torch.manual_seed(0)
    disc = DomainDiscriminator(4, 16, 0.0).double()
    features = torch.randn(8, 4, dtype=torch.float64, requires_grad=True)
    coeff = 0.5

    def loss_of(x: torch.Tensor) -> torch.Tensor:
        return domain_loss(disc(x).squeeze(1), 4)

    plain = torch.autograd.grad(loss_of(features), [features, *disc.parameters()])
    reversed_ = torch.autograd.grad(loss_of(reverse_gradient(features, coeff)), [features, *disc.parameters()])
    assert torch.allclose(reversed_[0], -coeff * plain[0])
    assert all(torch.equal(a, b) for a, b in zip(reversed_[1:], plain[1:], strict=True))
    # the numerical derivative along the features' gradient confirms plain[0] is the loss's gradient
    with torch.no_grad():
        eps, direction = 1e-6, plain[0] / plain[0].norm()
        numeric = (loss_of(features + eps * direction) - loss_of(features - eps * direction)) / (2 * eps)
        assert float(numeric) == pytest.approx(float(plain[0].norm()), rel=1e-5)
        before = float(loss_of(features))
        assert float(loss_of(features - 0.1 * reversed_[0])) > before  # SGD on the features: loss goes up
        for parameter, grad in zip(disc.parameters(), reversed_[1:], strict=True):
            parameter -= 0.1 * grad
        assert float(loss_of(features)) < before  # SGD on the discriminator: loss goes down


def test_domain_loss_is_the_binary_cross_entropy_source_one_target_zero():
    logits = torch.tensor([0.0, 2.0, -1.0, 1.0])
    softplus = [math.log1p(math.exp(-z)) for z in (0.0, 2.0)] + [math.log1p(math.exp(z)) for z in (-1.0, 1.0)]
    assert float(domain_loss(logits, 2)) == pytest.approx(sum(softplus) / 4)
    weights = torch.tensor([0.25, 0.75, 0.5, 0.5])
    expected = sum(w * s for w, s in zip(weights.tolist(), softplus, strict=True)) / 2.0
    assert float(domain_loss(logits, 2, weights)) == pytest.approx(expected)


def test_multilinear_map_is_the_outer_product_of_predictions_and_features():
    f = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    g = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    assert multilinear_map(f, g).tolist() == [[0.25, 0.5, 0.75, 1.5], [3.0, -1.0, 0.0, 0.0]]


def test_randomized_map_preserves_the_multilinear_inner_products_in_expectation():
    """CDAN Theorem 1: <T_rand(f, g), T_rand(f', g')> estimates <f, f'> <g, g'> (averaged over many draws)."""
    f, g = torch.tensor([[1.0, 2.0, 0.5], [0.5, -1.0, 2.0]]), torch.tensor([[0.2, 0.8], [0.6, 0.4]])
    exact = float(multilinear_map(f, g)[0] @ multilinear_map(f, g)[1])
    assert exact == pytest.approx(float(f[0] @ f[1]) * float(g[0] @ g[1]))
    estimates = []
    for seed in range(200):
        h = RandomizedMap(3, 2, 512, seed)(f, g)
        estimates.append(float(h[0] @ h[1]))
    assert np.mean(estimates) == pytest.approx(exact, abs=0.1)
    assert torch.equal(RandomizedMap(3, 2, 8, 5).r_f, RandomizedMap(3, 2, 8, 5).r_f)  # fixed by its seed


def test_entropy_weights_by_hand():
    """w = 1 + exp(-H(g)): 2 for a one-hot prediction, 1.5 for a uniform one over two classes; per domain sum 1."""
    g = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])
    assert entropy_weights(g, 2).tolist() == pytest.approx([2 / 3.5, 1.5 / 3.5, 0.5, 0.5])


def test_cdan_randomizes_above_4096_dimensions_and_keeps_its_map_in_its_state():
    assert uses_randomized_map(SRDCConfig(bottleneck_dim=512), 10)  # 5120 > 4096
    assert not uses_randomized_map(SRDCConfig(bottleneck_dim=256), 10)  # 2560
    assert uses_randomized_map(SRDCConfig(bottleneck_dim=8, cdan_map="randomized"), 10)
    assert not uses_randomized_map(SRDCConfig(cdan_map="multilinear"), 10)
    full = build_method(SRDCConfig(variant="cdan", bottleneck_dim=256), 10, {"pooled": 800}, CPU)
    assert full.discriminator[0].in_features == 2560 and "randomized_map" not in full.state_dict()
    rand = build_method(SRDCConfig(variant="cdan"), 10, {"pooled": 800}, CPU)
    assert rand.discriminator[0].in_features == 1024
    assert torch.equal(rand.state_dict()["randomized_map"]["r_f"], rand.randomized.r_f)
    dann = build_method(SRDCConfig(variant="dann", disc_hidden=64), 10, {"pooled": 800}, CPU)
    assert [m.out_features for m in dann.discriminator if isinstance(m, torch.nn.Linear)] == [64, 64, 1]
    assert dann.parameter_groups()[-1]["params"] == list(dann.discriminator.parameters())


@pytest.mark.parametrize("variant", ADVERSARIAL)
def test_the_network_gets_the_cross_entropy_gradient_minus_lambda_times_the_domain_gradient(variant):
    """One iteration's loss: at lambda = 0 the network's gradient is the source cross-entropy's alone (DANN's
    first epoch); at lambda the domain loss's gradient is added reversed and scaled, linearly in lambda."""
    torch.manual_seed(0)
    config = SRDCConfig(variant=variant, bottleneck_dim=8, disc_hidden=16, disc_dropout=0.0, cdan_entropy=False)
    backbone, dim = build_backbone("identity", in_dim=6)
    net = SRDCNet(backbone, dim, 3, 8).double()
    method = build_method(config, 3, {"pooled": 6}, CPU)
    method.discriminator.double()
    x_s, x_t = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64) + 1.0
    source = Batch(x_s, torch.tensor([0, 1, 2, 0]), torch.arange(4))
    target = Batch(x_t, torch.tensor([0, 0, 0, 0]), torch.arange(4))

    def network_grads(lam: float) -> tuple[list[torch.Tensor], dict[str, float]]:
        loss = method.loss(Step(net, source, target, None, 1, "adapt", lam))
        return list(torch.autograd.grad(loss.total, list(net.new_layers()))), loss.parts

    at0, parts = network_grads(0.0)
    out = net(torch.cat([x_s, x_t]))
    cross_entropy = F.cross_entropy(out.logits[:4], source.labels)
    ce_grads = torch.autograd.grad(cross_entropy, list(net.new_layers()))
    assert all(torch.allclose(a, b) for a, b in zip(at0, ce_grads, strict=True))
    assert parts["source"] == pytest.approx(float(cross_entropy.detach())) and parts["domain"] > 0
    at1, at_half = network_grads(1.0)[0], network_grads(0.5)[0]
    for g0, g1, g_half in zip(at0, at1, at_half, strict=True):
        assert torch.allclose(g_half, 0.5 * (g0 + g1))
    assert any(not torch.allclose(g0, g1) for g0, g1 in zip(at0, at1, strict=True))


@pytest.mark.parametrize("variant", ADVERSARIAL)
def test_resume_mid_run_is_bit_identical(variant):
    """The discriminator (and CDAN's random map), its momentum and the dropout RNG are in the checkpoint."""
    config = SRDCConfig(variant=variant, **SMALL)
    task = load_task(config)
    uninterrupted = Trainer(config, task)
    uninterrupted.fit()
    first = Trainer(config, task)
    first.initialise()
    first.step()
    state = roundtrip(first.state_dict())
    torch.manual_seed(12345)
    np.random.seed(999)
    resumed = Trainer(config, task)
    resumed.load_state_dict(state)
    resumed.fit()
    assert without_timings(resumed.history) == without_timings(uninterrupted.history)
    for a, b in ((resumed.model, uninterrupted.model),
                 (resumed.method.discriminator, uninterrupted.method.discriminator)):
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.equal(x, y), name
    momentum = [[s["momentum_buffer"] for s in t.optimizer.state.values()] for t in (resumed, uninterrupted)]
    assert all(torch.equal(x, y) for x, y in zip(*momentum, strict=True))
    history = uninterrupted.history
    assert [row["lambda"] for row in history[1:]] == pytest.approx(
        [2 / (1 + math.exp(-10 * e / 3)) - 1 for e in range(3)])
    for row in history[1:]:
        assert row["phase"] == "adapt" and row["loss_total"] == pytest.approx(row["loss_source"] + row["loss_domain"])
        assert 0.0 < row["loss_domain"] < 1.0  # BCE of a discriminator that is better than chance, not perfect
