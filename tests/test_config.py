from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from awing.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    format_config_help,
    load_config,
    parse_override,
    save_config,
)


class TestDefaults:
    def test_recipe_of_methods_section_4(self):
        cfg = TrainConfig()
        assert (cfg.data.input_size, cfg.data.heatmap_size, cfg.data.sigma, cfg.data.crop_scale) == (256, 64, 1.5, 1.25)
        aug = cfg.data.augment
        assert (aug.rotation_deg, aug.scale, aug.shift_px, aug.flip_prob) == (50.0, 0.15, 25.0, 0.5)
        assert (cfg.model.name, cfg.model.num_stacks, cfg.model.features, cfg.model.depth) == ("hourglass", 4, 256, 4)
        assert cfg.model.with_boundary and cfg.model.coordconv and cfg.data.boundary
        loss = cfg.loss
        assert (loss.omega, loss.theta, loss.epsilon, loss.alpha) == (14.0, 0.5, 1.0, 2.1)
        assert (loss.weight, loss.threshold, loss.kernel_size) == (10.0, 0.2, 3)
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.momentum) == ("rmsprop", 1e-4, 1e-5, 0)
        assert (cfg.schedule.epochs, cfg.schedule.milestones, cfg.schedule.gamma) == (240, [80, 160], 0.1)
        assert (cfg.run.device, cfg.run.resume, cfg.logging.wandb) == ("auto", None, False)

    def test_instances_do_not_share_mutable_defaults(self):
        a, b = TrainConfig(), TrainConfig()
        a.schedule.milestones.append(200)
        a.data.augment.flip_prob = 0.0
        assert b.schedule.milestones == [80, 160] and b.data.augment.flip_prob == 0.5

    def test_every_field_documented(self):
        lines = format_config_help().splitlines()
        keys = [line.split(":")[0] for line in lines]
        assert keys[:3] == ["data", "data.name", "data.root"]
        assert "data.augment.rotation_deg" in keys and "logging.wandb_mode" in keys
        assert len(keys) == len(set(keys)) == 76  # grey_prob and data.skip_invalid
        assert all(line.split("  # ", 1)[1].strip() for line in lines), "a field without help"
        assert "optim.lr: float = 0.0001  # initial learning rate" in lines
        assert "optim.name: one of 'rmsprop', 'adam' = \"rmsprop\"  # optimiser: 'rmsprop' or 'adam'" in lines

    def test_run_dir(self):
        assert TrainConfig().run.run_dir == "runs/default"
        assert load_config(None, ["run.name=exp1"]).run.run_dir == "runs/exp1"
        assert load_config(None, ["run.out_dir=out/x"]).run.run_dir == "out/x"


class TestOverrides:
    def test_brief_examples(self):
        cfg = load_config(
            None, ["optim.lr=3e-4", "data.batch_size=8", "schedule.milestones=[10,20]", "model.with_boundary=false"]
        )
        assert cfg.optim.lr == 3e-4 and isinstance(cfg.optim.lr, float)
        assert cfg.data.batch_size == 8
        assert cfg.schedule.milestones == [10, 20]
        assert cfg.model.with_boundary is False
        assert cfg.model.coordconv is True  # untouched siblings keep their defaults

    def test_coercions(self):
        cfg = load_config(None, ["optim.lr=1", "optim.betas=[0.5, 0.9]", "data.scheme=68", "run.resume=runs/a/last.pt"])
        assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
        assert cfg.optim.betas == (0.5, 0.9) and isinstance(cfg.optim.betas, tuple)
        assert cfg.data.scheme == "68"
        assert cfg.run.resume == "runs/a/last.pt"
        assert load_config(None, ["run.resume=null"]).run.resume is None

    def test_string_fields_keep_the_text(self):
        cfg = load_config(None, ["run.name=2024-01-01", "data.root=/data/a: b", "run.device=cuda:1", "run.name=x=y"])
        assert (cfg.run.name, cfg.data.root, cfg.run.device) == ("x=y", "/data/a: b", "cuda:1")
        assert load_config(None, ["data.scheme=0.10"]).data.scheme == "0.10"
        assert load_config(None, ["logging.wandb_mode=offline"]).logging.wandb_mode == "offline"
        assert load_config(None, ["logging.wandb_mode=null"]).logging.wandb_mode is None

    def test_later_token_wins_and_sections_merge(self):
        cfg = load_config(None, ["optim.lr=1e-3", "optim.lr=2e-3", "data.augment={flip_prob: 0, blur_prob: 1}"])
        assert cfg.optim.lr == 2e-3
        assert (cfg.data.augment.flip_prob, cfg.data.augment.blur_prob, cfg.data.augment.rotation_deg) == (0, 1, 50)

    def test_parse_override(self):
        assert parse_override("schedule.milestones=[1, 2]") == ("schedule.milestones", [1, 2])
        assert parse_override(" optim.lr =1e-4") == ("optim.lr", "1e-4")  # YAML 1.1: a string, coerced later
        assert parse_override("run.resume=") == ("run.resume", None)


class TestYaml:
    def test_file_then_cli(self, tmp_path):
        path = tmp_path / "exp.yaml"
        path.write_text("optim:\n  lr: 1e-3\n  name: adam\ndata:\n  batch_size: 4\n  augment:\n    rotation_deg: 30\n")
        cfg = load_config(path, ["data.batch_size=2"])
        assert (cfg.optim.lr, cfg.optim.name) == (1e-3, "adam")
        assert cfg.data.batch_size == 2
        assert (cfg.data.augment.rotation_deg, cfg.data.augment.scale) == (30.0, 0.15)

    def test_empty_file_gives_defaults(self, tmp_path):
        path = tmp_path / "empty.yaml"
        path.write_text("")
        assert load_config(path) == TrainConfig()

    def test_unknown_key_in_file_names_file_and_suggests(self, tmp_path):
        path = tmp_path / "bad.yaml"
        path.write_text("optim:\n  lrr: 0.1\n")
        with pytest.raises(
            ConfigError, match=r"bad\.yaml: unknown config key 'optim\.lrr'; did you mean 'optim\.lr'\?"
        ):
            load_config(path)

    def test_bad_files(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="config file not found: .*nope.yaml"):
            load_config(tmp_path / "nope.yaml")
        path = tmp_path / "list.yaml"
        path.write_text("- 1\n- 2\n")
        with pytest.raises(ConfigError, match="must be a mapping"):
            load_config(path)
        path.write_text("optim: [\n")
        with pytest.raises(ConfigError, match="list.yaml"):
            load_config(path)


class TestErrors:
    @pytest.mark.parametrize(
        ("token", "message"),
        [
            ("optim.lrr=1", "unknown config key 'optim.lrr'; did you mean 'optim.lr'?"),
            ("data.batchsize=3", "unknown config key 'data.batchsize'; did you mean 'data.batch_size'?"),
            ("lr=1", "unknown config key 'lr'; did you mean 'optim.lr'?"),
            ("data.augment.rotation=3", "did you mean 'data.augment.rotation_deg'?"),
            ("zzz=1", "unknown config key 'zzz'; valid keys here: data, model, loss, optim, schedule, run, logging"),
        ],
    )
    def test_unknown_key(self, token, message):
        with pytest.raises(ConfigError) as info:
            load_config(None, [token])
        assert message in str(info.value)

    @pytest.mark.parametrize(
        ("token", "message"),
        [
            ("optim.lr=abc", "config key 'optim.lr' expects float, got 'abc' (str)"),
            ("model.with_boundary=1", "config key 'model.with_boundary' expects bool, got 1 (int)"),
            ("data.batch_size=2.5", "config key 'data.batch_size' expects int, got 2.5 (float)"),
            ("data.batch_size=true", "config key 'data.batch_size' expects int, got True (bool)"),
            ("optim.name=sgd", "config key 'optim.name' expects one of 'rmsprop', 'adam', got 'sgd'"),
            ("schedule.milestones=[1, x]", "config key 'schedule.milestones[1]' expects int, got 'x'"),
            ("schedule.milestones=5", "config key 'schedule.milestones' expects list[int], got 5"),
            ("optim.betas=[0.9]", "config key 'optim.betas' expects tuple[float, float], got [0.9]"),
            ("optim=3", "config key 'optim' expects a mapping (OptimConfig section), got 3"),
            ("logging.wandb_mode=cloud", "expects one of 'online', 'offline', 'disabled' or null, got 'cloud'"),
            ("data.name=null", "config key 'data.name' expects str, got None"),
        ],
    )
    def test_wrong_type(self, token, message):
        with pytest.raises(ConfigError) as info:
            load_config(None, [token])
        assert message in str(info.value)

    @pytest.mark.parametrize(
        ("token", "message"),
        [
            ("data.sigma=-1", "config section 'data': sigma must be > 0, got -1.0"),
            ("data.heatmap_size=60", "input_size must be a multiple of heatmap_size=60, got 256"),
            ("data.augment.flip_prob=2", "config section 'data.augment': flip_prob must be a probability in [0, 1]"),
            ("schedule.milestones=[20, 10]", "milestones must be positive and strictly increasing, got [20, 10]"),
            ("schedule.milestones=[0, 10]", "milestones must be positive and strictly increasing"),
            ("optim.ema=1", "ema must be in [0, 1), got 1.0"),
            ("loss.kernel_size=4", "kernel_size must be odd and >= 1, got 4"),
        ],
    )
    def test_out_of_range(self, token, message):
        with pytest.raises(ConfigError) as info:
            load_config(None, [token])
        assert message in str(info.value)

    def test_config_error_is_value_error(self):
        assert issubclass(ConfigError, ValueError)

    def test_overrides_must_be_a_list(self):
        with pytest.raises(TypeError, match="overrides must be a list of key=value strings"):
            load_config(None, "optim.lr=1")

    @pytest.mark.parametrize("token", ["noequals", "=3", ""])
    def test_malformed_token(self, token):
        with pytest.raises(ConfigError, match="key=value"):
            load_config(None, [token])


class TestRoundTrip:
    def test_save_load_equal(self, tmp_path):
        cfg = load_config(
            None,
            [
                "optim.betas=[0.5,0.8]",
                "run.resume=a/b.pt",
                "schedule.milestones=[3]",
                "data.scheme=68",
                "optim.lr=3e-5",
            ],
        )
        path = tmp_path / "run" / "config.yaml"
        save_config(cfg, path)
        assert load_config(path) == cfg
        assert load_config(path, cls=TrainConfig) != TrainConfig()

    def test_dict_is_plain(self):
        data = config_to_dict(TrainConfig())
        assert data["optim"]["betas"] == [0.9, 0.999]
        assert data["data"]["augment"]["flip_prob"] == 0.5

        def leaves(x):
            if isinstance(x, dict):
                for v in x.values():
                    yield from leaves(v)
            elif isinstance(x, list):
                for v in x:
                    yield from leaves(v)
            else:
                yield x

        assert all(type(v) in (bool, int, float, str, type(None)) for v in leaves(data))
        assert yaml.safe_load(yaml.safe_dump(data)) == data

    def test_from_partial_dict(self):
        cfg = config_from_dict({"optim": {"lr": 0.5}})
        assert cfg.optim.lr == 0.5 and cfg.optim.name == "rmsprop"
        assert config_from_dict(config_to_dict(cfg)) == cfg
        with pytest.raises(ConfigError, match="did you mean 'optim.lr'"):
            config_from_dict({"optim": {"LR": 0.5}})

    def test_to_dict_type_error(self):
        with pytest.raises(TypeError, match="expects a dataclass instance, got dict"):
            config_to_dict({"a": 1})


@dataclass
class _Head:
    anchors: tuple[int, ...] = field(default=(16, 32), metadata={"help": "anchor sizes"})
    mode: Literal["a", "b"] = field(default="a", metadata={"help": "mode"})
    thresh: float | None = field(default=None, metadata={"help": "optional threshold"})


@dataclass
class _Detector:
    head: _Head = field(default_factory=lambda: _Head(mode="b"), metadata={"help": "head"})
    size: int = field(default=640, metadata={"help": "input size"})


class TestGeneric:
    def test_other_dataclass_tree(self, tmp_path):
        cfg = load_config(None, ["head.anchors=[8, 16, 32]", "head.thresh=0.5"], cls=_Detector)
        assert cfg == _Detector(head=_Head(anchors=(8, 16, 32), mode="b", thresh=0.5))
        save_config(cfg, tmp_path / "det.yaml")
        assert load_config(tmp_path / "det.yaml", cls=_Detector) == cfg

    def test_partial_override_keeps_parent_default(self):
        # the parent's default for the section (mode="b") survives an override of a sibling key
        assert load_config(None, ["head.thresh=1"], cls=_Detector).head.mode == "b"

    def test_suggestion_within_tree(self):
        with pytest.raises(ConfigError, match="did you mean 'head.anchors'"):
            load_config(None, ["head.anchor=[1]"], cls=_Detector)

    def test_unsupported_field_type(self):
        @dataclass
        class Bad:
            table: dict = field(default_factory=dict)

        with pytest.raises(TypeError, match="unsupported field type"):
            load_config(None, ["table={a: 1}"], cls=Bad)
