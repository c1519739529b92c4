"""Each equation of srdc/losses.py against an independent NumPy computation on small hand-made inputs."""

import math

import numpy as np
import pytest
import torch

from srdc import losses

P = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
Z = np.array([[0.0, 1.0], [2.0, 0.0], [1.0, 1.0], [-1.0, 0.5]])
MU = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, -1.0]])
LABELS = np.array([0, 1, 2, 0])
W = np.array([1.0, 0.5, 0.25, 0.75])


def t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float64)


def numpy_aux(p: np.ndarray, mass: np.ndarray | None = None) -> np.ndarray:
    mass = p.sum(axis=0) if mass is None else mass
    q = np.empty_like(p)
    for i in range(p.shape[0]):
        for k in range(p.shape[1]):
            q[i, k] = p[i, k] / math.sqrt(mass[k])
        q[i] /= q[i].sum()
    return q


def numpy_soft_assignment(z: np.ndarray, mu: np.ndarray) -> np.ndarray:
    out = np.empty((len(z), len(mu)))
    for i in range(len(z)):
        e = [math.exp(1.0 / (1.0 + float(((z[i] - mu[k]) ** 2).sum()))) for k in range(len(mu))]
        out[i] = np.array(e) / sum(e)
    return out


def test_auxiliary_distribution_eq2_matches_numpy_and_rows_sum_to_one():
    q = losses.auxiliary_distribution(t(P)).numpy()
    np.testing.assert_allclose(q, numpy_aux(P), rtol=1e-12)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-12)


def test_auxiliary_distribution_with_dataset_column_mass():
    mass = np.array([10.0, 4.0, 1.0])
    q = losses.auxiliary_distribution(t(P), t(mass)).numpy()
    np.testing.assert_allclose(q, numpy_aux(P, mass), rtol=1e-12)


def entropy(v: np.ndarray) -> float:
    return float(-(v * np.log(v)).sum())


def test_q_rebalances_clusters_and_sharpens_rows_of_small_clusters():
    """Eq. (2) divides by sqrt(cluster mass): rows of the smallest cluster get sharper (max q > max p), the
    batch marginal of q is more balanced than that of p. (Unlike DEC's p^2/f, eq. (2) does not sharpen every
    row: a row of the largest cluster gets flatter -- see docs/fidelity_notes.md.)"""
    p = np.array([[0.8, 0.15, 0.05], [0.7, 0.25, 0.05], [0.6, 0.35, 0.05], [0.2, 0.2, 0.6]])
    q = losses.auxiliary_distribution(t(p)).numpy()
    smallest = p.sum(axis=0).argmin()
    assert smallest == 2
    row = 3  # argmax in the smallest cluster
    assert q[row].max() > p[row].max()
    assert entropy(q[row]) < entropy(p[row])
    assert entropy(q.mean(axis=0)) > entropy(p.mean(axis=0))
    assert (q.argmax(axis=1) == p.argmax(axis=1)).all()


def test_q_equals_p_when_clusters_are_balanced():
    p = np.array([[0.5, 0.3, 0.2], [0.2, 0.5, 0.3], [0.3, 0.2, 0.5]])
    np.testing.assert_allclose(losses.auxiliary_distribution(t(p)).numpy(), p, rtol=1e-12)


def test_soft_assignment_eq4_matches_numpy():
    p_tilde = losses.soft_assignment(t(Z), t(MU)).numpy()
    np.testing.assert_allclose(p_tilde, numpy_soft_assignment(Z, MU), rtol=1e-12)
    np.testing.assert_allclose(p_tilde.sum(axis=1), 1.0, rtol=1e-12)
    # the nearest centre gets the largest probability
    nearest = np.array([[((z - m) ** 2).sum() for m in MU] for z in Z]).argmin(axis=1)
    assert (p_tilde.argmax(axis=1) == nearest).all()


def test_student_t_option_is_decs_normalised_kernel():
    kernel = np.array([[1.0 / (1.0 + ((z - m) ** 2).sum()) for m in MU] for z in Z])
    expected = kernel / kernel.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(losses.soft_assignment(t(Z), t(MU), "student_t").numpy(), expected, rtol=1e-12)


def test_paper_kernel_cannot_be_sharper_than_e_to_1():
    """exp of a kernel in (0, 1]: no centre gets more than e times another's probability, however close."""
    z = t(np.array([[0.0, 0.0]]))
    p = losses.soft_assignment(z, t(np.array([[0.0, 0.0], [100.0, 100.0]]))).numpy()[0]
    assert p[0] / p[1] == pytest.approx(math.e, rel=1e-3)


def test_kernel_gradient_is_finite_when_a_point_sits_on_its_centre():
    z = torch.zeros(2, 3, requires_grad=True)
    mu = torch.zeros(2, 3, requires_grad=True)
    losses.kernel_logits(z, mu).sum().backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(mu.grad).all()


def test_kl_and_balance_and_objective_eq1():
    q = numpy_aux(P)
    kl = np.mean([sum(q[i, k] * math.log(q[i, k] / P[i, k]) for k in range(3)) for i in range(4)])
    rho = q.mean(axis=0)
    balance = sum(r * math.log(r) for r in rho)
    assert float(losses.kl_divergence(t(q), t(P))) == pytest.approx(kl, rel=1e-12)
    assert float(losses.balance_term(t(q))) == pytest.approx(balance, rel=1e-12)
    assert float(losses.clustering_objective(t(q), t(P))) == pytest.approx(kl + balance, rel=1e-12)


def test_balance_term_favours_even_cluster_sizes():
    even = np.eye(3)[[0, 1, 2, 0, 1, 2]]
    uneven = np.eye(3)[[0, 0, 0, 0, 1, 2]]
    collapsed = np.eye(3)[[0, 0, 0, 0, 0, 0]]
    values = [float(losses.balance_term(t(q))) for q in (even, uneven, collapsed)]
    assert values[0] == pytest.approx(-math.log(3), rel=1e-12)
    assert values[0] < values[1] < values[2] == pytest.approx(0.0, abs=1e-9)


def test_soft_cross_entropy_eq3():
    q = numpy_aux(P)
    expected = -np.mean([sum(q[i, k] * math.log(P[i, k]) for k in range(3)) for i in range(4)])
    assert float(losses.soft_cross_entropy(t(q), torch.log(t(P)))) == pytest.approx(expected, rel=1e-12)


def test_weighted_cross_entropy_eqs_7_and_13():
    unweighted = -np.mean([math.log(P[j, LABELS[j]]) for j in range(4)])
    weighted = -np.mean([W[j] * math.log(P[j, LABELS[j]]) for j in range(4)])
    log_p, labels = torch.log(t(P)), torch.tensor(LABELS)
    assert float(losses.weighted_cross_entropy(log_p, labels)) == pytest.approx(unweighted, rel=1e-12)
    assert float(losses.weighted_cross_entropy(log_p, labels, t(W))) == pytest.approx(weighted, rel=1e-12)


def test_source_objective_eq10_with_weights_eq14():
    logits = np.log(P)
    kernel = np.array([[1.0 / (1.0 + ((z - m) ** 2).sum()) for m in MU] for z in Z])
    p_tilde = numpy_soft_assignment(Z, MU)
    out_expected = -np.mean([W[j] * math.log(P[j, LABELS[j]]) for j in range(4)])
    feat_expected = -np.mean([W[j] * math.log(p_tilde[j, LABELS[j]]) for j in range(4)])
    out, feat = losses.source_objective(t(logits), torch.tensor(LABELS), [t(kernel)], t(W))
    assert float(out) == pytest.approx(out_expected, rel=1e-10)
    assert float(feat) == pytest.approx(feat_expected, rel=1e-10)


def test_target_objective_eq6_sums_output_and_feature_terms():
    logits = np.log(P)
    kernel = np.array([[1.0 / (1.0 + ((z - m) ** 2).sum()) for m in MU] for z in Z])
    p_tilde = numpy_soft_assignment(Z, MU)
    q, q_tilde = numpy_aux(P), numpy_aux(p_tilde)
    expected = -np.mean((q * np.log(P)).sum(1)) - np.mean((q_tilde * np.log(p_tilde)).sum(1))
    value = losses.target_objective(t(logits), t(q), [(t(kernel), t(q_tilde))])
    assert float(value) == pytest.approx(expected, rel=1e-10)


def test_total_objective_eq11_code_and_paper_weightings():
    target, s_out, s_feat, lam = t(np.array(2.0)), t(np.array(3.0)), t(np.array(5.0)), 0.5
    assert float(losses.total_objective(target, s_out, s_feat, lam, "code")) == pytest.approx(0.5 * 2 + 3 + 0.5 * 5)
    assert float(losses.total_objective(target, s_out, s_feat, lam, "paper")) == pytest.approx(2 + 0.5 * (3 + 5))


def test_source_weights_eq12_matches_numpy_and_lie_in_unit_interval():
    centres = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    expected = [
        0.5 * (1 + Z[j] @ centres[LABELS[j]] / (np.linalg.norm(Z[j]) * np.linalg.norm(centres[LABELS[j]]) + 1e-300))
        for j in range(4)
    ]
    expected[0] = 0.5  # Z[0] = (0, 1) is orthogonal to centre (1, 0)
    weights = losses.source_weights(t(Z), torch.tensor(LABELS), t(centres)).numpy()
    np.testing.assert_allclose(weights, expected, rtol=1e-10)
    rng = np.random.default_rng(0)
    many = losses.source_weights(t(rng.normal(size=(200, 5))), torch.tensor(rng.integers(0, 3, 200)),
                                 t(rng.normal(size=(3, 5))))
    assert float(many.min()) >= 0.0 and float(many.max()) <= 1.0
    same_direction = losses.source_weights(t(np.array([[2.0, 0.0]])), torch.tensor([0]), t(centres))
    assert float(same_direction[0]) == pytest.approx(1.0)


def test_information_maximization_bounds():
    confident_balanced = np.eye(3)[[0, 1, 2]] * 0.999 + 0.001 / 3
    uniform = np.full((3, 3), 1 / 3)
    collapsed = np.eye(3)[[0, 0, 0]] * 0.999 + 0.001 / 3
    im = [float(losses.information_maximization(t(p))) for p in (confident_balanced, uniform, collapsed)]
    assert im[0] == pytest.approx(math.log(3), abs=0.02)
    assert im[1] == pytest.approx(0.0, abs=1e-12)
    assert im[2] == pytest.approx(0.0, abs=0.02)


def test_clustering_objective_is_minimised_by_uniform_predictions():
    """Why eq. (1) is not our label-free selector: uniform, useless predictions reach its minimum -log K."""
    uniform = np.full((6, 3), 1 / 3)
    confident = np.eye(3)[[0, 1, 2, 0, 1, 2]] * 0.9 + 0.1 / 3
    value = {name: float(losses.clustering_objective(losses.auxiliary_distribution(t(p)), t(p)))
             for name, p in (("uniform", uniform), ("confident", confident))}
    assert value["uniform"] == pytest.approx(-math.log(3), rel=1e-12)
    assert value["uniform"] <= value["confident"] + 1e-12  # no confident model can do better
