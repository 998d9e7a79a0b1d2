from __future__ import annotations

import math
import os
import random
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from awing.config import TrainConfig, config_from_dict, config_to_dict
from awing.engine import checkpoint as checkpoint_module
from awing.engine.checkpoint import CheckpointManager, save_checkpoint
from awing.engine.seeding import rng_state, seed_everything, set_rng_state
from awing.models.weights import load_checkpoint


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


class TestSaveCheckpoint:
    def test_round_trip(self, tmp_path):
        state = {
            "epoch": 3,
            "w": torch.arange(6.0).reshape(2, 3),
            "nested": {"a": [1, 2.5, None, "x", True], "t": (torch.zeros(1, dtype=torch.int8), 7)},
            "od": OrderedDict(b=torch.ones(2)),
            "config": config_to_dict(TrainConfig()),
        }
        path = save_checkpoint(tmp_path / "sub" / "c.pt", state)
        assert path == tmp_path / "sub" / "c.pt"
        loaded = load_checkpoint(path)
        assert loaded["epoch"] == 3 and torch.equal(loaded["w"], state["w"])
        assert loaded["nested"]["a"] == [1, 2.5, None, "x", True]
        assert loaded["nested"]["t"][0].dtype == torch.int8 and loaded["nested"]["t"][1] == 7
        assert torch.equal(loaded["od"]["b"], torch.ones(2))
        assert config_from_dict(loaded["config"]) == TrainConfig()
        assert _leftovers(path.parent) == []

    @pytest.mark.parametrize("fail_in", ["torch.save", "os.replace"])
    def test_failure_keeps_previous_file_and_leaves_no_temp(self, tmp_path, monkeypatch, fail_in):
        path = tmp_path / "last.pt"
        save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)})
        before = path.read_bytes()
        real_save = torch.save

        def broken_save(obj, f):
            real_save(obj, f)
            f.write(b"partial")
            raise OSError("disk full")

        def broken_replace(src, dst):
            raise OSError("rename failed")

        if fail_in == "torch.save":
            monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
        else:
            monkeypatch.setattr(checkpoint_module.os, "replace", broken_replace)
        with pytest.raises(OSError, match="disk full|rename failed"):
            save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
        assert path.read_bytes() == before
        assert load_checkpoint(path)["epoch"] == 1
        assert _leftovers(tmp_path) == []

    def test_interrupt_cleans_up(self, tmp_path, monkeypatch):
        def interrupted(obj, f):
            raise KeyboardInterrupt

        monkeypatch.setattr(checkpoint_module.torch, "save", interrupted)
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(tmp_path / "c.pt", {"epoch": 1})
        assert list(tmp_path.iterdir()) == []

    def test_refuses_values_weights_only_cannot_load(self, tmp_path):
        with pytest.raises(TypeError, match=r"state\['rng'\]\['keys'\] is a numpy.ndarray.*torch.from_numpy"):
            save_checkpoint(tmp_path / "c.pt", {"rng": {"keys": np.zeros(3)}})
        with pytest.raises(TypeError, match=r"state\['f'\] is a builtins.function"):
            save_checkpoint(tmp_path / "c.pt", {"f": lambda: 0})
        with pytest.raises(TypeError, match="must be a mapping"):
            save_checkpoint(tmp_path / "c.pt", [torch.ones(1)])
        assert list(tmp_path.iterdir()) == []

    def test_check_agrees_with_weights_only(self, tmp_path):
        # what the pre-save check lets through must load with weights_only=True
        state = {
            "s": {1, 2},
            "c": complex(1, 2),
            "b": b"xy",
            "dt": torch.float16,
            "dev": torch.device("cpu"),
            "size": torch.Size([2, 3]),
            "p": nn.Parameter(torch.ones(2)),
        }
        loaded = load_checkpoint(save_checkpoint(tmp_path / "c.pt", state))
        assert loaded["s"] == {1, 2} and loaded["dt"] is torch.float16 and loaded["size"] == torch.Size([2, 3])


class TestLoadCheckpoint:
    def test_missing(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*nope\.pt"):
            load_checkpoint(tmp_path / "nope.pt")

    def test_truncated(self, tmp_path):
        path = save_checkpoint(tmp_path / "c.pt", {"w": torch.randn(1000)})
        path.write_bytes(path.read_bytes()[:500])
        with pytest.raises(ValueError, match=r"cannot read checkpoint .*c\.pt: the file is truncated or corrupt"):
            load_checkpoint(path)

    def test_garbage(self, tmp_path):
        path = tmp_path / "g.pt"
        path.write_bytes(b"not a checkpoint at all")
        with pytest.raises(ValueError, match=r"checkpoint .*g\.pt"):
            load_checkpoint(path)

    def test_needs_code_to_load(self, tmp_path):
        path = tmp_path / "unsafe.pt"
        torch.save({"a": np.zeros(2)}, path)  # written without our check
        with pytest.raises(ValueError, match=r"cannot load checkpoint .*unsafe\.pt with weights_only=True"):
            load_checkpoint(path)

    def test_not_a_dict(self, tmp_path):
        path = tmp_path / "list.pt"
        torch.save([1, 2], path)
        with pytest.raises(ValueError, match=r"list\.pt holds a list, expected a dict"):
            load_checkpoint(path)


class TestCheckpointManager:
    def test_best_tracking(self, tmp_path):
        manager = CheckpointManager(tmp_path / "run")
        metrics = [5.0, 6.0, 4.0, math.nan, None, 4.0, torch.tensor(3.5)]
        results = [manager.save({"epoch": i}, m) for i, m in enumerate(metrics)]
        assert results == [True, False, True, False, False, False, True]
        assert manager.best_metric == 3.5
        assert load_checkpoint(manager.best_path)["epoch"] == 6
        last = load_checkpoint(manager.last_path)
        assert last["epoch"] == 6 and last["best_metric"] == 3.5
        manager.save({"epoch": 7}, 9.0)
        assert load_checkpoint(manager.best_path)["epoch"] == 6
        assert load_checkpoint(manager.last_path)["epoch"] == 7
        assert _leftovers(manager.run_dir) == []

    def test_no_metric_never_writes_best(self, tmp_path):
        manager = CheckpointManager(tmp_path)
        assert manager.save({"epoch": 0}) is False
        assert manager.last_path.is_file() and not manager.best_path.exists()
        assert load_checkpoint(manager.last_path)["best_metric"] == math.inf

    def test_resume_restores_best_metric(self, tmp_path):
        first = CheckpointManager(tmp_path)
        first.save({"epoch": 0}, 2.0)
        first.save({"epoch": 1}, 3.0)
        second = CheckpointManager(tmp_path)
        assert second.resume()["epoch"] == 1
        assert second.best_metric == 2.0
        assert second.save({"epoch": 2}, 2.5) is False
        assert second.save({"epoch": 3}, 1.0) is True
        assert CheckpointManager(tmp_path).resume(second.best_path)["epoch"] == 3

    def test_custom_names_and_errors(self, tmp_path):
        manager = CheckpointManager(tmp_path, last_name="latest.pt", best_name="top.pt")
        manager.save({"x": 1}, 1.0)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt", "top.pt"]
        with pytest.raises(TypeError, match="metric must be a number or None, got 'low'"):
            manager.save({"x": 1}, "low")
        with pytest.raises(FileNotFoundError, match="checkpoint not found"):
            CheckpointManager(tmp_path / "empty").resume()


class TestRngState:
    def _draw(self):
        numpy_draws = np.random.rand(), np.random.randn()  # noqa: NPY002 (the global generator is under test)
        return random.random(), float(torch.rand(1)), random.gauss(0, 1), *numpy_draws

    def test_restore_through_weights_only_checkpoint(self, tmp_path):
        seed_everything(123)
        self._draw()
        random.gauss(0, 1)  # leaves a cached Gaussian in python's state
        np.random.randn()  # noqa: NPY002 (and in numpy's)
        save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
        expected = self._draw()
        self._draw()
        set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
        assert self._draw() == expected

    def test_state_is_plain(self):
        state = rng_state()
        assert set(state) >= {"python", "numpy", "torch"}
        assert state["python"]["state"].dtype == torch.int64 and state["python"]["state"].shape == (625,)
        assert state["numpy"]["keys"].dtype == torch.int64 and state["numpy"]["keys"].shape == (624,)
        assert state["torch"].dtype == torch.uint8
        assert ("cuda" in state) == torch.cuda.is_available()

    def test_seed_everything_repeats(self):
        seed_everything(7)
        a = self._draw()
        seed_everything(7)
        assert self._draw() == a
        seed_everything(8)
        assert self._draw() != a

    def test_seed_everything_deterministic_flag(self):
        try:
            seed_everything(0, deterministic=True)
            assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
            assert os.environ["CUBLAS_WORKSPACE_CONFIG"]
        finally:
            seed_everything(0)
        assert not torch.are_deterministic_algorithms_enabled()

    @pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True])
    def test_bad_seed(self, seed):
        with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
            seed_everything(seed)

    def test_bad_state(self):
        with pytest.raises(ValueError, match=r"keys \['python', 'numpy', 'torch'\].*got \['python'\]"):
            set_rng_state({"python": {}})
        with pytest.raises(ValueError, match="got list"):
            set_rng_state([])


def _make():
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Linear(8, 2))
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-2, momentum=0.5, weight_decay=1e-3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2, 4], gamma=0.5)
    return model, optimizer, scheduler


def _steps(model, optimizer, scheduler, n):
    """Training steps whose data and noise come from all three global generators (python, numpy, torch)."""
    for _ in range(n):
        x = torch.randn(5, 4) * (1 + random.random())
        y = torch.from_numpy(np.random.randn(5, 2).astype(np.float32))  # noqa: NPY002
        loss = ((model(x) - y) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()


class TestResumeExactness:
    def _checkpoint(self, tmp_path):
        seed_everything(0)
        model, optimizer, scheduler = _make()
        _steps(model, optimizer, scheduler, 3)
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "step": 3,
        }
        return CheckpointManager(tmp_path).save(state, metric=1.0)

    def _reference(self):
        seed_everything(0)
        model, optimizer, scheduler = _make()
        _steps(model, optimizer, scheduler, 6)
        return model, optimizer

    def test_resume_matches_uninterrupted_run(self, tmp_path):
        reference, reference_opt = self._reference()
        self._checkpoint(tmp_path)
        seed_everything(999)  # a fresh process: different RNG, fresh objects
        model, optimizer, scheduler = _make()
        state = CheckpointManager(tmp_path).resume()
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        _steps(model, optimizer, scheduler, 3)
        for a, b in zip(model.state_dict().values(), reference.state_dict().values(), strict=True):
            assert torch.equal(a, b)
        assert optimizer.param_groups[0]["lr"] == reference_opt.param_groups[0]["lr"] == 1e-2 * 0.25

    def test_without_rng_restore_it_differs(self, tmp_path):
        # the negative control: the comparison above can fail
        reference, _ = self._reference()
        self._checkpoint(tmp_path)
        seed_everything(999)
        model, optimizer, scheduler = _make()
        state = CheckpointManager(tmp_path).resume()
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _steps(model, optimizer, scheduler, 3)
        assert not torch.equal(model[0].weight, reference[0].weight)
