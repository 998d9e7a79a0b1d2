from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from awing.config import ConfigError, load_config
from awing.detection.commands import add_eval_detector_parser, add_train_detector_parser
from awing.detection.config import DetectorConfig
from awing.detection.data import read_dlib_xml
from awing.detection.detector import load_detector
from awing.detection.train import train_detector
from awing.models.weights import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (conftest.py)


@pytest.fixture
def squares(tmp_path) -> Path:
    """Four 96 x 80 dark noisy images with two bright squares ("faces", 18-29 px) each, in dlib XML (train.xml)."""
    root = tmp_path / "data"
    root.mkdir()
    rng = np.random.default_rng(0)
    lines = ["<dataset><images>"]
    for i in range(4):
        image = rng.integers(0, 40, (80, 96, 3), dtype=np.uint8)
        lines.append(f"<image file='img{i}.png'>")
        for _ in range(2):
            side = int(rng.integers(18, 30))
            x, y = int(rng.integers(0, 96 - side)), int(rng.integers(0, 80 - side))
            image[y : y + side, x : x + side] = 230
            lines.append(f"<box top='{y}' left='{x}' width='{side}' height='{side}'/>")
        lines.append("</image>")
        cv2.imwrite(str(root / f"img{i}.png"), image)
    lines.append("</images></dataset>")
    (root / "train.xml").write_text("\n".join(lines))
    return root


def overrides(root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "data.name=dlib",
        f"data.root={root}",
        "data.train_split=train",
        "data.val_split=train",
        "data.input_size=64",
        "data.batch_size=4",
        "data.num_workers=0",
        "inference.input_max_side=96",
        "optim.lr=0.01",
        f"run.out_dir={run_dir}",
        "run.device=cpu",
        "run.log_every=1",
        "logging.console=false",
        *extra,
    ]


ROOT = Path(__file__).resolve().parents[1]
FIXED = ["data.augment.crop_scales=[1.0]", "data.augment.flip_prob=0", "data.augment.photometric_prob=0"]


def config(*tokens: str) -> DetectorConfig:
    return load_config(None, list(tokens), cls=DetectorConfig)


class TestTrainDetector:
    def test_three_iterations(self, squares, tmp_path):
        run_dir = tmp_path / "run"
        cfg = config(*overrides(squares, run_dir, "schedule.epochs=3", *FIXED))
        result = train_detector(cfg, progress=False)
        assert (result.epoch, result.step) == (3, 3)  # 4 images, batch 4: one iteration per epoch
        losses = [h["train_loss"] for h in result.history]
        assert losses[-1] < losses[0]  # the same batch three times
        for name in ("config.yaml", "metrics.jsonl", "last.pt", "best.pt", "best.safetensors", "last.safetensors"):
            assert (run_dir / name).is_file(), name
        assert load_config(run_dir / "config.yaml", cls=DetectorConfig) == cfg
        state = load_checkpoint(run_dir / "last.pt")
        assert state["epoch"] == 3 and state["alwa"] is None
        assert state["best_metric"] == pytest.approx(-result.best_ap)  # the manager keeps -AP
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        epochs = [r for r in records if "val_ap" in r]
        assert len(epochs) == 3 and {"train_cls", "train_box", "val_recall", "best"} <= set(epochs[0])
        model, settings = load_detector(run_dir / "last.safetensors")
        assert settings == cfg.inference and model.config == cfg.model

    def test_resume_is_exact(self, squares, tmp_path):
        # random crops, flips and colour, a learning-rate step after epoch 1, and ALWA with a window (3) that spans
        # the epoch boundary
        extra = [
            "loss.alwa.enabled=true",
            "loss.alwa.interval=3",
            "schedule.milestones=[1]",
            "data.batch_size=2",
            "run.deterministic=true",
            "optim.ema=0.9",  # the shared loop's EMA: validation and release weights use the average
        ]
        straight = train_detector(config(*overrides(squares, tmp_path / "a", "schedule.epochs=2", *extra)))
        train_detector(config(*overrides(squares, tmp_path / "b", "schedule.epochs=1", *extra)))
        resume = f"run.resume={tmp_path / 'b' / 'last.pt'}"
        resumed = train_detector(config(*overrides(squares, tmp_path / "b", "schedule.epochs=2", resume, *extra)))
        assert (resumed.epoch, resumed.step) == (straight.epoch, straight.step) == (2, 4)
        a, b = load_checkpoint(tmp_path / "a/last.pt"), load_checkpoint(tmp_path / "b/last.pt")
        assert a["alwa"] == b["alwa"] and a["alwa"]["iteration"] == 4 and len(a["alwa"]["cls_history"]) == 1
        assert a["model"].keys() == b["model"].keys()
        for key, value in a["model"].items():
            assert torch.equal(value, b["model"][key]), key
        assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
        assert a["ema"].keys() == a["model"].keys()
        for key, value in a["ema"].items():
            assert torch.equal(value, b["ema"][key]), key
        released, _ = load_detector(tmp_path / "a" / "last.safetensors")
        for key, value in released.state_dict().items():
            assert torch.equal(value, a["ema"][key]), key  # the release weights are the average

    def test_loop_settings_are_checked(self):
        assert (config().optim.amp, config().optim.ema) == (True, 0.0)  # AMP on CUDA by default, EMA off
        with pytest.raises(ConfigError, match="ema"):
            config("optim.ema=1.0")

    def test_refuses_to_overwrite_and_checks_model(self, squares, tmp_path):
        cfg = config(*overrides(squares, tmp_path / "run", "schedule.epochs=1", "run.val_every=5", *FIXED))
        result = train_detector(cfg)
        assert result.history[0]["best"] is True  # validated after the last epoch whatever val_every says
        with pytest.raises(ConfigError, match="pass --resume"):
            train_detector(cfg)
        other = config(
            *overrides(squares, tmp_path / "run", "model.fpn_channels=32", f"run.resume={tmp_path / 'run/last.pt'}")
        )
        with pytest.raises(ConfigError, match="holds a detector"):
            train_detector(other)

    @pytest.mark.parametrize("variant", [["loss.classification=ohem"], ["loss.noisy.enabled=true"]])
    def test_loss_variants_run(self, squares, tmp_path, variant):
        cfg = config(*overrides(squares, tmp_path / "run", "schedule.epochs=1", "data.val_split=''", *variant))
        result = train_detector(cfg)
        assert result.step == 1 and np.isnan(result.best_ap)  # no validation split
        assert np.isfinite(result.history[0]["train_loss"]) and not (tmp_path / "run/best.pt").exists()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="awing")
    subparsers = p.add_subparsers(dest="command")
    add_train_detector_parser(subparsers)
    add_eval_detector_parser(subparsers)
    return p


def run_cli(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


class TestCommands:
    def test_misspelt_key(self, tmp_path, capsys):
        path = tmp_path / "detector.yaml"
        path.write_text("optim:\n  lr: 0.01\n")
        assert run_cli(["train-detector", str(path), "optim.lrr=0.1"]) == 2
        assert "did you mean 'optim.lr'" in capsys.readouterr().err
        path.write_text("optim:\n  lrr: 0.01\n")
        assert run_cli(["eval-detector", str(path), "--weights", "w.safetensors"]) == 2
        assert "did you mean 'optim.lr'" in capsys.readouterr().err
        assert run_cli(["train-detector", str(tmp_path / "missing.yaml")]) == 2

    def test_train_resume_and_eval(self, squares, tmp_path, capsys):
        path = tmp_path / "detector.yaml"
        path.write_text("schedule:\n  epochs: 1\n")
        argv = ["train-detector", str(path), *overrides(squares, tmp_path / "run", *FIXED), "--no-progress"]
        assert run_cli(argv) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["epoch"] == 1 and out["run_dir"] == str(tmp_path / "run")
        assert run_cli([*argv[:-1], "schedule.epochs=2", "--resume", "--no-progress"]) == 0
        assert json.loads(capsys.readouterr().out)["epoch"] == 2
        weights = tmp_path / "run" / "last.safetensors"
        low = "inference.score_threshold=0.01"
        eval_argv = ["eval-detector", str(path), *overrides(squares, tmp_path / "run"), low]
        assert run_cli([*eval_argv, "--weights", str(weights), "--no-progress"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["num_faces"] == 8 and report["num_images"] == 4 and report["split"] == "train"
        assert 0 <= report["ap"] <= 1 and report["score_threshold"] == 0.01
        saved = json.loads((tmp_path / "run" / "eval_dlib_train" / "report.json").read_text())
        assert saved == report
        assert run_cli([*eval_argv, "--weights", str(weights), "--split", "nosuch", "--no-progress"]) == 1
        assert "datasets/dlib/README.md" in capsys.readouterr().err

        # the same images as a WIDER FACE val split (no .mat files: the simplified subsets)
        wider = tmp_path / "wider"
        (wider / "WIDER_val" / "images" / "0--Parade").mkdir(parents=True)
        lines = []
        for record in read_dlib_xml(squares / "train.xml"):
            name = f"0--Parade/{Path(record.image_path).name}"
            (wider / "WIDER_val" / "images" / name).write_bytes(Path(record.image_path).read_bytes())
            lines += [name, str(len(record.boxes))]
            lines += [f"{x0:g} {y0:g} {x1 - x0:g} {y1 - y0:g} 0 0 0 0 0 0" for x0, y0, x1, y1 in record.boxes]
        (wider / "wider_face_val_bbx_gt.txt").write_text("\n".join(lines) + "\n")
        wider_argv = [*eval_argv, "data.name=wider", f"data.root={wider}", "--weights", str(weights), "--split", "val"]
        assert run_cli([*wider_argv, "--out", str(tmp_path / "wider_eval"), "--no-progress"]) == 0
        wider_report = json.loads(capsys.readouterr().out)
        assert wider_report["wider"]["protocol"] == "simplified" and wider_report["wider"]["ground_truth"] is None
        assert set(wider_report["wider"]) == {"protocol", "ground_truth", "easy", "medium", "hard"}
        assert wider_report["num_faces"] == 8 and wider_report["ap"] == pytest.approx(report["ap"])
        assert wider_report["wider"]["easy"] is None  # no face is 50 px tall: AP undefined
        assert 0 <= wider_report["wider"]["hard"] <= 1  # every face is at least 10 px tall


def test_init_weights_starts_from_the_given_detector(squares, tmp_path):
    """run.init_weights: with a negligible learning rate the fine-tuned parameters stay the given detector's."""
    train_detector(config(*overrides(squares, tmp_path / "a", "schedule.epochs=1", *FIXED)), progress=False)
    source, _ = load_detector(tmp_path / "a" / "last.safetensors")
    tokens = ["schedule.epochs=1", "optim.lr=1e-12", *FIXED]
    train_detector(
        config(*overrides(squares, tmp_path / "b", *tokens, f"run.init_weights={tmp_path / 'a' / 'last.safetensors'}")),
        progress=False,
    )
    train_detector(config(*overrides(squares, tmp_path / "c", *tokens)), progress=False)
    tuned = dict(load_detector(tmp_path / "b" / "last.safetensors")[0].named_parameters())
    fresh = dict(load_detector(tmp_path / "c" / "last.safetensors")[0].named_parameters())
    for name, value in source.named_parameters():
        assert torch.allclose(tuned[name], value, atol=1e-6), name
    assert any(not torch.allclose(fresh[n], v, atol=1e-3) for n, v in source.named_parameters())


DDP_SCRIPT = """
import json, sys
from awing.config import load_config
from awing.detection.config import DetectorConfig
from awing.detection.train import train_detector
train_detector(load_config(None, json.loads(sys.argv[1]), cls=DetectorConfig), progress=False)
"""


def test_torchrun_two_cpu_processes(squares, tmp_path):
    """The detector through the shared loop's DistributedDataParallel (gloo): each rank reads half the batches."""
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT, encoding="utf-8")
    tokens = overrides(squares, tmp_path / "run", "schedule.epochs=2", "data.batch_size=1", *FIXED)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, str(script), json.dumps(tokens)], env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["epoch"] == 2 and last["step"] == 2 * 4 // (2 * 1)  # 4 images, 1 per batch, 2 ranks
    assert not any(k.startswith("module.") for k in last["model"])
    assert (tmp_path / "run" / "last.safetensors").is_file()
