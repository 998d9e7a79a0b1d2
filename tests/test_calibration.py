"""Tests of awing.calibration (box-adapter fit), scripts/calibrate_box_adapter.py (canvas placement, detection
pairing) and scripts/bundle_models.py (bundle round trip through FaceAligner.from_pretrained), and of
save_detector's extra metadata."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from script_loader import load_script

from awing.aligner import FaceAligner
from awing.calibration import (
    TERMS,
    AdapterFit,
    adapter_terms,
    best_match,
    crop_errors,
    file_sha256,
    fit_box_adapter,
)
from awing.config import load_config, save_config
from awing.data.sample import LandmarkRecord
from awing.detection import FaceDetectorNet, load_detector, save_detector
from awing.detection.config import DetectorConfig, DetectorModelConfig, InferenceConfig
from awing.geometry import BoxAdapter, box_to_crop_matrix
from awing.inference import InferenceSettings
from awing.models import StackedHourglass, save_weights
from awing.models.weights import read_metadata, read_weights

calibrate_script = load_script("calibrate_box_adapter")
bundle_script = load_script("bundle_models")


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 4) xyxy boxes of varied aspect: corner in [0, 200), sides in [20, 120)."""
    corner = rng.uniform(0, 200, size=(n, 2))
    return np.concatenate([corner, corner + rng.uniform(20, 120, size=(n, 2))], axis=1)


class TestAdapterTerms:
    def test_hand_values(self):
        det = np.array([[0.0, 0.0, 100.0, 50.0]])  # centre (50, 25), size (100, 50)
        target = np.array([[10.0, 5.0, 90.0, 65.0]])  # centre (50, 35), size (80, 60)
        np.testing.assert_allclose(adapter_terms(det, target), [[0.0, 10.0 / 50.0, 80.0 / 100.0]])
        target = np.array([[-20.0, 0.0, 100.0, 50.0]])  # centre (40, 25), size (120, 50)
        np.testing.assert_allclose(adapter_terms(det, target), [[-0.1, 0.0, 1.2]])

    def test_shape_and_dtype(self):
        rng = np.random.default_rng(0)
        terms = adapter_terms(_random_boxes(rng, 7), _random_boxes(rng, 7).astype(np.float32))
        assert terms.shape == (7, 3) and terms.dtype == np.float64
        assert adapter_terms(np.zeros((0, 4)), np.zeros((0, 4))).shape == (0, 3)

    def test_errors(self):
        good = np.array([[0.0, 0.0, 10.0, 10.0]])
        with pytest.raises(ValueError, match=r"detector_boxes must be \(N, 4\).*\(4,\)"):
            adapter_terms(good[0], good)
        with pytest.raises(ValueError, match=r"target_boxes\[0\] must be finite with x1 > x0"):
            adapter_terms(good, np.array([[0.0, 0.0, 0.0, 10.0]]))
        with pytest.raises(ValueError, match=r"detector_boxes\[0\] must be finite"):
            adapter_terms(np.array([[0.0, np.nan, 10.0, 10.0]]), good)
        with pytest.raises(ValueError, match="must pair up, got 2 and 1"):
            adapter_terms(np.repeat(good, 2, axis=0), good)


class TestFitBoxAdapter:
    @pytest.mark.parametrize("adapter", [BoxAdapter(), BoxAdapter(0.03, -0.12, 1.17), BoxAdapter(-0.2, 0.25, 0.6)])
    def test_recovers_known_adapter(self, adapter):
        det = _random_boxes(np.random.default_rng(1), 41)
        fit = fit_box_adapter(det, adapter(det))
        assert fit.count == 41
        for term in TERMS:
            assert getattr(fit.adapter, term) == pytest.approx(getattr(adapter, term), abs=1e-12)
            assert fit.iqr(term) == pytest.approx(0.0, abs=1e-12)

    def test_adapted_crop_equals_target_crop(self):
        """Targets of another aspect than scale x the detector box: the crops still agree (only max side counts)."""
        rng = np.random.default_rng(2)
        det = _random_boxes(rng, 25)
        size = det[:, 2:] - det[:, :2]
        centre = 0.5 * (det[:, :2] + det[:, 2:]) + size * (0.05, -0.1)
        side = 0.9 * size.max(axis=1, keepdims=True)
        half = 0.5 * side * np.column_stack([np.ones(25), rng.uniform(0.5, 1.0, 25)])  # max side = side
        half = np.where(rng.random((25, 1)) < 0.5, half, half[:, ::-1])
        target = np.concatenate([centre - half, centre + half], axis=1)
        adapter = fit_box_adapter(det, target).adapter
        for d, t in zip(adapter(det), target, strict=True):
            np.testing.assert_allclose(box_to_crop_matrix(d, 64, 1.25), box_to_crop_matrix(t, 64, 1.25), atol=1e-9)
        np.testing.assert_allclose(crop_errors(adapter(det), target), 0.0, atol=1e-9)
        assert (crop_errors(det, target) > 0).all()

    def test_median_ignores_outliers_and_quartiles(self):
        det = np.tile([[0.0, 0.0, 100.0, 100.0]], (5, 1))
        shifts_x = np.array([0.0, 0.1, 0.2, 0.3, 5.0])  # one wild detection
        target = det + np.outer(shifts_x * 100.0, [1, 0, 1, 0])
        fit = fit_box_adapter(det, target)
        assert (fit.adapter.shift_x, fit.adapter.shift_y, fit.adapter.scale) == pytest.approx((0.2, 0.0, 1.0))
        assert fit.quartiles["shift_x"] == pytest.approx((0.1, 0.2, 0.3))
        assert fit.iqr("shift_x") == pytest.approx(0.2)
        out = fit.to_dict()
        assert out["count"] == 5 and out["box_adapter"] == fit.adapter.to_dict()
        assert out["terms"]["shift_x"] == pytest.approx({"q25": 0.1, "median": 0.2, "q75": 0.3, "iqr": 0.2})
        json.dumps(out)

    def test_even_count_median_is_midpoint(self):
        det = np.tile([[0.0, 0.0, 10.0, 10.0]], (2, 1))
        target = np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 20.0, 20.0]])  # scales 1 and 2, centre shifts .5
        fit = fit_box_adapter(det, target)
        assert isinstance(fit, AdapterFit)
        assert (fit.adapter.shift_x, fit.adapter.shift_y, fit.adapter.scale) == pytest.approx((0.25, 0.25, 1.5))

    def test_empty_raises(self):
        with pytest.raises(ValueError, match="at least one pair of boxes, got 0"):
            fit_box_adapter(np.zeros((0, 4)), np.zeros((0, 4)))


class TestCropErrors:
    def test_hand_values(self):
        target = np.array([[0.0, 0.0, 100.0, 50.0]])  # centre (50, 25), side 100
        boxes = np.array([[30.0, 15.0, 90.0, 95.0]])  # centre (60, 55), side 80
        expected = [[math.hypot(10, 30) / 100, abs(math.log(0.8))]]
        np.testing.assert_allclose(crop_errors(boxes, target), expected)
        np.testing.assert_allclose(crop_errors(target, target), [[0.0, 0.0]])

    def test_errors(self):
        with pytest.raises(ValueError, match="must pair up"):
            crop_errors(np.zeros((0, 4)), np.array([[0.0, 0, 1, 1]]))


class TestBestMatch:
    target = np.array([0.0, 0.0, 10.0, 10.0])

    def test_highest_score_above_iou(self):
        boxes = np.array(
            [
                [0.0, 0.0, 10.0, 10.0],  # IoU 1, score 0.6
                [0.0, 0.0, 10.0, 5.0],  # IoU 0.5, score 0.9
                [20.0, 20.0, 30.0, 30.0],  # IoU 0, score 0.99
                [0.0, 0.0, 10.0, 2.0],  # IoU 0.2, score 0.95
            ]
        )
        scores = np.array([0.6, 0.9, 0.99, 0.95])
        assert best_match(boxes, scores, self.target) == 1
        assert best_match(boxes, scores, self.target, min_iou=0.5) == 1
        assert best_match(boxes, scores, self.target, min_iou=0.51) == 0
        assert best_match(boxes, scores, self.target, min_iou=0.2) == 3

    def test_none(self):
        assert best_match(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), self.target) is None
        assert best_match(np.array([[20.0, 20, 30, 30]]), np.array([0.9]), self.target) is None

    def test_errors(self):
        with pytest.raises(ValueError, match=r"min_iou must be in \(0, 1\], got 0"):
            best_match(np.zeros((0, 4)), np.zeros(0), self.target, min_iou=0)
        with pytest.raises(ValueError, match="one value per box: 1 boxes, 2 scores"):
            best_match(np.array([[0.0, 0, 1, 1]]), np.zeros(2), self.target)
        with pytest.raises(ValueError, match=r"target\[0\] must be finite with x1 > x0"):
            best_match(np.zeros((0, 4)), np.zeros(0), np.array([5.0, 0, 5, 1]))


def test_file_sha256(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert file_sha256(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert file_sha256(str(path)) == hashlib.sha256(b"abc").hexdigest()


class TestCanvas:
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)

    def test_replicate(self):
        canvas, dx, dy = calibrate_script.place_in_canvas(self.image, 3.0, "replicate")
        assert canvas.shape == (12, 18, 3) and (dx, dy) == (6, 4)
        np.testing.assert_array_equal(canvas[dy : dy + 4, dx : dx + 6], self.image)
        np.testing.assert_array_equal(canvas[0, 0], self.image[0, 0])
        np.testing.assert_array_equal(canvas[-1, dx + 2], self.image[-1, 2])

    def test_grey(self):
        canvas, dx, dy = calibrate_script.place_in_canvas(self.image, 2.0, "grey")
        assert canvas.shape == (8, 12, 3) and (dx, dy) == (3, 2)
        np.testing.assert_array_equal(canvas[dy : dy + 4, dx : dx + 6], self.image)
        assert (canvas[:dy] == 128).all() and (canvas[:, :dx] == 128).all()

    def test_errors(self):
        with pytest.raises(ValueError, match="border must be one of"):
            calibrate_script.place_in_canvas(self.image, 3.0, "reflect")
        with pytest.raises(ValueError, match="canvas factor must be >= 1, got 0.5"):
            calibrate_script.place_in_canvas(self.image, 0.5, "grey")

    def test_evenly_spaced(self):
        assert calibrate_script.evenly_spaced(5, None).tolist() == [0, 1, 2, 3, 4]
        assert calibrate_script.evenly_spaced(5, 9).tolist() == [0, 1, 2, 3, 4]
        assert calibrate_script.evenly_spaced(101, 3).tolist() == [0, 50, 100]


class WhiteBoxDetector:
    """Finds the white rectangle of a canvas and reports the box ``inverse`` maps onto it, plus a decoy."""

    def __init__(self, adapter: BoxAdapter) -> None:
        self.adapter = adapter

    def detect_batch(self, images):
        out = []
        for image in images:
            ys, xs = np.nonzero((image == 255).all(axis=2))
            # the white pixels' box in the continuous convention of box_to_crop_matrix: pixel edges at +-0.5
            target = np.array([xs.min() - 0.5, ys.min() - 0.5, xs.max() + 0.5, ys.max() + 0.5])
            # invert the adapter: centre c_d = c_t - shift * size_d, size_d = size_t / scale
            size = (target[2:] - target[:2]) / self.adapter.scale
            centre = 0.5 * (target[:2] + target[2:]) - size * (self.adapter.shift_x, self.adapter.shift_y)
            box = np.concatenate([centre - size / 2, centre + size / 2])
            decoy = np.array([0.0, 0.0, 3.0, 3.0])
            out.append({"boxes": np.stack([decoy, box]).astype(np.float32), "scores": np.array([0.99, 0.7])})
        return out


def test_detect_pairs_canvas_bookkeeping(tmp_path):
    """Face boxes given in crop pixels come back in canvas pixels: the fit recovers the detector's adapter."""
    rng = np.random.default_rng(3)
    records = []
    for i in range(5):
        image = np.full((30, 40, 3), 60, np.uint8)
        x0, y0 = rng.integers(3, 12, size=2)
        w, h = rng.integers(10, 18, size=2)
        image[y0 : y0 + h, x0 : x0 + w] = 255
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), image)
        box = np.array([x0 - 0.5, y0 - 0.5, x0 + w - 0.5, y0 + h - 0.5], np.float32)
        records.append(LandmarkRecord(str(path), np.zeros((68, 2), np.float32), np.ones(68, bool), box))
    adapter = BoxAdapter(0.04, -0.08, 0.9)
    dataset = SimpleNamespace(records=records)
    det, target, any_face = calibrate_script.detect_pairs(
        WhiteBoxDetector(adapter), dataset, range(5), factor=3.0, border="grey", min_iou=0.3, batch_size=2
    )
    assert det.shape == target.shape == (5, 4) and any_face == 5
    np.testing.assert_allclose(target[0], records[0].box + np.array([40, 30, 40, 30]))
    fit = fit_box_adapter(det, target)
    for term in TERMS:
        assert getattr(fit.adapter, term) == pytest.approx(getattr(adapter, term), abs=1e-5)


class TestSaveDetectorExtraMetadata:
    def test_round_trip(self, tmp_path):
        model = FaceDetectorNet(DetectorModelConfig(fpn_channels=8))
        path = save_detector(model, tmp_path / "d.safetensors", extra_metadata={"trained_on": "x"})
        metadata = read_metadata(path)
        assert metadata["trained_on"] == "x" and metadata["format"] == "awing.detector.v1"
        loaded, _ = load_detector(path)
        for key, value in model.state_dict().items():
            torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)

    def test_errors(self, tmp_path):
        model = FaceDetectorNet(DetectorModelConfig(fpn_channels=8))
        with pytest.raises(ValueError, match=r"reserved keys \['inference'\]"):
            save_detector(model, tmp_path / "d.safetensors", extra_metadata={"inference": "{}"})
        with pytest.raises(TypeError, match="map str to str.*'n': int"):
            save_detector(model, tmp_path / "d.safetensors", extra_metadata={"n": 1})
        with pytest.raises(TypeError, match="must be a mapping of str to str, got list"):
            save_detector(model, tmp_path / "d.safetensors", extra_metadata=[("a", "b")])
        assert not (tmp_path / "d.safetensors").exists()


def _landmark_run(root: Path, num_points: int = 68) -> tuple[Path, StackedHourglass]:
    """A run folder like ``awing train`` writes: config.yaml, metrics.jsonl, best.safetensors (tiny model)."""
    overrides = [
        f"data.scheme='{num_points}'",
        "data.name=aflw68",
        "data.val_split=val",
        "data.input_size=32",
        "data.heatmap_size=8",
        "data.crop_scale=1.3",
        "data.sigma=1.0",
        "run.name=tiny68",
        f"run.out_dir={root}",
    ]
    cfg = load_config(None, overrides)
    torch.manual_seed(0)
    model = StackedHourglass(num_stacks=1, num_landmarks=num_points, features=16, depth=1, input_size=32)
    save_config(cfg, root / "config.yaml")
    save_weights(model, root / "best.safetensors")
    lines = [
        {"step": 1, "epoch": 1, "val_nme_box": 0.09, "best": True},
        {"step": 2, "epoch": 2, "val_nme_box": 0.07, "val_fr@0.10": 0.2, "train_loss": 1.0, "best": True},
        {"step": 3, "epoch": 3, "val_nme_box": 0.08, "best": False},
    ]
    (root / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return root, model


def _detector_run(root: Path) -> tuple[Path, FaceDetectorNet]:
    root.mkdir(parents=True)
    cfg = load_config(None, ["data.name=face_mask", "run.name=tinydet"], cls=DetectorConfig)
    save_config(cfg, root / "config.yaml")
    torch.manual_seed(1)
    model = FaceDetectorNet(DetectorModelConfig(fpn_channels=8))
    save_detector(model, root / "best.safetensors", InferenceConfig(score_threshold=0.6, input_max_side=320))
    (root / "metrics.jsonl").write_text(json.dumps({"epoch": 4, "step": 8, "val_ap": 0.5, "best": True}) + "\n")
    return root / "best.safetensors", model


class TestBundle:
    def test_round_trip(self, tmp_path):
        run, model = _landmark_run(tmp_path / "run")
        detector_file, detector = _detector_run(tmp_path / "det")
        adapter = BoxAdapter(0.01, 0.12, 0.87)
        calibration = {"detector_sha256": file_sha256(detector_file), "detection_rate": 0.9}
        adapter_file = tmp_path / "adapter.json"
        adapter_file.write_text(json.dumps({"box_adapter": adapter.to_dict(), "calibration": calibration}))
        out = tmp_path / "bundle"
        args = ["--landmarks", str(run), "--detector", str(detector_file), "--adapter", str(adapter_file)]
        assert bundle_script.main([*args, "--out", str(out), "--training-command", "awing train tiny.yaml"]) == 0

        aligner = FaceAligner.from_pretrained(
            out / "landmarks_68.safetensors", device="cpu", detector=out / "detector.safetensors"
        )
        assert aligner.settings == InferenceSettings(crop_scale=1.3, codec="subpixel", sigma=1.0, box_adapter=adapter)
        assert aligner.detector.settings == InferenceConfig(score_threshold=0.6, input_max_side=320)
        state, info = read_weights(out / "landmarks_68.safetensors")
        assert info.scheme == "68" and all(v.dtype in (torch.float32, torch.int64) for v in state.values())
        for key, value in model.state_dict().items():
            torch.testing.assert_close(state[key], value, rtol=0, atol=0)
        loaded_detector, _ = load_detector(out / "detector.safetensors")
        for key, value in detector.state_dict().items():
            torch.testing.assert_close(loaded_detector.state_dict()[key], value, rtol=0, atol=0)

        metadata = read_metadata(out / "landmarks_68.safetensors")
        assert json.loads(metadata["data"]) == {
            "crop_scale": 1.3,
            "codec": "subpixel",
            "sigma": 1.0,
            "input_size": 32,
            "heatmap_size": 8,
        }
        assert metadata["trained_on"] == "aflw68, train split" and metadata["training_run"] == "tiny68"
        assert metadata["training_command"] == "awing train tiny.yaml"
        validation = {"split": "val", "epoch": 2, "step": 2, "val_nme_box": 0.07, "val_fr@0.10": 0.2}
        assert json.loads(metadata["validation"]) == validation
        assert json.loads(metadata["box_adapter_calibration"]) == calibration
        training_config = json.loads(metadata["training_config"])
        assert "run" not in training_config and "root" not in training_config["data"]
        assert training_config["data"]["crop_scale"] == 1.3
        assert str(tmp_path) not in json.dumps(metadata)  # no machine paths
        det_meta = read_metadata(out / "detector.safetensors")
        assert det_meta["trained_on"] == "face_mask, train split" and det_meta["training_run"] == "tinydet"
        assert json.loads(det_meta["validation"]) == {"split": "val", "epoch": 4, "step": 8, "val_ap": 0.5}

        assert bundle_script.main([*args, "--out", str(out), "--detector-threshold", "0.35"]) == 0
        assert load_detector(out / "detector.safetensors")[1] == InferenceConfig(
            score_threshold=0.35, input_max_side=320
        )

    def test_weights_file_with_config_and_bare_adapter(self, tmp_path):
        run, _ = _landmark_run(tmp_path / "run", num_points=21)
        detector_file, _ = _detector_run(tmp_path / "det")
        weights = tmp_path / "loose.safetensors"  # no config.yaml beside it
        weights.write_bytes((run / "best.safetensors").read_bytes())
        adapter_file = tmp_path / "adapter.json"
        adapter_file.write_text(json.dumps({"shift_x": 0.0, "shift_y": 0.1, "scale": 1.1}))
        args = ["--landmarks", str(weights), "--detector", str(detector_file), "--adapter", str(adapter_file)]
        out = tmp_path / "bundle"
        with pytest.raises(SystemExit, match="no config.yaml beside.*pass --config"):
            bundle_script.main([*args, "--out", str(out)])
        bundle_script.main([*args, "--out", str(out), "--config", str(run / "config.yaml")])
        metadata = read_metadata(out / "landmarks_21.safetensors")
        assert "validation" not in metadata and "box_adapter_calibration" not in metadata
        assert BoxAdapter.from_dict(json.loads(metadata["box_adapter"])) == BoxAdapter(0.0, 0.1, 1.1)

    def test_refusals(self, tmp_path, monkeypatch):
        run, _ = _landmark_run(tmp_path / "run", num_points=21)
        detector_file, _ = _detector_run(tmp_path / "det")
        adapter_file = tmp_path / "adapter.json"
        adapter_file.write_text(json.dumps({"box_adapter": BoxAdapter().to_dict(), "calibration": {}}))
        args = ["--landmarks", str(run), "--detector", str(detector_file), "--adapter", str(adapter_file)]
        assets = tmp_path / "assets"
        monkeypatch.setattr(bundle_script, "ASSETS_DIR", assets)
        with pytest.raises(SystemExit, match="only a 68-point model goes to .*it has 21"):
            bundle_script.main([*args, "--out", str(assets)])
        assert not assets.exists()
        adapter_file.write_text(json.dumps({"box_adapter": {}, "calibration": {"detector_sha256": "0" * 64}}))
        with pytest.raises(SystemExit, match="calibrated for another detector file"):
            bundle_script.main([*args, "--out", str(tmp_path / "o")])
        bundle_script.main([*args, "--out", str(tmp_path / "o"), "--force"])
        wrong = load_config(run / "config.yaml", ["data.input_size=64", "data.heatmap_size=16"])
        save_config(wrong, tmp_path / "wrong.yaml")
        with pytest.raises(SystemExit, match=r"data.input_size=64 but the model .* has 32"):
            bundle_script.main(
                [*args, "--out", str(tmp_path / "p"), "--force", "--config", str(tmp_path / "wrong.yaml")]
            )
