"""K-means of srdc/clustering.py against a plain NumPy Lloyd's algorithm."""

import numpy as np
import pytest
import torch

from srdc.clustering import assign, centroids_with_fallback, class_means, kmeans


def numpy_kmeans(x: np.ndarray, centres: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    centres = centres.copy()
    for _ in range(iterations):
        labels = np.array([np.argmin([((row - c) ** 2).sum() for c in centres]) for row in x])
        for k in range(len(centres)):
            if (labels == k).any():
                centres[k] = x[labels == k].mean(axis=0)
    labels = np.array([np.argmin([((row - c) ** 2).sum() for c in centres]) for row in x])
    return labels, centres


def test_kmeans_matches_numpy_lloyd_for_any_chunk_size():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(loc, 0.7, size=(30, 4)) for loc in (-2.0, 0.0, 2.5)])
    init = x[[0, 35, 70]] + 0.3
    expected_labels, expected_centres = numpy_kmeans(x, init, 5)
    for chunk in (7, 64, 4096):
        labels, centres = kmeans(torch.tensor(x), torch.tensor(init), iterations=5, chunk=chunk)
        np.testing.assert_array_equal(labels.numpy(), expected_labels)
        np.testing.assert_allclose(centres.numpy(), expected_centres, rtol=1e-10)


def test_cluster_k_keeps_meaning_class_k_when_initialised_from_class_centroids():
    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(4), 25)
    means = rng.normal(0, 5, size=(4, 8))
    x = torch.tensor(means[labels] + rng.normal(0, 0.5, size=(100, 8)))
    source_centroids, counts = class_means(x, torch.tensor(labels), 4)
    assert counts.tolist() == [25.0] * 4
    assigned, _ = kmeans(x + 0.2, source_centroids, iterations=5)
    assert (assigned.numpy() == labels).all()


def test_empty_cluster_keeps_its_centre_and_fallback_fills_missing_classes():
    x = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0]], dtype=torch.float64)
    init = torch.tensor([[0.0, 0.0], [5.0, 5.0], [100.0, 100.0]], dtype=torch.float64)
    labels, centres = kmeans(x, init, iterations=3)
    assert labels.tolist() == [0, 0, 1]
    assert centres[2].tolist() == [100.0, 100.0]
    filled = centroids_with_fallback(x, torch.tensor([0, 0, 0]), fallback=init)
    assert filled[0].tolist() == pytest.approx([5.1 / 3, 5.0 / 3])
    assert filled[1].tolist() == [5.0, 5.0] and filled[2].tolist() == [100.0, 100.0]


def test_assign_is_chunk_invariant_on_a_large_input():
    rng = np.random.default_rng(3)
    x, c = torch.tensor(rng.normal(size=(5000, 16))), torch.tensor(rng.normal(size=(31, 16)))
    full = torch.cdist(x, c).argmin(dim=1)
    assert torch.equal(assign(x, c, chunk=333), full)
