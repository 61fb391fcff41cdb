"""Rank and world size from the environment torchrun and Kubeflow Trainer set (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR/PORT); gloo on CPU, nccl on GPU; metric reduction; "one process logs"."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def read_dist_env(env: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, world_size, local_rank); torchrun's names, with the SLURM/OpenMPI ones as fallbacks."""
    env = os.environ if env is None else env

    def first(*names: str, default: int) -> int:
        for name in names:
            if env.get(name, "") != "":
                return int(env[name])
        return default

    rank = first("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", default=0)
    world = first("WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", default=1)
    local = first("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK", default=0)
    return rank, world, local


def init_distributed(*, device: str = "auto", env: Mapping[str, str] | None = None) -> DistInfo:
    """Initialise the process group when WORLD_SIZE > 1 (nccl with CUDA, gloo otherwise) and pick the device."""
    rank, world, local = read_dist_env(env)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_sum(info: DistInfo, values: list[float]) -> list[float]:
    """Sum a small vector of floats over ranks (float64 so counts stay exact)."""
    if not info.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=info.device if info.device != "cpu" else "cpu")
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def all_reduce_max(info: DistInfo, value: float) -> float:
    if not info.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=info.device if info.device != "cpu" else "cpu")
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def gather_objects(info: DistInfo, obj: Any) -> list[Any]:
    """Every rank's ``obj`` on every rank (small things only: RNG states, positions)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(info: DistInfo, obj: Any) -> Any:
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
