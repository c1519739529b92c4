"""Mini-batches for training: endless, shuffled by a generator the trainer owns (and checkpoints).

An epoch draws ``max(#source batches, #target batches)`` iterations; the shorter domain restarts with a fresh
permutation when exhausted (released code). In-memory domains are indexed directly; image domains go through
a ``DataLoader`` whose batches are the same index lists, so worker count does not change which samples are drawn.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from srdc.data.base import Domain

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def batches_per_pass(size: int, batch_size: int) -> int:
    """Full batches in one pass (the last partial batch is dropped; a domain smaller than a batch is one batch)."""
    return max(1, size // batch_size)


def _index_batches(size: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(size, generator=generator)
    if size < batch_size:
        return [order]
    return list(order[: batches_per_pass(size, batch_size) * batch_size].split(batch_size))


def _load(domain: Domain, index_batches: list[torch.Tensor], generator: torch.Generator,
          num_workers: int, pin_memory: bool) -> Iterator[Batch]:
    dataset = domain.train_set
    if isinstance(dataset, TensorDataset):
        inputs, labels = dataset.tensors
        for index in index_batches:
            yield inputs[index], labels[index], index
        return
    seed = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator)))
    loader = DataLoader(dataset, batch_sampler=[b.tolist() for b in index_batches], num_workers=num_workers,
                        pin_memory=pin_memory, generator=seed)
    for (inputs, labels), index in zip(loader, index_batches, strict=True):
        yield inputs, labels, index


def endless_batches(domain: Domain, batch_size: int, generator: torch.Generator,
                    num_workers: int = 0, pin_memory: bool = False) -> Iterator[Batch]:
    """``(inputs, labels, indices)`` forever; a new permutation at every pass."""
    while True:
        index_batches = _index_batches(len(domain), batch_size, generator)
        yield from _load(domain, index_batches, generator, num_workers, pin_memory)


def ordered_batches(domain: Domain, batch_size: int, num_workers: int = 0, pin_memory: bool = False,
                    rows: tuple[int, int] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The evaluation view in index order, for the no-grad preparation pass; only its rows ``[start, stop)`` when
    ``rows`` is given (a data-parallel worker's share)."""
    dataset = domain.eval_set
    start, stop = rows if rows is not None else (0, len(dataset))
    if isinstance(dataset, TensorDataset):
        inputs, labels = (tensor[start:stop] for tensor in dataset.tensors)
        yield from zip(inputs.split(batch_size), labels.split(batch_size), strict=True)
        return
    yield from DataLoader(Subset(dataset, range(start, stop)) if rows is not None else dataset, batch_size=batch_size,
                          shuffle=False, num_workers=num_workers, pin_memory=pin_memory)
