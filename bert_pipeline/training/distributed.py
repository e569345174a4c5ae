"""Multi-device training: `train.devices > 1` relaunches the train stage under torchrun (one process per device,
DDP; NCCL on GPUs, gloo on CPUs). Rank 0 writes checkpoints and the model; every rank replays the same
deterministic batch order and takes every world-th optimizer step of it, so gradients average over world x batch.

    python -m torch.distributed.run --standalone --nproc_per_node=N -m bert_pipeline.stages.train CONFIG.json

This module knows nothing of training: `launch` starts any module's `python -m` entry point under torchrun, and
`process_group` is what that entry point wraps its work in.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Iterator, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Dist":
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return cls()
        return cls(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                   int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device

    def wrap(self, model: Any, device: torch.device) -> Any:
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def shard(self, steps: list[T]) -> list[T]:
        """This rank's optimizer steps: every world-th, the same count on every rank (a remainder is dropped)."""
        usable = len(steps) // self.world * self.world or len(steps)
        return steps[self.rank:usable:self.world]

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


def launch(module: str, config: dict[str, Any], devices: int) -> None:
    """Run `python -m module CONFIG.json` under torchrun with `devices` processes; raise when any rank fails."""
    from bert_pipeline.errors import LakeStateError

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(config, handle)
    try:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={devices}",
                   "-m", module, handle.name]
        result = subprocess.run(command, check=False)
    finally:
        os.unlink(handle.name)
    if result.returncode != 0:
        raise LakeStateError(f"distributed training with {devices} processes failed (exit {result.returncode}); "
                             "the ranks' errors are in the log above")


@contextlib.contextmanager
def process_group(device: str) -> Iterator[None]:
    """The torch.distributed process group of a rank started by torchrun: NCCL when it trains on CUDA, else gloo."""
    use_cuda = torch.cuda.is_available() and device != "cpu"
    torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()
