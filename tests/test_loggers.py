from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

from awing.config import LoggingConfig, config_to_dict, load_config
from awing.engine.loggers import ConsoleLogger, JsonlLogger, MultiLogger, WandbLogger, build_logger


class TestConsoleLogger:
    def test_format_on_stderr(self, capsys):
        logger = ConsoleLogger()
        logger.log(120, {"epoch": 3, "loss": 0.012345678, "lr": 1e-4, "nme": torch.tensor(4.56789), "tag": "val"})
        logger.log(121, {"loss": math.nan, "ok": True, "n": np.int64(5)})
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.splitlines() == [
            "step 120 | epoch 3 | loss 0.01235 | lr 0.0001 | nme 4.568 | tag val",
            "step 121 | loss nan | ok True | n 5",
        ]

    def test_log_config_one_line(self, capsys):
        ConsoleLogger().log_config({"optim": {"lr": 0.1}})
        assert capsys.readouterr().err == 'config {"optim":{"lr":0.1}}\n'

    @pytest.mark.parametrize(
        ("step", "metrics", "message"),
        [
            (1.5, {}, "step must be an int, got 1.5"),
            (True, {}, "step must be an int"),
            (1, [("a", 1)], "metrics must be a mapping"),
            (1, {"w": torch.ones(3)}, "metric 'w' must be a number, a string or a one-element tensor"),
            (1, {"w": np.ones(2)}, "metric 'w' must be a number"),
            (1, {"w": None}, "metric 'w' must be a number"),
            (1, {3: 1.0}, "metric names must be strings, got 3"),
        ],
    )
    def test_errors(self, step, metrics, message):
        with pytest.raises(TypeError) as info:
            ConsoleLogger().log(step, metrics)
        assert message in str(info.value)


class TestJsonlLogger:
    def test_round_trip_and_append(self, tmp_path):
        path = tmp_path / "run" / "metrics.jsonl"
        logger = JsonlLogger(path)
        logger.log(1, {"loss": 0.5, "lr": 1e-4, "nme": torch.tensor(3.25), "n": np.int64(2)})
        logger.log_config({"ignored": True})
        # flushed per call: readable before close
        assert json.loads(path.read_text().splitlines()[0]) == {"step": 1, "loss": 0.5, "lr": 1e-4, "nme": 3.25, "n": 2}
        logger.close()
        again = JsonlLogger(path)  # a resumed run appends
        again.log(2, {"loss": 0.25, "val": math.inf})
        again.close()
        records = [json.loads(line, parse_constant=pytest.fail) for line in path.read_text().splitlines()]
        assert [r["step"] for r in records] == [1, 2]
        assert records[1] == {"step": 2, "loss": 0.25, "val": None}  # strict JSON: no Infinity, null instead

    def test_step_is_reserved(self, tmp_path):
        logger = JsonlLogger(tmp_path / "m.jsonl")
        with pytest.raises(ValueError, match="'step' is reserved"):
            logger.log(1, {"step": 2})
        logger.close()
        assert (tmp_path / "m.jsonl").read_text() == ""


class _Recorder:
    def __init__(self, calls, name, fail_close=False):
        self.calls, self.name, self.fail_close = calls, name, fail_close

    def log(self, step, metrics):
        self.calls.append((self.name, "log", step, dict(metrics)))

    def log_config(self, config):
        self.calls.append((self.name, "config", config))

    def close(self):
        self.calls.append((self.name, "close"))
        if self.fail_close:
            raise RuntimeError(f"{self.name} failed to close")


class TestMultiLogger:
    def test_fan_out(self):
        calls = []
        with MultiLogger([_Recorder(calls, "a"), _Recorder(calls, "b")]) as logger:
            logger.log(3, {"loss": 1.0})
            logger.log_config({"x": 1})
        assert calls == [
            ("a", "log", 3, {"loss": 1.0}),
            ("b", "log", 3, {"loss": 1.0}),
            ("a", "config", {"x": 1}),
            ("b", "config", {"x": 1}),
            ("a", "close"),
            ("b", "close"),
        ]

    def test_close_closes_all_then_raises(self):
        calls = []
        logger = MultiLogger([_Recorder(calls, "a", fail_close=True), _Recorder(calls, "b")])
        with pytest.raises(RuntimeError, match="a failed to close"):
            logger.close()
        assert calls == [("a", "close"), ("b", "close")]


def _fake_wandb(monkeypatch):
    calls = []

    class Run:
        config = types.SimpleNamespace(update=lambda cfg, allow_val_change: calls.append(("config", cfg)))

        def log(self, metrics, step):
            calls.append(("log", step, metrics))

        def finish(self):
            calls.append(("finish",))

    def init(**kwargs):
        calls.append(("init", kwargs))
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    return calls


class TestWandbLogger:
    def test_not_imported_at_module_import(self, tmp_path):
        # a stand-in wandb on the path: importing the loggers (and the engine) must not import it
        (tmp_path / "wandb.py").write_text("raise SystemExit('wandb was imported')\n")
        code = "import sys, awing.engine, awing.engine.loggers; print('wandb' in sys.modules)"
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(tmp_path), "PATH": ""},
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "False"

    def test_missing_package_message(self, monkeypatch):
        monkeypatch.setitem(sys.modules, "wandb", None)  # makes `import wandb` raise ImportError
        with pytest.raises(ImportError, match=r"needs the wandb package: pip install 'awing\[wandb\]'") as info:
            WandbLogger("proj")
        assert isinstance(info.value.__cause__, ImportError)

    def test_calls_wandb(self, monkeypatch, tmp_path):
        calls = _fake_wandb(monkeypatch)
        logger = WandbLogger("proj", name="r1", mode="offline", run_dir=tmp_path / "run", config={"a": 1})
        logger.log(5, {"loss": torch.tensor(0.5)})
        logger.log_config({"b": 2})
        logger.close()
        assert calls == [
            (
                "init",
                {"project": "proj", "name": "r1", "mode": "offline", "dir": str(tmp_path / "run"), "config": {"a": 1}},
            ),
            ("log", 5, {"loss": 0.5}),
            ("config", {"b": 2}),
            ("finish",),
        ]
        assert (tmp_path / "run").is_dir()

    @pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb not installed")
    def test_real_wandb_offline(self, monkeypatch, tmp_path):
        monkeypatch.setenv("WANDB_MODE", "offline")
        monkeypatch.setenv("WANDB_DIR", str(tmp_path))
        monkeypatch.setenv("WANDB_SILENT", "true")
        logger = WandbLogger("awing-test", run_dir=tmp_path)
        logger.log(1, {"loss": 1.0})
        logger.close()
        assert list((tmp_path / "wandb").glob("offline-run-*"))


class TestBuildLogger:
    def test_default_sinks(self, tmp_path, capsys):
        logger = build_logger(LoggingConfig(), tmp_path)
        assert [type(x) for x in logger.loggers] == [ConsoleLogger, JsonlLogger]
        logger.log(1, {"loss": 2.0})
        logger.close()
        assert capsys.readouterr().err == "step 1 | loss 2\n"
        assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "loss": 2.0}

    def test_from_config_with_wandb(self, tmp_path, monkeypatch):
        calls = _fake_wandb(monkeypatch)
        cfg = load_config(None, ["logging.console=false", "logging.jsonl=false", "logging.wandb=true"])
        logger = build_logger(cfg.logging, tmp_path, name="exp", config=config_to_dict(cfg))
        assert [type(x) for x in logger.loggers] == [WandbLogger]
        init = calls[0][1]
        assert (init["project"], init["name"], init["mode"]) == ("awing", "exp", None)
        assert init["config"]["optim"]["lr"] == 1e-4
