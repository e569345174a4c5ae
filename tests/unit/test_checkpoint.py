"""Training checkpoints: where the loop stood always belongs to the weights that are restored, whatever moment a kill
picks (the crash harness found a resumed model differing from an uninterrupted one about once in 14 trials)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from bert_pipeline.lake import storage
from bert_pipeline.training.checkpoint import CheckpointStore, Progress


class Killed(Exception):
    """Stands for SIGKILL at one write: nothing after it runs."""


def _loop(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def _steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: object, n: int) -> None:
    for _ in range(n):
        optimizer.zero_grad()
        model(torch.randn(3, 4)).pow(2).sum().backward()
        optimizer.step()
        scheduler.step()


def test_a_kill_between_the_checkpoint_and_its_readable_copy_resumes_at_the_checkpoints_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = CheckpointStore(str(tmp_path / "work"))
    model, optimizer, scheduler = _loop()
    _steps(model, optimizer, scheduler, 3)
    store.save(Progress(global_step=3, step_in_epoch=3), model, optimizer, scheduler)
    _steps(model, optimizer, scheduler, 3)
    at_six = {k: v.clone() for k, v in model.state_dict().items()}

    def killed(*args: object, **kwargs: object) -> None:
        raise Killed
    monkeypatch.setattr(storage, "write_json_atomic", killed)  # checkpoint.pt of step 6 lands, progress.json does not
    with pytest.raises(Killed):
        store.save(Progress(global_step=6, step_in_epoch=6), model, optimizer, scheduler)
    monkeypatch.undo()
    assert json.loads((tmp_path / "work" / "progress.json").read_text())["global_step"] == 3  # the stale copy

    rerun = CheckpointStore(str(tmp_path / "work"))
    fresh, fresh_optimizer, fresh_scheduler = _loop(seed=1)
    progress = rerun.load_progress()
    rerun.restore(fresh, fresh_optimizer, fresh_scheduler)
    assert progress.global_step == 6 and progress.step_in_epoch == 6  # the step of the weights restored, not 3
    assert all(torch.equal(fresh.state_dict()[k], at_six[k]) for k in at_six)
    assert fresh_scheduler.last_epoch == 6


def test_progress_round_trips_through_the_checkpoint_with_its_history(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "work"))
    assert store.load_progress() is None
    model, optimizer, scheduler = _loop()
    progress = Progress(epoch=2, global_step=40, best_macro_f1=0.71, best_epoch=1, bad_epochs=1,
                        history=[{"epoch": 1, "train_loss": 0.6, "validation_loss": None, "validation_macro_f1": 0.7}])
    store.save(progress, model, optimizer, scheduler)
    assert asdict(CheckpointStore(str(tmp_path / "work")).load_progress()) == asdict(progress)
    store.clear()
    assert CheckpointStore(str(tmp_path / "work")).load_progress() is None


def test_a_checkpoint_written_before_it_held_its_progress_still_resumes(tmp_path: Path) -> None:
    store = CheckpointStore(str(tmp_path / "work"))
    model, optimizer, scheduler = _loop()
    store.save(Progress(global_step=9), model, optimizer, scheduler)
    state = torch.load(tmp_path / "work" / "checkpoint.pt", weights_only=True)
    del state["progress"]
    torch.save(state, tmp_path / "work" / "checkpoint.pt")
    assert CheckpointStore(str(tmp_path / "work")).load_progress().global_step == 9
