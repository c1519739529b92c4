"""One run on N data-parallel worker processes on one machine (``srdc-train --workers N``): the process group, the
split of a global batch over the ranks, the gathers, the gradients' all-reduce and a synchronised BatchNorm.

Every rank draws the same global batch from the same seeded generator (data loading is replicated), runs the network
on its contiguous slice of it and all-gathers the outputs with autograd, so that the method computes its loss on the
global outputs, identically on every rank. The backward of the gather sums the N identical losses' gradients of each
slice, so every rank's network gradient is N times its slice's share: the sum over the ranks, divided by N
(:meth:`Group.average_gradients`), is the one-worker gradient. A parameter the method owns (SRDC's centres, DANN's
discriminator) sees the global outputs only and gets the full gradient on every rank. gloo on a CPU, nccl on CUDA
(one GPU per rank).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import nn
from torch.multiprocessing.spawn import ProcessException
from torch.nn.modules.batchnorm import _BatchNorm

from srdc.errors import NonFiniteLossError, SRDCInputError
from srdc.model import BATCHNORM_STATE

# a worker's errors that its parent raises again as they are (the command line's one-line errors)
RAISED_AGAIN = (SRDCInputError, NonFiniteLossError, OSError)


@dataclass(frozen=True)
class Group:
    """This process's place in the run's process group: ``rank`` of ``size`` workers (rank 0 writes the run)."""

    rank: int
    size: int

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def bounds(self, rows: int) -> tuple[int, int]:
        """This rank's contiguous share ``[start, stop)`` of ``rows`` rows (the first ``rows % size`` ranks take one
        more, as :func:`torch.tensor_split`)."""
        base, extra = divmod(rows, self.size)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + int(self.rank < extra)

    def gather_rows(self, local: torch.Tensor, rows: int) -> torch.Tensor:
        """The ``rows`` rows whose share :meth:`bounds` gave each rank, in order, on every rank; with autograd (the
        backward sums every rank's gradient of this rank's rows). Shares are padded to one size for the gather."""
        longest = -(-rows // self.size)
        padded = F.pad(local, (0, 0) * (local.dim() - 1) + (0, longest - len(local)))
        parts = dist_nn.all_gather(padded)
        sizes = [Group(rank, self.size).bounds(rows) for rank in range(self.size)]
        return torch.cat([part[: stop - start] for part, (start, stop) in zip(parts, sizes, strict=True)])

    def average_gradients(self, parameters: list[nn.Parameter]) -> None:
        """Sum the gradients of ``parameters`` over the ranks and divide by the number of ranks (one all-reduce)."""
        grads = [param.grad for param in parameters if param.grad is not None]
        flat = torch.cat([grad.reshape(-1) for grad in grads])
        dist.all_reduce(flat)
        flat /= self.size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset: offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm's running statistics) on every rank, as ``DataParallel`` keeps its first
        replica's."""
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over the global batch of all ranks (``--batchnorm_sync sync``), on a CPU as on CUDA (torch's
    ``SyncBatchNorm`` refuses CPU tensors): the mean, then the biased variance about it, each summed over the ranks
    by an all-reduce with autograd; running statistics with the global count (unbiased variance), as one worker's
    ``BatchNorm`` on the whole batch. Evaluation mode, and a pass without gradients (the preparation pass's
    statistics with ``prep_batchnorm domain``: every rank runs it on the same batches), are plain BatchNorm's."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(input)
        x = input.float()
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.full((1,), x.numel() // x.size(1), dtype=x.dtype, device=x.device)
        total = dist_nn.all_reduce(torch.cat([x.sum(dims), count]))
        n = total[-1].detach()
        mean = total[:-1] / n
        centred = x - mean.view(shape)
        var = dist_nn.all_reduce((centred * centred).sum(dims)) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        self._track(mean.detach(), var.detach(), float(n))
        return out.to(input.dtype)

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        self.num_batches_tracked += 1
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(var * n / max(n - 1.0, 1.0), factor)


def synchronise_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm replaced by a :class:`SyncBatchNorm` that shares its parameters and buffers
    (the state dict's keys and values stay the same)."""
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        synced = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        synced.weight, synced.bias = module.weight, module.bias
        for name in BATCHNORM_STATE:
            setattr(synced, name, getattr(module, name))
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        setattr(module, name, synchronise_batchnorm(child))
    return module


def launch(workers: int, target: Callable[..., None], args: tuple[Any, ...], cuda: bool = False) -> None:
    """Run ``target(group, *args)`` in ``workers`` new processes joined in one process group (gloo on a CPU, nccl and
    one GPU per rank on CUDA) on a free localhost port, with this process's torch threads; returns when all end. A
    worker's error of :data:`RAISED_AGAIN` is raised here as it is (bad input, a diverged run and a full disk stay
    one line); any other error as torch's, with the worker's traceback."""
    context = torch.multiprocessing.get_context("spawn")
    errors = context.SimpleQueue()
    try:
        torch.multiprocessing.spawn(_worker, args=(workers, _free_port(), torch.get_num_threads(), cuda, errors,
                                                   target, args), nprocs=workers, join=True)
    except ProcessException:
        if errors.empty():
            raise
        raise errors.get() from None


def _worker(rank: int, size: int, port: int, threads: int, cuda: bool, errors: Any,
            target: Callable[..., None], args: tuple[Any, ...]) -> None:
    torch.set_num_threads(threads)
    if cuda:
        torch.cuda.set_device(rank)
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=size)
    try:
        target(Group(rank, size), *args)
    except RAISED_AGAIN as error:
        errors.put(error)
        raise
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
