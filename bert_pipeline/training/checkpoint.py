"""Training checkpoints in the lake, so a killed train stage (kill -9 included) resumes where it stopped.

<root>/_work/train/<model_version>/
    checkpoint.pt   model, optimizer, scheduler and torch RNG state (torch.save; loaded with weights_only=True,
                    so loading cannot run code)
    best.pt         the weights of the best epoch so far (by validation macro-F1)
    progress.json   where the loop stood; written last, so it only ever points at complete files
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bert_pipeline.lake import storage


@dataclass
class Progress:
    epoch: int = 0  # the epoch in progress (0-based)
    step_in_epoch: int = 0  # optimizer steps done in that epoch
    global_step: int = 0
    best_macro_f1: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def _to_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _load(url: str) -> Any:
    return torch.load(io.BytesIO(storage.read_bytes(url)), map_location="cpu", weights_only=True)


class CheckpointStore:
    """`writer` is False on every DDP rank but 0: they read checkpoints, never write them."""

    def __init__(self, folder: str, writer: bool = True) -> None:
        self.folder = folder
        self.writer = writer

    def load_progress(self) -> Progress | None:
        data = storage.read_json(storage.join(self.folder, "progress.json"))
        return Progress(**data) if data else None

    def save(self, progress: Progress, model: Any, optimizer: Any, scheduler: Any, scaler: Any = None) -> None:
        if not self.writer:
            return
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                 "scaler": scaler.state_dict() if scaler is not None else {}}
        storage.write_bytes_atomic(storage.join(self.folder, "checkpoint.pt"), _to_bytes(state))
        storage.write_json_atomic(storage.join(self.folder, "progress.json"), asdict(progress))

    def restore(self, model: Any, optimizer: Any, scheduler: Any, scaler: Any = None) -> None:
        state = _load(storage.join(self.folder, "checkpoint.pt"))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])

    def save_best(self, model: Any) -> None:
        if not self.writer:
            return
        storage.write_bytes_atomic(storage.join(self.folder, "best.pt"), _to_bytes(model.state_dict()))

    def load_best(self, model: Any) -> bool:
        url = storage.join(self.folder, "best.pt")
        if not storage.exists(url):
            return False
        model.load_state_dict(_load(url))
        return True

    def clear(self) -> None:
        storage.remove([self.folder])
