"""The detector's second stage: square crops, offset coding, the verifier network in files and in FaceDetector."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from awing.detection import DetectorModelConfig, FaceDetector, FaceDetectorNet, load_detector, save_detector
from awing.detection.network import VerifierNet
from awing.detection.verifier import crop_squares, encode_offsets, refine_boxes, square_regions
from awing.runtime import onnxruntime_available

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


class TestSquares:
    def test_centred_on_the_box_with_whole_pixels(self):
        boxes = np.array([[10.0, 20.0, 50.0, 80.0], [0.3, 0.7, 17.2, 9.1]])
        squares = square_regions(boxes)
        side = squares[:, 2] - squares[:, 0]
        np.testing.assert_array_equal(side, squares[:, 3] - squares[:, 1])
        np.testing.assert_array_equal(side, np.round(1.25 * np.array([60.0, 16.9])))
        np.testing.assert_array_equal((squares + 0.5) % 1, 0)  # edges on pixel borders
        centre_error = (squares[:, :2] + squares[:, 2:]) / 2 - (boxes[:, :2] + boxes[:, 2:]) / 2
        assert np.abs(centre_error).max() <= 0.5  # rounding to whole pixels moves it by half a pixel at most

    def test_crop_inside_the_image_is_the_resized_region(self):
        image = noise(120, 160)
        crops, squares = crop_squares(image, np.array([[40.0, 30.0, 103.0, 93.0]]))  # side 80 -> 48: INTER_AREA
        x0, y0, x1, y1 = (squares[0] + 0.5).astype(int)
        expected = cv2.resize(image[y0:y1, x0:x1], (48, 48), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(crops[0], expected)

    def test_outside_the_image_is_black_and_huge_boxes_are_cheap(self):
        image = np.full((100, 100, 3), 200, np.uint8)
        crops, squares = crop_squares(image, np.array([[-60.0, 20.0, 39.0, 79.0], [-1e6, -1e6, 1e6, 1e6]]))
        # first box: square side round(1.25 * 99) = 124 from (-72.5, -12.5): the image covers crop columns from
        # 72.5 / 124 * 48 = 28.1 and rows 12.5 / 124 * 48 = 4.8 to 112.5 / 124 * 48 = 43.5
        np.testing.assert_array_equal(squares[0], [-72.5, -12.5, 51.5, 111.5])
        assert crops[0][:, :27].max() == 0 and crops[0][:4].max() == 0 and crops[0][45:].max() == 0
        assert crops[0][6:42, 29:].min() == 200
        assert crops[1].max() == 0  # the image is under a hundredth of a crop pixel there: nothing to see
        assert squares[1, 2] - squares[1, 0] == 2.5e6

    def test_offsets_round_trip(self):
        rng = np.random.default_rng(1)
        boxes = rng.uniform(0, 100, (20, 2)).repeat(2, axis=1) + np.array([0, 0, 30, 40]) * rng.uniform(0.5, 2, (20, 1))
        boxes = boxes[:, [0, 2, 1, 3]]
        squares = square_regions(boxes)
        targets = boxes + rng.normal(0, 3, boxes.shape)
        np.testing.assert_allclose(refine_boxes(squares, encode_offsets(squares, targets)), targets, atol=1e-3)
        np.testing.assert_allclose(refine_boxes(squares, np.zeros((20, 4))), squares)


class TestVerifierNet:
    def test_shapes_and_input_check(self):
        logits, offsets = VerifierNet().eval()(torch.zeros(3, 3, 48, 48))
        assert logits.shape == (3,) and offsets.shape == (3, 4)
        with pytest.raises(ValueError, match="48"):
            VerifierNet()(torch.zeros(1, 3, 32, 32))

    def test_in_a_detector_file(self, tmp_path):
        torch.manual_seed(0)
        model = FaceDetectorNet(DetectorModelConfig(fpn_channels=8, context=False, verifier=True)).eval()
        assert FaceDetectorNet(DetectorModelConfig()).verifier is None
        path = save_detector(model, tmp_path / "det.safetensors")
        loaded, settings = load_detector(path)
        assert loaded.config.verifier and settings.proposal_threshold == 0.1
        crops = torch.rand(2, 3, 48, 48) * 255
        for a, b in zip(model.verifier(crops), loaded.verifier(crops), strict=True):
            torch.testing.assert_close(a, b)


def two_stage(logit: float, offsets=(0.0, 0.0, 0.0, 0.0)) -> FaceDetectorNet:
    """A network whose first stage proposes the boxes of its untrained heads and whose verifier returns ``logit``
    and ``offsets`` for every crop."""
    torch.manual_seed(0)
    model = FaceDetectorNet(DetectorModelConfig(fpn_channels=8, context=False, verifier=True)).eval()
    head = model.verifier.head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([logit, *offsets]))
    return model


BACKENDS = ["torch"] + (["onnxruntime"] if onnxruntime_available() else [])


@pytest.mark.parametrize("backend", BACKENDS)
class TestTwoStageDetector:
    def test_verifier_score_decides(self, backend):
        image = noise(96, 128)
        keep_all = FaceDetector(two_stage(4.0), proposal_threshold=0.0, score_threshold=0.5, backend=backend)
        found = keep_all.detect(image)
        assert len(found["boxes"]) > 0
        np.testing.assert_allclose(found["scores"], 1 / (1 + np.exp(-4.0)), rtol=1e-5)
        drop_all = FaceDetector(two_stage(-4.0), proposal_threshold=0.0, score_threshold=0.5, backend=backend)
        assert drop_all.detect(image)["boxes"].shape == (0, 4)

    def test_boxes_are_the_refined_squares(self, backend):
        image = noise(96, 128)
        first_stage = two_stage(4.0)
        first_stage.verifier = None
        boxes = FaceDetector(first_stage, score_threshold=0.0, backend="torch").detect(image)["boxes"]
        squares = square_regions(boxes)
        offsets = (0.1, 0.05, -0.1, -0.05)  # the square's inner part
        found = FaceDetector(two_stage(4.0, offsets), proposal_threshold=0.0, score_threshold=0.0,
                             backend=backend).detect(image)  # fmt: skip
        expected = refine_boxes(squares, np.tile(offsets, (len(squares), 1)).astype(np.float32))
        # every result is one of the refined proposals (NMS keeps a subset; equal scores keep the first-stage order)
        distance = np.abs(found["boxes"][:, None] - expected[None]).max(axis=2).min(axis=1)
        assert len(found["boxes"]) >= 1 and distance.max() < 1e-3
