"""Training runs that lose nothing: exact resume with DataLoader workers after SIGKILL, an interrupt that leaves a
resumable checkpoint, one writer per run folder, and a metrics log that matches the checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import tiny_config, write_faces

from awing.config import ConfigError, config_to_dict
from awing.data.training import EpochSampler
from awing.engine import train as train_module
from awing.engine.run_folder import LOCK_NAME, prepare_metrics, run_lock
from awing.engine.train import train
from awing.models.weights import load_checkpoint

# The shipped smoke recipe's loader settings (configs/aflw_smoke.yaml: one worker, Adam, a milestone) on 16
# synthetic faces: 4 steps per epoch, 3 epochs.
SMOKE = {
    "data": {"num_workers": 1, "batch_size": 4},
    "schedule": {"epochs": 3, "milestones": [2]},
    "run": {"log_every": 1},
}

KILLER = """
import json, os, signal, sys
from awing.config import config_from_dict
from awing.engine import train as train_module
from awing.engine.train import train

calls = 0
forward = train_module.StackedHeatmapLoss.forward

def forward_then_die(self, *args):
    global calls
    calls += 1
    if calls == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    return forward(self, *args)

train_module.StackedHeatmapLoss.forward = forward_then_die
train(config_from_dict(json.loads(sys.argv[1])), progress=False)
"""


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    write_faces(root / "train", 16, seed=0)
    write_faces(root / "val", 4, seed=1)
    return root


def losses(run_dir: Path) -> dict[int, float]:
    """Per-step training losses of a run's metrics.jsonl (each step must appear once)."""
    out: dict[int, float] = {}
    for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "loss" in record:
            assert record["step"] not in out, f"step {record['step']} logged twice"
            out[record["step"]] = record["loss"]
    return out


def test_epoch_sampler_order_depends_on_seed_and_epoch_only():
    a, b = EpochSampler(50, seed=3), EpochSampler(50, seed=3)
    for epoch in (0, 1, 2):
        a.set_epoch(epoch)
        list(a)  # a continued sampler ...
    b.set_epoch(2)  # ... and a fresh one agree
    assert list(a) == list(b) and sorted(b) == list(range(50))
    b.set_epoch(1)
    assert list(b) != list(a)
    with pytest.raises(ValueError, match="start must be in"):
        b.set_epoch(0, start=51)


@pytest.mark.slow  # three short trainings with a spawned DataLoader worker each
def test_sigkill_mid_epoch_then_resume_equals_uninterrupted_run_with_workers(faces_root, tmp_path):
    straight = train(tiny_config(faces_root, tmp_path / "a", **SMOKE), progress=False)
    cfg = tiny_config(faces_root, tmp_path / "b", **SMOKE)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # the 7th loss is step 7 of 12, in the middle of epoch 2: last.pt is the end of epoch 1
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, json.dumps(config_to_dict(cfg)), "7"], env=env, capture_output=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1
    assert max(losses(tmp_path / "b")) == 6  # the killed run logged steps past its checkpoint
    assert (tmp_path / "b" / LOCK_NAME).exists()  # the killed process's lock: stale, taken over below
    run = {**SMOKE["run"], "resume": str(tmp_path / "b" / "last.pt")}
    resumed = train(tiny_config(faces_root, tmp_path / "b", **{**SMOKE, "run": run}), progress=False)
    assert resumed.step == straight.step == 12
    assert losses(tmp_path / "b") == losses(tmp_path / "a")  # same loss at every step, each step once
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_interrupt_in_epoch_one_leaves_a_resumable_checkpoint(faces_root, tmp_path, monkeypatch):
    sections = {"schedule": {"epochs": 2, "milestones": [10]}, "data": {"max_samples": 12}, "run": {"log_every": 1}}
    straight = train(tiny_config(faces_root, tmp_path / "a", **sections), progress=False)
    forward, calls = train_module.StackedHeatmapLoss.forward, []

    def ctrl_c_in_second_step(self, *args):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of step 2: the step completes first
        return forward(self, *args)

    monkeypatch.setattr(train_module.StackedHeatmapLoss, "forward", ctrl_c_in_second_step)
    with pytest.raises(KeyboardInterrupt, match="last.pt at step 2: --resume continues"):
        train(tiny_config(faces_root, tmp_path / "b", **sections), progress=False)
    monkeypatch.undo()
    state = load_checkpoint(tmp_path / "b" / "last.pt")
    assert (state["epoch"], state["step"], state["epoch_step"]) == (0, 2, 2)
    assert not (tmp_path / "b" / "best.pt").exists() and not (tmp_path / "b" / LOCK_NAME).exists()
    run = {**sections["run"], "resume": str(tmp_path / "b" / "last.pt")}
    resumed = train(tiny_config(faces_root, tmp_path / "b", **{**sections, "run": run}), progress=False)
    assert resumed.step == straight.step == 6
    assert losses(tmp_path / "b") == losses(tmp_path / "a")
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_fresh_run_in_an_old_folder_does_not_append(faces_root, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 99, "loss": 1.0}\n{"step": 100, "lo', encoding="utf-8")
    train(tiny_config(faces_root, run_dir, schedule={"epochs": 1}, data={"max_samples": 4}), progress=False)
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1]  # the epoch summary of the one step: nothing of the old run


def test_prepare_metrics_keeps_the_steps_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\nnot json\n{"step": 2}\n{"step": 4', encoding="utf-8")
    prepare_metrics(path, 2)
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n{"step": 2}\n'
    prepare_metrics(path, None)
    assert not path.exists()
    prepare_metrics(tmp_path / "absent.jsonl", 3)  # nothing to trim


class TestRunLock:
    def test_second_writer_stops_with_the_owner_named(self, tmp_path):
        with run_lock(tmp_path) as lock:
            assert lock.read_text().split()[1] == str(os.getpid())
            with pytest.raises(ConfigError, match=rf"in use by training process {os.getpid()} .*{LOCK_NAME}"):
                with run_lock(tmp_path):
                    pass
        assert not lock.exists()

    def test_stale_lock_of_a_dead_process_is_taken_over(self, tmp_path):
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        import socket

        (tmp_path / LOCK_NAME).write_text(f"{socket.gethostname()} {int(dead.stdout)}\n")
        with run_lock(tmp_path) as lock:
            assert lock.read_text().split()[1] == str(os.getpid())

    def test_training_in_a_locked_folder_fails_and_leaves_it_alone(self, faces_root, tmp_path, capsys):
        run_dir = tmp_path / "run"
        with run_lock(run_dir):
            with pytest.raises(ConfigError, match="in use by training process"):
                train(tiny_config(faces_root, run_dir, data={"max_samples": 4}), progress=False)
            assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]
