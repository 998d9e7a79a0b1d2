from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from awing.config import ConfigError, LossConfig, OptimConfig, ScheduleConfig, config_from_dict, load_config
from awing.data import LandmarkTrainingSet
from awing.data.io import write_pts
from awing.engine import checkpoint as checkpoint_module
from awing.engine.commands import add_eval_parser, add_train_parser
from awing.engine.loop import ModelEma, lr_factor
from awing.engine.train import StackedHeatmapLoss, build_model_from_config, build_optimizer, train
from awing.inference import InferenceSettings
from awing.losses import adaptive_wing_loss, loss_weight_map, mse_loss, wing_loss
from awing.models import load_weights, read_weights
from awing.models.weights import load_checkpoint, read_metadata

ROOT = Path(__file__).resolve().parents[1]

# A 21-point (AFLW order) face in the unit square: brows, eyes, ears, nose, mouth, chin.
TEMPLATE_21 = np.array(
    [
        [0.20, 0.25], [0.30, 0.22], [0.40, 0.25], [0.60, 0.25], [0.70, 0.22], [0.80, 0.25],
        [0.22, 0.35], [0.30, 0.35], [0.38, 0.35], [0.62, 0.35], [0.70, 0.35], [0.78, 0.35],
        [0.05, 0.45], [0.42, 0.55], [0.50, 0.58], [0.58, 0.55], [0.95, 0.45],
        [0.35, 0.72], [0.50, 0.74], [0.65, 0.72], [0.50, 0.95],
    ]
)  # fmt: skip


def write_faces(folder: Path, count: int, seed: int, size: int = 96) -> None:
    """Synthetic faces: a skin ellipse on noise with a coloured dot per landmark, as PNG + iBUG .pts pairs."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(count):
        scale, angle = rng.uniform(40, 60), rng.uniform(-0.3, 0.3)
        centre = rng.uniform(0.4 * size, 0.6 * size, 2)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = (TEMPLATE_21 - 0.5) @ rotation.T * scale + centre
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        axes = (int(scale * 0.5), int(scale * 0.6))
        cv2.ellipse(image, tuple(int(c) for c in centre), axes, np.degrees(angle), 0, 360, (120, 100, 90), -1)
        for k, (x, y) in enumerate(points):
            colour = (255, (k * 37) % 256, (k * 91) % 256)
            cv2.circle(image, (int(round(x * 16)), int(round(y * 16))), 32, colour, -1, cv2.LINE_AA, 4)
        cv2.imwrite(str(folder / f"face{i:03d}.png"), image)
        write_pts(folder / f"face{i:03d}.pts", points)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread (conftest.py)


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    write_faces(root / "train", 16, seed=0)
    write_faces(root / "val", 8, seed=1)
    return root


def tiny_config(root: Path, run_dir: Path, **sections):
    """A 1-stack, 16-feature model at 64 x 64 on the synthetic faces; ``sections`` update the dict sections."""
    data = {
        "name": "pts",
        "root": str(root),
        "train_split": "train",
        "val_split": "val",
        "scheme": "21",
        "input_size": 64,
        "heatmap_size": 16,
        "num_workers": 0,
        "batch_size": 4,
    }
    tree = {
        "data": data,
        "model": {"num_stacks": 1, "features": 16},
        "optim": {"name": "adam", "lr": 1e-3},
        "schedule": {"epochs": 2, "milestones": [10]},
        "run": {"out_dir": str(run_dir), "log_every": 2, "deterministic": True, "device": "cpu"},
        "logging": {"console": False},
    }
    for name, values in sections.items():
        tree[name] = {**tree.get(name, {}), **values}
    return config_from_dict(tree)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="awing")
    subparsers = parser.add_subparsers()
    add_train_parser(subparsers)
    add_eval_parser(subparsers)
    args = parser.parse_args(argv)
    return args.run(args)


def _batch(num_points=3, channels=None, size=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    channels = num_points + 1 if channels is None else channels
    target = torch.zeros(2, num_points + 1, size, size)
    target[:, :, 3:6, 3:6] = torch.rand(2, num_points + 1, 3, 3, generator=gen)
    outputs = [torch.rand(2, channels, size, size, generator=gen, dtype=torch.float32) for _ in range(2)]
    point_weight = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])[:, :num_points]
    return outputs, target, point_weight


class TestStackedHeatmapLoss:
    def test_awing_is_sum_over_stacks_of_weighted_awing(self):
        outputs, target, point_weight = _batch()
        total, per_stack = StackedHeatmapLoss(LossConfig())(outputs, target, point_weight)
        channel = torch.cat([point_weight, torch.ones(2, 1)], dim=1)[:, :, None, None]
        expected = [adaptive_wing_loss(o, target, loss_weight_map(target) * channel) for o in outputs]
        assert len(per_stack) == 2
        for got, want in zip(per_stack, expected, strict=True):
            torch.testing.assert_close(got, want)
        torch.testing.assert_close(total, expected[0] + expected[1])

    def test_boundary_weight_and_invisible_points(self):
        outputs, target, point_weight = _batch()
        for o in outputs:
            o.requires_grad_(True)
        total, _ = StackedHeatmapLoss(LossConfig(boundary_weight=0.5))(outputs, target, point_weight)
        total.backward()
        assert outputs[0].grad[0, 1].abs().max() == 0  # point 1 of face 0 has weight 0
        assert outputs[0].grad[0, 0].abs().max() > 0
        channel = torch.tensor([[1.0, 0.0, 1.0, 0.5], [1.0, 1.0, 1.0, 0.5]])[:, :, None, None]
        expected = sum(adaptive_wing_loss(o, target, loss_weight_map(target) * channel) for o in outputs)
        torch.testing.assert_close(total, expected)

    def test_model_without_boundary_drops_the_target_channel(self):
        outputs, target, point_weight = _batch(channels=3)
        total, _ = StackedHeatmapLoss(LossConfig())(outputs, target, point_weight)
        weight = loss_weight_map(target[:, :3]) * point_weight[:, :, None, None]
        torch.testing.assert_close(total, sum(adaptive_wing_loss(o, target[:, :3], weight) for o in outputs))

    @pytest.mark.parametrize("use_map", [True, False])
    def test_baselines(self, use_map):
        outputs, target, point_weight = _batch()
        channel = torch.cat([point_weight, torch.ones(2, 1)], dim=1)[:, :, None, None]
        weight = channel * loss_weight_map(target) if use_map else channel
        cfg = LossConfig(name="mse", use_weight_map=use_map)
        torch.testing.assert_close(
            StackedHeatmapLoss(cfg)(outputs, target, point_weight)[0], sum(mse_loss(o, target, weight) for o in outputs)
        )
        cfg = LossConfig(name="wing", use_weight_map=use_map, omega=5.0, epsilon=0.5)
        expected = sum(wing_loss(o, target, weight, omega=5.0, epsilon=0.5) for o in outputs)
        torch.testing.assert_close(StackedHeatmapLoss(cfg)(outputs, target, point_weight)[0], expected)

    def test_errors(self):
        outputs, target, point_weight = _batch(channels=5)
        with pytest.raises(ValueError, match="expected K or K \\+ 1 channels"):
            StackedHeatmapLoss(LossConfig())(outputs, target, point_weight)
        outputs, target, point_weight = _batch()
        with pytest.raises(ValueError, match="needs data.boundary=true"):
            StackedHeatmapLoss(LossConfig())(outputs, target[:, :3], point_weight)
        with pytest.raises(ValueError, match="at least one stack"):
            StackedHeatmapLoss(LossConfig())([], target, point_weight)
        with pytest.raises(ConfigError, match="unknown loss 'focal'"):
            StackedHeatmapLoss(LossConfig(name="focal"))
        with pytest.raises(ConfigError, match="stack_weights must be 'equal'"):
            StackedHeatmapLoss(LossConfig(stack_weights="last"))


class TestScheduleAndOptimiser:
    def test_lr_factor_golden(self):
        cfg = ScheduleConfig(epochs=10, milestones=[3, 6], gamma=0.5, warmup_epochs=2)
        values = [lr_factor(s, 4, cfg) for s in range(0, 40, 4)]
        assert values == [0.125, 0.625, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]
        assert lr_factor(7, 4, cfg) == 1.0  # last warm-up step reaches the base rate

    def test_optimisers(self):
        params = [torch.nn.Parameter(torch.zeros(2))]
        rms = build_optimizer(params, OptimConfig(lr=2e-4, momentum=0.5, weight_decay=1e-5))
        assert isinstance(rms, torch.optim.RMSprop)
        assert rms.defaults["lr"] == 2e-4 and rms.defaults["momentum"] == 0.5 and rms.defaults["weight_decay"] == 1e-5
        adam = build_optimizer(params, OptimConfig(name="adam", betas=(0.8, 0.9)))
        assert isinstance(adam, torch.optim.Adam) and adam.defaults["betas"] == (0.8, 0.9)

    def test_ema_formula(self):
        model = torch.nn.BatchNorm1d(2)
        ema = ModelEma(model, decay=0.75)
        with torch.no_grad():
            model.weight.fill_(3.0)
            model.num_batches_tracked.fill_(5)
        ema.update(model)
        torch.testing.assert_close(ema.module.weight, torch.full((2,), 0.75 * 1.0 + 0.25 * 3.0))
        assert int(ema.module.num_batches_tracked) == 5 and not ema.module.weight.requires_grad
        ema.update(model, updates=0)  # warm-up: d = min(0.75, 1 / 10) = 0.1
        torch.testing.assert_close(ema.module.weight, torch.full((2,), 0.1 * 1.5 + 0.9 * 3.0))
        assert [ema.decay_at(n) for n in (0, 5, 26, None)] == [0.1, 6 / 15, 0.75, 0.75]
        with pytest.raises(ValueError, match="decay must be in"):
            ModelEma(model, 1.0)


class TestBuildModel:
    def test_from_config(self, tmp_path):
        cfg = tiny_config(tmp_path, tmp_path)
        model = build_model_from_config(cfg)
        assert model.config.num_landmarks == 21 and model.config.input_size == 64 and model.config.num_stacks == 1

    @pytest.mark.parametrize(
        ("sections", "message"),
        [
            ({"data": {"heatmap_size": 32}}, "heatmap_size must be data.input_size / 4 = 16"),
            ({"data": {"boundary": False}}, "needs the boundary target"),
            ({"model": {"name": "resnet"}}, "unknown model.name 'resnet'"),
            ({"model": {"depth": 5}}, "multiple of 4 \\* 2\\*\\*depth = 128"),
        ],
    )
    def test_inconsistent_config(self, tmp_path, sections, message):
        with pytest.raises(ConfigError, match=message):
            build_model_from_config(tiny_config(tmp_path, tmp_path, **sections))


class TestTrain:
    def test_short_run_lowers_the_loss_and_fills_the_run_folder(self, faces_root, tmp_path):
        run_dir = tmp_path / "run"
        cfg = tiny_config(faces_root, run_dir, schedule={"epochs": 5, "milestones": [4]})
        result = train(cfg, progress=False)
        losses = [h["train_loss"] for h in result.history]
        assert result.epoch == 5 and result.step == 5 * 4 and len(losses) == 5
        assert losses[-1] < 0.8 * losses[0]
        assert load_config(run_dir / "config.yaml") == cfg
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        summaries = [r for r in records if "train_loss" in r]
        assert [r["epoch"] for r in summaries] == [1, 2, 3, 4, 5]
        assert all("val_nme_box" in r and "val_fr@0.10" in r for r in summaries)
        assert [r["step"] for r in records if "loss" in r] == list(range(2, 21, 2))
        last, best = load_checkpoint(run_dir / "last.pt"), load_checkpoint(run_dir / "best.pt")
        assert last["epoch"] == 5 and last["step"] == 20 and last["scheme"] == "21"
        nmes = [r["val_nme_inter_ocular"] for r in summaries]
        assert best["epoch"] == 1 + int(np.argmin(nmes)) and math.isclose(last["best_metric"], min(nmes))
        _, info = read_weights(run_dir / "best.safetensors")
        assert info.scheme == "21" and info.config == build_model_from_config(cfg).config
        exported = load_weights(run_dir / "best.safetensors")
        for key, value in exported.state_dict().items():
            assert torch.equal(value, best["model"][key])
        assert (run_dir / "last.safetensors").is_file()

    def test_resume_equals_uninterrupted_run(self, faces_root, tmp_path, monkeypatch):
        sections = {
            "schedule": {"epochs": 3, "milestones": [2], "warmup_epochs": 1},
            "optim": {"name": "rmsprop", "lr": 1e-3, "momentum": 0.9, "grad_clip": 1.0, "ema": 0.9},
            "data": {"max_samples": 12},
        }
        straight = train(tiny_config(faces_root, tmp_path / "a", **sections), progress=False)

        set_epoch = LandmarkTrainingSet.set_epoch

        def interrupt(self, epoch):
            if epoch == 2:
                raise KeyboardInterrupt
            set_epoch(self, epoch)

        monkeypatch.setattr(LandmarkTrainingSet, "set_epoch", interrupt)
        with pytest.raises(KeyboardInterrupt):
            train(tiny_config(faces_root, tmp_path / "b", **sections), progress=False)
        monkeypatch.undo()
        assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 2
        with pytest.raises(ConfigError, match="pass --resume"):
            train(tiny_config(faces_root, tmp_path / "b", **sections), progress=False)
        resume = {"resume": str(tmp_path / "b" / "last.pt")}
        resumed = train(tiny_config(faces_root, tmp_path / "b", run=resume, **sections), progress=False)
        assert [h["epoch"] for h in resumed.history] == [3] and resumed.step == straight.step == 9

        a, b = load_checkpoint(tmp_path / "a" / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
        assert a["model"].keys() == b["model"].keys()
        for key in a["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), key
            assert torch.equal(a["ema"][key], b["ema"][key]), key
        for index, state in a["optimizer"]["state"].items():
            for name, value in state.items():
                assert torch.equal(value, b["optimizer"]["state"][index][name]), (index, name)
        assert a["scheduler"] == b["scheduler"] and a["best_metric"] == b["best_metric"]
        assert straight.history[-1]["train_loss"] == resumed.history[-1]["train_loss"]

    def test_failed_save_keeps_the_previous_checkpoint(self, faces_root, tmp_path, monkeypatch):
        real_save = torch.save

        def failing_save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("epoch") == 2:
                raise OSError("No space left on device")
            return real_save(obj, f, *args, **kwargs)

        monkeypatch.setattr(checkpoint_module.torch, "save", failing_save)
        run_dir = tmp_path / "run"
        with pytest.raises(OSError, match="No space left"):
            train(tiny_config(faces_root, run_dir, data={"max_samples": 4}), progress=False)
        assert load_checkpoint(run_dir / "last.pt")["epoch"] == 1
        assert not [p.name for p in run_dir.iterdir() if p.name.startswith(".")]


class TestCommands:
    def test_misspelt_key_exits_2_with_suggestion(self, tmp_path, capsys):
        config = tmp_path / "c.yaml"
        config.write_text("data:\n  name: pts\n", encoding="utf-8")
        assert run_cli(["train", str(config), "optim.lrr=1e-3"]) == 2
        assert "awing train: error: unknown config key 'optim.lrr'; did you mean 'optim.lr'?" in capsys.readouterr().err
        config.write_text("optim:\n  lr_rate: 1\n", encoding="utf-8")
        assert run_cli(["eval", str(config), "--weights", "w.safetensors"]) == 2
        assert "did you mean 'optim.lr'?" in capsys.readouterr().err

    def test_missing_config_and_bad_values_exit_2(self, tmp_path, capsys):
        assert run_cli(["train", str(tmp_path / "nope.yaml")]) == 2
        assert "config file not found" in capsys.readouterr().err
        config = tmp_path / "c.yaml"
        config.write_text("{}\n", encoding="utf-8")
        assert run_cli(["train", str(config), "data.heatmap_size=32", f"run.out_dir={tmp_path / 'r'}"]) == 2
        assert "data.heatmap_size must be data.input_size / 4" in capsys.readouterr().err

    def test_train_then_resume_finished_run(self, faces_root, tmp_path, capsys):
        cfg = tiny_config(faces_root, tmp_path / "run", schedule={"epochs": 1}, data={"max_samples": 4})
        config = tmp_path / "tiny.yaml"
        from awing.config import save_config

        save_config(cfg, config)
        assert run_cli(["train", str(config), "--no-progress"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["epoch"] == 1 and out["run_dir"] == str(tmp_path / "run")
        assert run_cli(["train", str(config), "--resume", "--no-progress"]) == 0  # nothing left to do
        assert json.loads(capsys.readouterr().out)["epoch"] == 1


SCRIPT = """
import json, sys
from awing.config import config_from_dict
from awing.engine.train import train
train(config_from_dict(json.loads(sys.argv[1])), progress=False)
"""


def test_torchrun_two_cpu_processes(faces_root, tmp_path):
    """DistributedDataParallel over gloo: each rank reads half the batches, rank 0 alone writes."""
    cfg = tiny_config(faces_root, tmp_path / "run", data={"batch_size": 2})
    from awing.config import config_to_dict

    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, str(script), json.dumps(config_to_dict(cfg))], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last["epoch"] == 2 and last["step"] == 2 * 16 // (2 * 2)
    summaries = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [s["epoch"] for s in summaries if "train_loss" in s] == [1, 2]
    assert not any(k.startswith("module.") for k in last["model"])


def test_trained_weights_predict_as_they_evaluate(faces_root, tmp_path, capsys):
    """A run with the official codec: its best.safetensors carries the inference settings, so ``awing predict
    --weights best.safetensors`` gives, on the same images and boxes, the landmarks that ``awing eval`` scores."""
    from awing.aligner import Face, FaceAligner
    from awing.cli import main
    from awing.config import save_config
    from awing.engine.evaluate import open_dataset
    from awing.metrics import nme

    sections = {"data": {"codec": "awing_official", "crop_scale": 1.4}, "schedule": {"epochs": 1}}
    cfg = tiny_config(faces_root, tmp_path / "run", **sections)
    train(cfg, progress=False)
    weights = tmp_path / "run" / "best.safetensors"
    metadata = read_metadata(weights)
    stored = InferenceSettings.from_metadata(metadata, read_weights(weights)[1].config)
    assert stored == InferenceSettings(crop_scale=1.4, codec="awing_official", sigma=cfg.data.sigma)
    assert json.loads(metadata["data"])["input_size"] == 64 and json.loads(metadata["data"])["heatmap_size"] == 16

    # awing eval with a config that says nothing of the codec or crop (the defaults): the weights' settings win
    config = tmp_path / "eval.yaml"
    save_config(tiny_config(faces_root, tmp_path / "unused"), config)
    assert run_cli(["eval", str(config), "--weights", str(weights), "--out", str(tmp_path / "eval")]) == 0
    report = json.loads(capsys.readouterr().out)

    faces = open_dataset(cfg.data, "val")
    images = [str(r.image_path) for r in faces.records]
    (tmp_path / "boxes.json").write_text(
        json.dumps({p: [r.box.tolist()] for p, r in zip(images, faces.records, strict=True)})
    )
    argv = ["predict", *images, "--weights", str(weights), "--boxes", str(tmp_path / "boxes.json"), "--format"]
    assert main([*argv, "jsonl", "--out", str(tmp_path / "pred")]) == 0
    lines = (tmp_path / "pred" / "predictions.jsonl").read_text().splitlines()
    predicted = np.stack([Face.from_dict(json.loads(line)["faces"][0]).landmarks for line in lines])
    gt = np.stack([r.landmarks_img for r in faces.records])
    for norm in ("box", "inter_ocular"):
        assert 100 * nme(predicted, gt, norm, "21").mean() == pytest.approx(report[f"nme_{norm}"], rel=1e-5)  # eval: %

    # the test can fail: decoding with the default sub-pixel codec and crop moves the points
    default = FaceAligner.from_pretrained(weights, "cpu", detector=None, settings=InferenceSettings())
    other = np.stack([default.predict(p, [r.box])[0].landmarks for p, r in zip(images, faces.records, strict=True)])
    assert np.abs(other - predicted).max() > 0.1


class TestConfigs:
    @pytest.mark.parametrize("name", ["wflw_hg4", "300w_hg4", "cofw_hg4", "aflw_cpu", "aflw19_cpu", "aflw_smoke"])
    def test_every_recipe_loads_and_is_consistent(self, name):
        path = ROOT / "configs" / f"{name}.yaml"
        cfg = load_config(path)
        assert cfg.data.heatmap_size * 4 == cfg.data.input_size
        assert cfg.data.boundary or not cfg.model.with_boundary
        assert cfg.run.name == path.stem
        if cfg.model.features <= 96:
            build_model_from_config(cfg)

    @pytest.mark.parametrize("name", ["wflw_hg4", "300w_hg4", "cofw_hg4"])
    def test_paper_recipes(self, name):
        """methods.md §4: 4-stack HG at 256, AWing + weight map W = 10, RMSProp 1e-4, x0.1 at 80 and 160 of 240."""
        cfg = load_config(ROOT / "configs" / f"{name}.yaml")
        assert (cfg.model.num_stacks, cfg.model.features, cfg.data.input_size, cfg.data.heatmap_size) == (
            4,
            256,
            256,
            64,
        )
        assert cfg.model.with_boundary and cfg.model.coordconv and cfg.data.codec == "awing_official"
        assert (cfg.loss.name, cfg.loss.use_weight_map, cfg.loss.weight) == ("awing", True, 10.0)
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay) == (
            "rmsprop",
            1e-4,
            0.0,
            1e-5,
        )
        assert (cfg.schedule.epochs, cfg.schedule.milestones, cfg.schedule.gamma) == (240, [80, 160], 0.1)


def test_aflw_smoke_run_and_aflw2000_eval(shared_data, tmp_path):
    """The real data path: AFLW-21 training and validation (yaw bins), then AFLW2000-3D's 21 points."""
    from awing.engine.evaluate import run_evaluation

    overrides = [
        f"data.root={shared_data / 'aflw-21'}",
        "data.max_samples=32",
        "data.batch_size=8",
        "data.num_workers=0",
        "schedule.epochs=1",
        f"run.out_dir={tmp_path / 'run'}",
        "run.device=cpu",
        "logging.console=false",
    ]
    cfg = load_config(ROOT / "configs" / "aflw_smoke.yaml", overrides)
    result = train(cfg, progress=False)
    summary = result.history[0]
    assert summary["val_nme_box"] > 0 and "val_nme_inter_ocular" in summary
    cfg = load_config(
        ROOT / "configs" / "aflw_smoke.yaml",
        [*overrides, "data.name=aflw2000-3d", f"data.root={shared_data / 'aflw2000-3d'}", "data.max_samples=16"],
    )
    report, out = run_evaluation(cfg, tmp_path / "run" / "best.safetensors", split="test", progress=False)
    assert report["dataset"] == "aflw2000-3d" and report["num_faces"] == 16 and report["norm"] == "box"
    assert set(report["subsets"]) == {"yaw_0_30", "yaw_30_60", "yaw_60_90"}
    assert sum(s["num_faces"] for s in report["subsets"].values()) == 16
    assert (out / "ced.png").is_file()


def test_init_weights_starts_from_the_given_model(faces_root, tmp_path):
    """run.init_weights loads the release weights before the first step: with a negligible learning rate the
    trained parameters stay those weights, and a run without it starts elsewhere (its own random init)."""
    first = train(tiny_config(faces_root, tmp_path / "a", schedule={"epochs": 1, "milestones": [10]}), progress=False)
    source = load_weights(first.run_dir / "last.safetensors")
    tiny_lr = {"name": "adam", "lr": 1e-12}

    def params(run_dir: Path) -> dict[str, torch.Tensor]:
        return dict(load_weights(run_dir / "last.safetensors").named_parameters())

    cfg = tiny_config(
        faces_root, tmp_path / "b", optim=tiny_lr, schedule={"epochs": 1, "milestones": [10]},
        run={"init_weights": str(first.run_dir / "last.safetensors")},
    )  # fmt: skip
    train(cfg, progress=False)
    fresh = tiny_config(faces_root, tmp_path / "c", optim=tiny_lr, schedule={"epochs": 1, "milestones": [10]}, run={})
    train(fresh, progress=False)
    for name, value in source.named_parameters():
        assert torch.allclose(params(tmp_path / "b")[name], value, atol=1e-6), name
    assert any(not torch.allclose(params(tmp_path / "c")[n], v, atol=1e-3) for n, v in source.named_parameters())
