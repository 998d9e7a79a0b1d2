"""Tests of weights I/O (safetensors with metadata, .pth) and official-checkpoint loading (methods.md §3.5, §3.8)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import safe_open, save_file

from awing import __version__
from awing.cli import main
from awing.models import (
    ModelConfig,
    StackedHourglass,
    convert_official,
    from_official,
    load_state_dict_strict,
    load_weights,
    read_weights,
    save_weights,
    strip_prefixes,
)
from awing.models.weights import WEIGHTS_FORMAT

SMALL = {"num_stacks": 2, "num_landmarks": 5, "features": 32, "depth": 2, "input_size": 64}


def _bn_spec(name: str, channels: int) -> dict[str, tuple[int, ...]]:
    spec = {f"{name}.{p}": (channels,) for p in ("weight", "bias", "running_mean", "running_var")}
    return {**spec, f"{name}.num_batches_tracked": ()}


def _convblock_spec(name: str, cin: int, cout: int) -> dict[str, tuple[int, ...]]:
    half, quarter = cout // 2, cout // 4
    spec = {
        **_bn_spec(f"{name}.bn1", cin),
        f"{name}.conv1.weight": (half, cin, 3, 3),
        **_bn_spec(f"{name}.bn2", half),
        f"{name}.conv2.weight": (quarter, half, 3, 3),
        **_bn_spec(f"{name}.bn3", quarter),
        f"{name}.conv3.weight": (quarter, quarter, 3, 3),
    }
    if cin != cout:
        spec.update({**_bn_spec(f"{name}.downsample.0", cin), f"{name}.downsample.2.weight": (cout, cin, 1, 1)})
    return spec


def official_spec(num_stacks: int = 4, num_landmarks: int = 98) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the official FAN state dict, written from methods.md §3.2-§3.4 and §3.8 alone."""
    out = num_landmarks + 1
    spec = {"conv1.conv.weight": (64, 6, 7, 7), "conv1.conv.bias": (64,), **_bn_spec("bn1", 64)}
    spec.update(_convblock_spec("conv2", 64, 128) | _convblock_spec("conv3", 128, 128))
    spec.update(_convblock_spec("conv4", 128, 256))
    for i in range(num_stacks):
        spec[f"m{i}.coordconv.conv.weight"] = (256, 259 if i == 0 else 261, 1, 1)
        spec[f"m{i}.coordconv.conv.bias"] = (256,)
        blocks = [f"b{b}_{level}" for level in range(1, 5) for b in (1, 2, 3)] + ["b2_plus_1"]
        for block in blocks:
            spec.update(_convblock_spec(f"m{i}.{block}", 256, 256))
        spec.update(_convblock_spec(f"top_m_{i}", 256, 256))
        spec.update({f"conv_last{i}.weight": (256, 256, 1, 1), f"conv_last{i}.bias": (256,)})
        spec.update(_bn_spec(f"bn_end{i}", 256))
        spec.update({f"l{i}.weight": (out, 256, 1, 1), f"l{i}.bias": (out,)})
        if i < num_stacks - 1:
            spec.update({f"bl{i}.weight": (256, 256, 1, 1), f"bl{i}.bias": (256,)})
            spec.update({f"al{i}.weight": (256, out, 1, 1), f"al{i}.bias": (256,)})
    return spec


def random_state_dict(spec: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values of the right kind per key: fan-in scaled weights, BN statistics around identity."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in spec.items():
        kind = key.rsplit(".", 1)[1]
        if kind == "num_batches_tracked":
            state[key] = torch.tensor(1000)
        elif kind == "running_var" or (kind == "weight" and len(shape) == 1):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif kind in ("running_mean", "bias"):
            state[key] = 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
    return state


def _small_model(seed: int = 0, **overrides) -> StackedHourglass:
    model = StackedHourglass(**{**SMALL, **overrides})
    model.load_state_dict(random_state_dict({k: tuple(v.shape) for k, v in model.state_dict().items()}, seed))
    return model.eval()


def official_forward(state: dict[str, torch.Tensor], x: torch.Tensor, swap_xy: bool = False) -> list[torch.Tensor]:
    """The official FAN forward pass (methods.md §3.1-§3.5) written with functional ops on a raw state dict."""

    def bn(name, t):
        s = [state[f"{name}.{p}"] for p in ("running_mean", "running_var", "weight", "bias")]
        return F.batch_norm(t, *s, training=False, eps=1e-5)

    def block(name, t):
        out1 = F.conv2d(F.relu(bn(f"{name}.bn1", t)), state[f"{name}.conv1.weight"], padding=1)
        out2 = F.conv2d(F.relu(bn(f"{name}.bn2", out1)), state[f"{name}.conv2.weight"], padding=1)
        out3 = F.conv2d(F.relu(bn(f"{name}.bn3", out2)), state[f"{name}.conv3.weight"], padding=1)
        if f"{name}.downsample.2.weight" in state:
            t = F.conv2d(F.relu(bn(f"{name}.downsample.0", t)), state[f"{name}.downsample.2.weight"])
        return torch.cat([out1, out2, out3], 1) + t

    def coords(t, boundary=None):
        b, _, h, w = t.shape
        xx, yy = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        if swap_xy:
            xx, yy = yy, xx
        rr = torch.sqrt(xx**2 + yy**2) / math.sqrt(2)
        extra = [xx, yy, rr]
        if boundary is not None:
            on = (boundary.clamp(0, 1) > 0.05).float()[:, 0]
            extra = [e.expand(b, h, w) for e in extra] + [xx * on, yy * on]
        return torch.cat([t, torch.stack([e.expand(b, h, w) for e in extra], 1)], 1)

    def conv(name, t, **kw):
        return F.conv2d(t, state[f"{name}.weight"], state[f"{name}.bias"], **kw)

    def hourglass(i, level, t):
        up = block(f"m{i}.b1_{level}", t)
        low = block(f"m{i}.b2_{level}", F.avg_pool2d(t, 2))
        low = hourglass(i, level - 1, low) if level > 1 else block(f"m{i}.b2_plus_1", low)
        low = block(f"m{i}.b3_{level}", low)
        return up + F.interpolate(low, scale_factor=2, mode="nearest")

    depth = max(int(k.split(".")[1][3:]) for k in state if k.startswith("m0.b1_"))
    t = F.relu(bn("bn1", conv("conv1.conv", coords(x), stride=2, padding=3)))
    previous = block("conv4", block("conv3", F.avg_pool2d(block("conv2", t), 2)))
    outputs, tmp_out, i = [], None, 0
    while f"l{i}.weight" in state:
        boundary = None if tmp_out is None else tmp_out[:, -1:]
        hg = hourglass(i, depth, conv(f"m{i}.coordconv.conv", coords(previous, boundary)))
        ll = F.relu(bn(f"bn_end{i}", conv(f"conv_last{i}", block(f"top_m_{i}", hg))))
        tmp_out = conv(f"l{i}", ll)
        outputs.append(tmp_out)
        if f"bl{i}.weight" in state:
            previous = previous + conv(f"bl{i}", ll) + conv(f"al{i}", tmp_out)
        i += 1
    return outputs


@pytest.fixture(scope="module")
def official_state() -> dict[str, torch.Tensor]:
    return random_state_dict(official_spec())


class TestStripPrefixes:
    def test_prefixes(self):
        t = torch.zeros(1)
        state = {"module.a": t, "_orig_mod.b": t, "module._orig_mod.c": t, "_orig_mod.module.d": t, "e.module.f": t}
        assert list(strip_prefixes(state)) == ["a", "b", "c", "d", "e.module.f"]

    def test_collision(self):
        with pytest.raises(ValueError, match="two state-dict keys map to 'a'"):
            strip_prefixes({"a": torch.zeros(1), "module.a": torch.zeros(1)})


class TestLoadStrict:
    def test_missing_unexpected_and_shapes_named(self):
        model = StackedHourglass(**SMALL)
        state = model.state_dict()
        del state["l1.bias"], state["bn1.weight"]
        state["extra.weight"] = torch.zeros(1)
        state["l0.weight"] = torch.zeros(7, 32, 1, 1)
        with pytest.raises(ValueError) as info:
            load_state_dict_strict(model, state)
        message = str(info.value)
        assert "missing keys: 2 (bn1.weight, l1.bias)" in message
        assert "unexpected keys: 1 (extra.weight)" in message
        assert "shape mismatches: 1 (l0.weight [7, 32, 1, 1] (model [6, 32, 1, 1]))" in message

    def test_missing_num_batches_tracked_is_tolerated(self):
        model = _small_model()
        state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
        fresh = StackedHourglass(**SMALL)
        load_state_dict_strict(fresh, {f"module.{k}": v for k, v in state.items()})
        assert torch.equal(fresh.bn1.running_var, model.bn1.running_var)


class TestSafetensors:
    def test_round_trip_identical_outputs(self, tmp_path):
        model = _small_model(seed=1)
        path = save_weights(model, tmp_path / "sub" / "w.safetensors")
        loaded = load_weights(path)
        assert loaded.config == model.config and not loaded.training
        x = torch.rand(2, 3, 64, 64)
        with torch.inference_mode():
            for a, b in zip(model(x), loaded(x), strict=True):
                assert torch.equal(a, b)
        for key, value in model.state_dict().items():
            assert torch.equal(value, loaded.state_dict()[key]), key

    def test_metadata(self, tmp_path):
        model = StackedHourglass(**{**SMALL, "num_landmarks": 68})
        path = save_weights(model, tmp_path / "w.safetensors")
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        assert metadata["format"] == WEIGHTS_FORMAT and metadata["awing_version"] == __version__
        assert metadata["scheme"] == "68" and metadata["input_size"] == "64"
        assert json.loads(metadata["model_config"]) == model.config.to_dict()
        _, info = read_weights(path)
        assert (info.config, info.scheme, info.input_size, info.awing_version) == (model.config, "68", 64, __version__)

    def test_scheme(self, tmp_path):
        model = StackedHourglass(**SMALL)  # 5 points
        assert read_weights(save_weights(model, tmp_path / "a.safetensors", scheme="five"))[1].scheme == "5"
        with pytest.raises(ValueError, match="scheme 'wflw' has 98 points but the model predicts 5"):
            save_weights(model, tmp_path / "b.safetensors", scheme="wflw")
        no_scheme = StackedHourglass(**{**SMALL, "num_landmarks": 7})
        assert read_weights(save_weights(no_scheme, tmp_path / "c.safetensors"))[1].scheme is None

    def test_save_errors(self, tmp_path):
        with pytest.raises(ValueError, match="saved as .safetensors, got 'w.pth'"):
            save_weights(StackedHourglass(**SMALL), tmp_path / "w.pth")
        with pytest.raises(TypeError, match="expects a StackedHourglass, got Linear"):
            save_weights(torch.nn.Linear(2, 2), tmp_path / "w.safetensors")

    def test_load_errors(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="weights file not found"):
            load_weights(tmp_path / "none.safetensors")
        (tmp_path / "w.onnx").write_bytes(b"x")
        with pytest.raises(ValueError, match=r"unsupported weights file 'w.onnx': expected one of \('.safetensors'"):
            load_weights(tmp_path / "w.onnx")
        (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
        with pytest.raises(ValueError, match="is not a readable .safetensors file"):
            load_weights(tmp_path / "junk.safetensors")
        save_file({"a": torch.zeros(1)}, str(tmp_path / "bare.safetensors"))
        with pytest.raises(ValueError, match="has no awing metadata"):
            load_weights(tmp_path / "bare.safetensors")

    def test_wrong_tensors(self, tmp_path):
        model = StackedHourglass(**SMALL)
        path = save_weights(model, tmp_path / "w.safetensors")
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("l1.")}
        save_file(state, str(path), metadata=metadata)
        with pytest.raises(ValueError, match=r"missing keys: 2 \(l1.weight, l1.bias\)"):
            load_weights(path)


class TestTorchCheckpoints:
    def test_bare_prefixed_state_dict(self, tmp_path):
        model = _small_model(seed=2)
        torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "w.pth")
        loaded = load_weights(tmp_path / "w.pth", input_size=64)
        assert loaded.config == model.config
        assert torch.equal(loaded.l1.weight, model.l1.weight)

    def test_wrapped_with_config(self, tmp_path):
        model = _small_model(seed=3, with_boundary=False, num_stacks=1)
        wrapped = {"model": model.state_dict(), "model_config": model.config.to_dict(), "scheme": "5", "epoch": 3}
        torch.save(wrapped, tmp_path / "ckpt.pt")
        state, info = read_weights(tmp_path / "ckpt.pt")
        assert info.config == model.config and info.scheme == "5" and info.awing_version is None
        assert load_weights(tmp_path / "ckpt.pt").config.with_boundary is False

    def test_unsafe_pickle_refused(self, tmp_path):
        torch.save({"state_dict": {"a": torch.zeros(1)}, "opt": ModelConfig()}, tmp_path / "w.pth")
        with pytest.raises(ValueError, match="cannot load checkpoint .* with weights_only=True"):
            load_weights(tmp_path / "w.pth")

    def test_not_a_state_dict(self, tmp_path):
        torch.save({"a": 1}, tmp_path / "w.pth")
        with pytest.raises(ValueError, match=r"not all tensors, e.g. \['a'\]"):
            load_weights(tmp_path / "w.pth")


class TestFromOfficial:
    def test_spec_matches_model(self):
        """The layout written from methods.md §3.8 is exactly the model's state dict, in size and count."""
        spec = official_spec()
        state = StackedHourglass().state_dict()
        assert len(spec) == 1137
        assert {k: tuple(v.shape) for k, v in state.items()} == spec
        assert sum(math.prod(s) for k, s in spec.items() if "running" not in k and "num_batches" not in k) == (
            24_153_036
        )

    def test_official_size(self, official_state):
        checkpoint = {"state_dict": {f"module.{k}": v for k, v in official_state.items()}}
        model = from_official(checkpoint)
        assert model.config == ModelConfig() and not model.training
        assert sum(p.numel() for p in model.parameters()) == 24_153_036
        for key, value in model.state_dict().items():
            assert torch.equal(value, official_state[key]), key
        with torch.inference_mode():
            outputs = model(torch.rand(1, 3, 256, 256))
        assert [tuple(o.shape) for o in outputs] == [(1, 99, 64, 64)] * 4
        assert all(torch.isfinite(o).all() for o in outputs)

    def test_infers_stacks_and_landmarks(self):
        model = from_official(random_state_dict(official_spec(num_stacks=1, num_landmarks=68)))
        assert (model.config.num_stacks, model.config.num_landmarks) == (1, 68)

    def test_reproduces_official_forward(self):
        """awing's forward equals the official op sequence (non-square input catches a swapped x/y)."""
        model = _small_model(seed=4, num_stacks=3)
        state = model.state_dict()  # shares storage with the model
        x = torch.rand(2, 3, 64, 128)
        with torch.no_grad():
            for i in range(2):  # move the threshold into the widest gap near the median boundary value: mixed masks
                values = model(x)[i][:, -1].flatten().sort().values
                low, high = len(values) * 3 // 10, len(values) * 7 // 10
                k = low + int((values[low + 1 : high + 1] - values[low:high]).argmax())
                assert values[k + 1] - values[k] > 1e-3
                state[f"l{i}.bias"][-1] += 0.05 - (values[k] + values[k + 1]) / 2
        with torch.inference_mode():
            ours = model(x)
            theirs = official_forward(state, x)
            swapped = official_forward(state, x, swap_xy=True)
        for out in ours[:2]:
            assert 0.2 < (out[:, -1] > 0.05).float().mean() < 0.8
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(ours[-1], swapped[-1], rtol=1e-3, atol=1e-4)

    def test_wrong_checkpoint(self, official_state):
        with pytest.raises(ValueError, match=r"not an official AWing checkpoint: features=32 \(official 256\)"):
            from_official(StackedHourglass(**SMALL).state_dict())
        broken = dict(official_state)
        del broken["m2.b3_1.conv2.weight"]
        broken["m2.b3_1.conv4.weight"] = torch.zeros(1)
        with pytest.raises(ValueError, match=r"missing keys: 1 \(m2.b3_1.conv2.weight\); unexpected keys: 1"):
            from_official(broken)
        with pytest.raises(ValueError, match="not a stacked-hourglass state dict"):
            from_official({"fc.weight": torch.zeros(2, 2)})

    def test_convert_and_cli(self, tmp_path):
        state = random_state_dict(official_spec(num_stacks=1, num_landmarks=68), seed=5)
        torch.save(state, tmp_path / "official.pth")
        out = convert_official(tmp_path / "official.pth", tmp_path / "awing.safetensors")
        _, info = read_weights(out)
        assert info.scheme == "68" and info.config == ModelConfig(num_stacks=1, num_landmarks=68)
        loaded = load_weights(out)
        assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items())
        assert main(["convert-official", str(tmp_path / "official.pth"), str(tmp_path / "cli.safetensors")]) == 0
        assert (tmp_path / "cli.safetensors").is_file()
        assert main(["convert-official", str(tmp_path / "none.pth"), str(tmp_path / "x.safetensors")]) == 1
