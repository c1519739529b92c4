"""``srdc.batches``: full batches per pass, endless reshuffled batches, reproducibility, ordered evaluation batches."""

import itertools

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from srdc.batches import batches_per_pass, endless_batches, ordered_batches
from srdc.data.base import Domain, tensor_domain

CLASSES = ["a", "b", "c"]


class NumberedImages(Dataset):
    """An image-like dataset (not a ``TensorDataset``): item i is a 1x2x2 image filled with i, label i mod 3."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.full((1, 2, 2), float(index)), index % 3


def image_domain(size: int) -> Domain:
    dataset = NumberedImages(size)
    return Domain(name="images", classes=CLASSES, labels=np.arange(size) % 3, train_set=dataset, eval_set=dataset)


def memory_domain(size: int) -> Domain:
    inputs = torch.arange(size, dtype=torch.float32).reshape(size, 1, 1, 1).expand(size, 1, 2, 2).contiguous()
    return tensor_domain("memory", CLASSES, inputs, torch.arange(size) % 3)


def first_batches(domain: Domain, batch_size: int, count: int, seed: int) -> list:
    generator = torch.Generator().manual_seed(seed)
    return list(itertools.islice(endless_batches(domain, batch_size, generator), count))


@pytest.mark.parametrize("size, batch_size, expected", [(10, 4, 2), (8, 4, 2), (64, 64, 1), (3, 4, 1), (129, 64, 2)])
def test_batches_per_pass_drops_the_partial_batch_and_is_at_least_one(size, batch_size, expected):
    assert batches_per_pass(size, batch_size) == expected


@pytest.mark.parametrize("make_domain", [memory_domain, image_domain])
def test_every_pass_is_a_fresh_permutation_without_the_partial_batch(make_domain):
    batches = first_batches(make_domain(10), batch_size=4, count=6, seed=0)
    assert [len(index) for _, _, index in batches] == [4] * 6
    passes = [torch.cat([index for _, _, index in batches[k:k + 2]]).tolist() for k in (0, 2, 4)]
    assert all(len(set(p)) == 8 and set(p) <= set(range(10)) for p in passes)
    assert passes[0] != passes[1] != passes[2]


@pytest.mark.parametrize("make_domain", [memory_domain, image_domain])
def test_inputs_and_labels_are_the_samples_at_the_indices(make_domain):
    for inputs, labels, index in first_batches(make_domain(10), batch_size=4, count=5, seed=1):
        assert inputs.shape == (4, 1, 2, 2)
        assert torch.equal(inputs[:, 0, 0, 0], index.float())
        assert torch.equal(labels, index % 3)


def test_a_domain_smaller_than_a_batch_is_one_whole_batch_per_pass():
    batches = first_batches(memory_domain(3), batch_size=4, count=2, seed=0)
    assert [sorted(index.tolist()) for _, _, index in batches] == [[0, 1, 2], [0, 1, 2]]


@pytest.mark.parametrize("make_domain", [memory_domain, image_domain])
def test_the_same_generator_state_gives_the_same_batches(make_domain):
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    first = [index.tolist() for _, _, index in itertools.islice(endless_batches(make_domain(10), 4, generator), 6)]
    generator.set_state(state)
    again = [index.tolist() for _, _, index in itertools.islice(endless_batches(make_domain(10), 4, generator), 6)]
    assert first == again
    other = [index.tolist() for _, _, index in first_batches(make_domain(10), 4, count=6, seed=6)]
    assert other != first


def test_the_dataloader_path_draws_the_same_first_pass_as_the_in_memory_path():
    memory = first_batches(memory_domain(10), batch_size=4, count=2, seed=3)
    images = first_batches(image_domain(10), batch_size=4, count=2, seed=3)
    for (m_inputs, m_labels, m_index), (i_inputs, i_labels, i_index) in zip(memory, images, strict=True):
        assert torch.equal(m_index, i_index) and torch.equal(m_labels, i_labels)
        assert torch.equal(m_inputs, i_inputs)


@pytest.mark.parametrize("make_domain", [memory_domain, image_domain])
def test_ordered_batches_cover_every_sample_once_in_order(make_domain):
    batches = list(ordered_batches(make_domain(10), batch_size=4))
    assert [len(labels) for _, labels in batches] == [4, 4, 2]
    inputs = torch.cat([inputs for inputs, _ in batches])
    assert inputs[:, 0, 0, 0].tolist() == list(range(10))
    assert torch.cat([labels for _, labels in batches]).tolist() == [i % 3 for i in range(10)]
