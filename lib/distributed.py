"""Several processes under ``torchrun``: the process group, who does what, what they share.

``torchrun --nproc_per_node=N -m lib.cli stage ...`` starts N processes with ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` set; ``init`` joins them in one process group (NCCL on
GPUs, gloo on the CPU). Without torchrun (``WORLD_SIZE`` unset or 1) nothing is initialised,
``World()`` stands for the one process, and every function here does what one process does.

What is shared how:

- the attacks and the feature extraction are split by class (``World.shard``: class i goes
  to rank i mod N) and their per-class results gathered on every rank (``gather_parts``);
- the training stages are data-parallel (``data_parallel``: ``DistributedDataParallel``,
  ``SyncBatchNorm`` on GPUs) with per-rank seeds (``lib.seeding.rank_seed``);
- only rank 0 writes artefacts, the manifest and partial states; ``main_first`` lets rank 0
  load or build an input first and the other ranks load it afterwards.
"""
from __future__ import annotations

import datetime
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .errors import InputError

T = TypeVar("T")
TIMEOUT = datetime.timedelta(minutes=60)
"""How long a rank waits for the others at a collective (rank 0 may build an input alone)."""
_DTYPES = (torch.float32, torch.float64, torch.int64, torch.uint8, torch.bfloat16,
           torch.float16, torch.int32, torch.bool)
_MAX_DIMS = 8


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` processes (one process: rank 0 of 1)."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def comm_device(self) -> torch.device:
        """Where tensors must be for a collective (NCCL: this process's GPU)."""
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    @property
    def record(self) -> dict:
        """What an artefact's metadata records of the processes that made it: nothing for one
        process (its artefacts keep their bytes), else ``world_size``."""
        return {"world_size": self.size} if self.distributed else {}

    def shard(self, items: Iterable[T]) -> list[T]:
        """This rank's share of ``items``: item i goes to rank i mod size."""
        return list(items)[self.rank::self.size]

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


SINGLE = World()


def launched() -> bool:
    """Whether torchrun started this process (torch reads its environment)."""
    return dist.is_available() and dist.is_torchelastic_launched()


def from_group() -> World:
    """This process's ``World`` in the initialised default process group."""
    rank = dist.get_rank()
    return World(rank, dist.get_world_size(), dist.get_node_local_rank(fallback_rank=rank),
                 dist.get_backend())


def init(device: str = "cpu") -> World:
    """Join the process group torchrun describes (``device`` "cuda": NCCL, one GPU per
    process, the node-local rank's; else gloo). The group already joined when there is one
    (the tests make theirs); the one-process ``World`` when torchrun started one process or
    none."""
    if not dist.is_available():
        return SINGLE
    created = not dist.is_initialized() and launched()
    if created:
        if str(device).startswith("cuda"):
            gpu = torch.device("cuda", dist.get_node_local_rank(fallback_rank=0))
            torch.cuda.set_device(gpu)
            dist.init_process_group("nccl", timeout=TIMEOUT, device_id=gpu)
        else:
            dist.init_process_group("gloo", timeout=TIMEOUT)
    if not dist.is_initialized():
        return SINGLE
    world = from_group()
    if world.size == 1:
        if created:
            dist.destroy_process_group()
        return SINGLE
    return world


def shutdown(world: World) -> None:
    """Leave the process group (after a last barrier, so that no rank leaves early)."""
    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@contextmanager
def main_first(world: World) -> Iterator[None]:
    """Rank 0 runs the block first (it loads, or builds and writes, an input), then the other
    ranks run it (they load what rank 0 wrote)."""
    if not world.main:
        world.barrier()
    yield
    if world.main:
        world.barrier()


# ------------------------------------------------------------------------------ collectives
def broadcast_tensor(tensor: torch.Tensor | None, src: int, world: World) -> torch.Tensor:
    """``tensor`` of rank ``src`` on every rank (on the CPU); its shape and dtype travel
    first, so the other ranks pass None. One process: the tensor itself."""
    if not world.distributed:
        if tensor is None:
            raise InputError("broadcast_tensor: the source rank must pass a tensor")
        return tensor
    header = torch.zeros(_MAX_DIMS + 2, dtype=torch.int64, device=world.comm_device)
    if world.rank == src:
        if tensor.ndim > _MAX_DIMS or tensor.dtype not in _DTYPES:
            raise InputError(f"cannot broadcast a {tensor.dtype} tensor of {tensor.ndim} dims")
        header[0], header[1] = _DTYPES.index(tensor.dtype), tensor.ndim
        header[2:2 + tensor.ndim] = torch.tensor(tensor.shape, dtype=torch.int64)
    dist.broadcast(header, src)
    dtype, ndim = _DTYPES[int(header[0])], int(header[1])
    shape = [int(v) for v in header[2:2 + ndim]]
    if world.rank == src:
        buffer = tensor.detach().to(world.comm_device).contiguous()
    else:
        buffer = torch.empty(shape, dtype=dtype, device=world.comm_device)
    dist.broadcast(buffer, src)
    return buffer.cpu() if world.rank != src else tensor.detach().cpu()


def all_gather_tensor(tensor: torch.Tensor, world: World) -> list[torch.Tensor]:
    """Every rank's ``tensor`` (any shapes), in rank order, on every rank (on the CPU)."""
    return [broadcast_tensor(tensor if r == world.rank else None, r, world)
            for r in range(world.size)]


def broadcast_flag(flag: bool, world: World) -> bool:
    """Rank 0's ``flag`` on every rank (a decision all ranks must share)."""
    if not world.distributed:
        return flag
    value = torch.tensor([int(flag)], device=world.comm_device)
    dist.broadcast(value, 0)
    return bool(value.item())


def gather_parts(parts: Mapping[int, Mapping[str, torch.Tensor]], items: Sequence[int],
                 world: World) -> dict[int, dict[str, torch.Tensor]]:
    """Every item's part (a dict of tensors) on every rank, where each rank computed the parts
    of its ``world.shard(items)``. One process: ``parts`` as they are."""
    if not world.distributed:
        return {i: dict(parts[i]) for i in items}
    gathered: dict[int, dict[str, torch.Tensor]] = {}
    for position, item in enumerate(items):
        owner = position % world.size
        mine = parts.get(item) if owner == world.rank else None
        if owner == world.rank and mine is None:
            raise InputError(f"rank {world.rank} has no part for item {item} of its share")
        keys = sorted(mine) if mine is not None else None
        n_keys = int(broadcast_tensor(torch.tensor(len(keys)) if keys else None, owner, world))
        part = {}
        for k in range(n_keys):
            name = broadcast_tensor(torch.tensor(list(keys[k].encode()), dtype=torch.uint8)
                                    if keys else None, owner, world)
            key = bytes(name.tolist()).decode()
            part[key] = broadcast_tensor(mine[key] if mine is not None else None, owner, world)
        gathered[item] = part
    return gathered


# ------------------------------------------------------------------------------ training
def local_batch(batch_size: int, world: World) -> int:
    """Each rank's share of a global batch of ``batch_size`` (it must divide evenly)."""
    if batch_size % world.size:
        raise InputError(f"the batch of {batch_size} does not split over {world.size} "
                         f"processes; use a number of processes that divides it")
    return batch_size // world.size


def sync_batchnorm(model: nn.Module, device: str) -> nn.Module:
    """``model`` with its batch norms as ``SyncBatchNorm`` (statistics over every rank's
    batch) on GPUs; unchanged on the CPU, where SyncBatchNorm cannot run (each rank then
    normalises by its own batch)."""
    if str(device).startswith("cuda"):
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def data_parallel(model: nn.Module, world: World, device: str) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel`` (gradients averaged over the ranks);
    the model itself in one process. Convert its batch norms first (``sync_batchnorm``)."""
    if not world.distributed:
        return model
    ids = [world.local_rank] if str(device).startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` wrapper (else ``model``)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
