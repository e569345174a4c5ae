"""Training checkpoints in the lake, so a killed train stage (kill -9 included) resumes where it stopped.

<root>/_work/train/<model_version>/
    checkpoint.pt   model, optimizer, scheduler and torch RNG state and where the loop stood, one file written
                    atomically (torch.save; loaded with weights_only=True, so loading cannot run code)
    best.pt         the weights of the best epoch so far (by validation macro-F1)
    progress.json   a readable copy of where the loop stood, written after checkpoint.pt

Where the loop stood is read from checkpoint.pt itself, never from progress.json: the two are separate writes, and a
kill between them would pair step N's counters with step N+k's weights (the resumed model then differs from an
uninterrupted run's). progress.json is only read for a checkpoint.pt written before it held its progress.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field, fields
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
    fold_counts: list[Any] = field(default_factory=list)  # per epoch, evaluation.selection's [FOLDS, labels, 3]


def _to_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _load(url: str) -> Any:
    return torch.load(io.BytesIO(storage.read_bytes(url)), map_location="cpu", weights_only=True)


class CheckpointStore:
    """Checkpoints of a resumable loop: fine-tuning (`Progress`) or domain adaptation (`training.adapt`, its own
    progress dataclass). `writer` is False on every DDP rank but 0: they read checkpoints, never write them."""

    def __init__(self, folder: str, writer: bool = True, progress_type: type = Progress) -> None:
        self.folder = folder
        self.writer = writer
        self.progress_type = progress_type
        self._state: dict[str, Any] | None = None  # the checkpoint load_progress read, for restore

    def load_progress(self) -> Any:
        """The progress dataclass saved in the last checkpoint (keys it does not know are ignored); None without
        one. Reads checkpoint.pt, so the progress always belongs to the weights `restore` will load."""
        url = storage.join(self.folder, "checkpoint.pt")
        if not storage.exists(url):
            self._state = None
            return None
        self._state = _load(url)
        data = self._state.get("progress")
        if data is None:  # a checkpoint written before checkpoints held their progress
            data = storage.read_json(storage.join(self.folder, "progress.json"))
        if not isinstance(data, dict):
            return None
        names = {f.name for f in fields(self.progress_type)}
        return self.progress_type(**{k: v for k, v in data.items() if k in names})

    def save(self, progress: Any, model: Any, optimizer: Any, scheduler: Any, scaler: Any = None,
             extra: dict[str, torch.Tensor] | None = None) -> None:
        """checkpoint.pt (model, optimizer, scheduler, grad scaler, torch RNG, the `extra` tensors and
        asdict(progress)) in one atomic write, then progress.json, its readable copy."""
        if not self.writer:
            return
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                 "scaler": scaler.state_dict() if scaler is not None else {}, **(extra or {}),
                 "progress": asdict(progress)}
        storage.write_bytes_atomic(storage.join(self.folder, "checkpoint.pt"), _to_bytes(state))
        storage.write_json_atomic(storage.join(self.folder, "progress.json"), asdict(progress))

    def restore(self, model: Any, optimizer: Any, scheduler: Any, scaler: Any = None) -> dict[str, Any]:
        """Load the checkpoint into the given objects and the torch RNG; returns the whole saved state (for the
        `extra` tensors it was saved with). Uses the checkpoint `load_progress` read, when it read one."""
        state = self._state if self._state is not None else _load(storage.join(self.folder, "checkpoint.pt"))
        self._state = None
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if scaler is not None and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        return state

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
        self._state = None
        storage.remove([self.folder])
