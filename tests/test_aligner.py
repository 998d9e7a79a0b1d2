"""Tests of awing.aligner (FaceAligner, Face, settings in weights metadata) and the metadata helpers of
awing.models.weights.

Golden behaviour comes from landmark "networks" whose output is known:

- ``BlobNet`` turns image content into heatmaps (the 4 x 4 average of the crop's brightness), so a bright
  Gaussian blob drawn at a known image position must come back at that position through crop, warp, decode and
  the inverse matrix (the whole physical round trip);
- ``PeakNet`` ignores its input and emits the codec's Gaussians at fixed heatmap points, so the expected image
  landmarks follow exactly from the box, the crop matrix formula and the stride (no image involved).
"""

from __future__ import annotations

import json
import math
import warnings

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import awing
from awing import aligner as aligner_module
from awing.aligner import Face, FaceAligner, ImagePrediction
from awing.codecs import HeatmapCodec
from awing.data.io import DataError
from awing.detection import FaceDetector, FaceDetectorNet, save_detector
from awing.detection.config import DetectorModelConfig
from awing.detection.haar import HaarFaceDetector
from awing.geometry import BoxAdapter
from awing.inference import InferenceSettings, resolve_device
from awing.models import ModelConfig, StackedHourglass, save_weights
from awing.models.weights import RESERVED_METADATA, read_metadata

SIZE = 64  # crop side of the stub networks; heatmaps 16 x 16 (stride 4)


class BlobNet(nn.Module):
    """Heatmaps = 4 x 4 average of the crop's mean brightness (pixel centres map to heatmap centres exactly).

    ``halves=True``: channels 0 and 3 only see the left half of the heatmap, channels 1 and 4 the right half, so a
    left and a right blob behave like a left and a right eye under the flip test (scheme "5": pairs (0, 1), (3, 4)).
    """

    def __init__(self, halves: bool = False) -> None:
        super().__init__()
        self.config = ModelConfig(num_stacks=1, num_landmarks=5, features=8, depth=1, input_size=SIZE)
        self.halves = halves
        self.calls = 0
        self.faces = 0

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.calls += 1
        self.faces += len(x)
        g = F.avg_pool2d(x.mean(dim=1, keepdim=True), 4)
        if self.halves:
            left = torch.zeros_like(g)
            left[..., : g.shape[-1] // 2] = 1
            channels = [g * left, g * (1 - left), g * left, g * left, g * (1 - left)]
        else:
            channels = [g] * 5
        return [torch.cat([*channels, torch.zeros_like(g)], dim=1)]  # + boundary channel


class PeakNet(nn.Module):
    """Ignores the input: the codec's Gaussians at ``POINTS_HM`` (heatmap pixels), plus a boundary channel."""

    POINTS_HM = np.array([[3.25, 4.5], [12.0, 4.75], [7.6, 8.1], [4.4, 11.9], [11.3, 12.2]], dtype=np.float32)

    HEATMAPS = HeatmapCodec(SIZE, SIZE // 4).encode(POINTS_HM)
    DECODED_HM = HeatmapCodec(SIZE, SIZE // 4).decode(HEATMAPS)[0]  # what the default decoder reads off them

    def __init__(self) -> None:
        super().__init__()
        self.config = ModelConfig(num_stacks=2, num_landmarks=5, features=8, depth=1, input_size=SIZE)
        self.register_buffer("heatmaps", torch.from_numpy(np.concatenate([self.HEATMAPS, self.HEATMAPS[:1] * 0])))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.heatmaps.expand(len(x), -1, -1, -1)
        return [out * 0.5, out]


class FixedDetector(FaceDetector):
    """A FaceDetector whose answer is given: per call, the boxes/scores of ``answers`` (one per image)."""

    def __init__(self, answers: list[np.ndarray]) -> None:
        super().__init__(FaceDetectorNet(DetectorModelConfig(width_mult=0.25)))
        self.answers = answers
        self.seen: list[tuple[int, ...]] = []
        self.calls = 0

    def detect_batch(self, images):
        self.calls += 1
        self.seen.extend(image.shape for image in images)
        out = []
        for _ in images:
            boxes = np.asarray(self.answers.pop(0), np.float32).reshape(-1, 4)
            scores = np.linspace(0.9, 0.6, len(boxes)).astype(np.float32)
            out.append({"boxes": boxes, "scores": scores, "landmarks": np.zeros((len(boxes), 5, 2), np.float32)})
        return out


def blob_image(width: int, height: int, centres, sigma: float) -> np.ndarray:
    """Black RGB image with white Gaussian blobs (peak 255) at sub-pixel ``centres`` (image pixels)."""
    value = np.zeros((height, width))
    reach = int(6 * sigma) + 1  # exp(-18) * 255 rounds to 0 beyond 6 sigma
    for cx, cy in centres:
        x0, y0 = max(0, int(cx) - reach), max(0, int(cy) - reach)
        y, x = np.mgrid[y0 : min(height, int(cy) + reach), x0 : min(width, int(cx) + reach)].astype(np.float64)
        value[y0 : y0 + y.shape[0], x0 : x0 + x.shape[1]] += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    grey = np.clip(np.round(255 * value), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def expected_peaknet(box, crop_scale: float = 1.25, adapter: BoxAdapter | None = None) -> np.ndarray:
    """PeakNet's landmarks in image pixels, from the formulas alone (geometry docstring, codec stride 4)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if adapter is not None:
        cx, cy, w, h = cx + adapter.shift_x * w, cy + adapter.shift_y * h, adapter.scale * w, adapter.scale * h
    side = crop_scale * max(w, h)
    crop = (PeakNet.DECODED_HM.astype(np.float64) + 0.5) * 4 - 0.5  # x_crop = (x_hm + 0.5) s - 0.5
    # x_crop = (x_img - (cx - side / 2)) S / side - 0.5  =>  x_img = (x_crop + 0.5) side / S + cx - side / 2
    return (crop + 0.5) * side / SIZE + np.array([cx, cy]) - side / 2


class TestRoundTrip:
    def test_peaknet_exact_through_the_crop_matrix(self):
        aligner = FaceAligner(PeakNet(), device="cpu")
        box = (37.0, 20.5, 141.0, 101.0)
        (face,) = aligner.predict(np.zeros((120, 160, 3), np.uint8), boxes=[box])
        np.testing.assert_allclose(face.landmarks, expected_peaknet(box), atol=1e-4)
        assert face.landmarks.dtype == np.float32 and face.scores.dtype == np.float32
        assert face.box.tolist() == list(box) and face.box_score is None and face.scheme == "5"
        np.testing.assert_allclose(face.scores, PeakNet.HEATMAPS.reshape(5, -1).max(axis=1), rtol=1e-6)  # maxima

    def test_peaknet_crop_scale_and_codec_from_settings(self):
        settings = InferenceSettings(crop_scale=1.6, codec="subpixel", sigma=1.5)
        aligner = FaceAligner(PeakNet(), device="cpu", settings=settings)
        box = (10.0, 30.0, 90.0, 70.0)
        (face,) = aligner.predict(np.zeros((100, 100, 3), np.uint8), boxes=[box])
        np.testing.assert_allclose(face.landmarks, expected_peaknet(box, crop_scale=1.6), atol=1e-4)

    @pytest.mark.parametrize("box", [(80.0, 40.0, 180.0, 140.0), (95.5, 62.25, 160.0, 118.0)])
    def test_blob_comes_back_where_it_was_drawn(self, box):
        centre = (130.3, 87.6)
        image = blob_image(300, 200, [centre], sigma=10.0)
        (face,) = FaceAligner(BlobNet(), device="cpu").predict(image, boxes=[box])
        np.testing.assert_allclose(face.landmarks, np.tile(centre, (5, 1)), atol=0.02)

    def test_very_large_image_crop_is_warped_from_the_original(self):
        """A 4000 x 3000 image: the detector gets the full image, its boxes are in original pixels, the crop
        comes from the original (not from the detector's downscaled copy)."""
        centre = (2523.4, 1411.7)
        image = blob_image(4000, 3000, [centre], sigma=40.0)
        box = np.array([2300.0, 1200.0, 2700.0, 1600.0])
        detector = FixedDetector([box])
        (face,) = FaceAligner(BlobNet(), detector, device="cpu").predict(image)
        assert detector.seen == [(3000, 4000, 3)]
        np.testing.assert_allclose(face.landmarks, np.tile(centre, (5, 1)), atol=0.06)  # 1 crop px = 7.8 img px
        assert face.box.tolist() == box.tolist() and face.box_score == pytest.approx(0.9)

    def test_no_detector_means_the_whole_image(self):
        image = blob_image(90, 60, [(40.2, 30.7)], sigma=6.0)
        (face,) = FaceAligner(BlobNet(), None, device="cpu").predict(image)
        assert face.box.tolist() == [-0.5, -0.5, 89.5, 59.5]
        np.testing.assert_allclose(face.landmarks, np.tile((40.2, 30.7), (5, 1)), atol=0.02)

    def test_exif_rotation_changes_the_output(self, tmp_path):
        from test_imread import _exif, _jpeg, _with_exif

        stored_centre = (30.4, 18.2)
        image = blob_image(80, 50, [stored_centre], sigma=5.0)
        (tmp_path / "plain.jpg").write_bytes(_jpeg(image))
        (tmp_path / "rot6.jpg").write_bytes(_with_exif(_jpeg(image), _exif(6)))
        aligner = FaceAligner(BlobNet(), None, device="cpu")
        (plain,) = aligner.predict(tmp_path / "plain.jpg")
        (rotated,) = aligner.predict(str(tmp_path / "rot6.jpg"))
        np.testing.assert_allclose(plain.landmarks[0], stored_centre, atol=0.02)
        # orientation 6 shows the picture turned 90 degrees clockwise: (x, y) -> (H - 1 - y, x)
        np.testing.assert_allclose(rotated.landmarks[0], (50 - 1 - stored_centre[1], stored_centre[0]), atol=0.02)
        assert rotated.box.tolist() == [-0.5, -0.5, 49.5, 79.5]


class TestBoxAdapter:
    def test_golden(self):
        adapter = BoxAdapter(shift_x=-0.1, shift_y=0.2, scale=1.5)
        out = adapter(np.array([[10.0, 20.0, 50.0, 100.0]]))
        # centre (30, 60) + (-4, 16) = (26, 76); size (60, 120)
        np.testing.assert_allclose(out, [[-4.0, 16.0, 56.0, 136.0]])
        np.testing.assert_array_equal(BoxAdapter()(out), out)

    def test_applied_to_detector_boxes_only(self):
        adapter = BoxAdapter(shift_x=0.05, shift_y=0.1, scale=0.9)
        box = np.array([20.0, 15.0, 100.0, 95.0])
        image = np.zeros((120, 140, 3), np.uint8)
        settings = InferenceSettings(box_adapter=adapter)
        detected = FaceAligner(PeakNet(), FixedDetector([box]), settings=settings, device="cpu").predict(image)
        np.testing.assert_allclose(detected[0].landmarks, expected_peaknet(box, adapter=adapter), atol=1e-4)
        assert detected[0].box.tolist() == box.tolist()  # the reported box is the detector's
        given = FaceAligner(PeakNet(), None, settings=settings, device="cpu").predict(image, boxes=[box])
        np.testing.assert_allclose(given[0].landmarks, expected_peaknet(box), atol=1e-4)

    @pytest.mark.parametrize(
        "kwargs, match", [({"scale": 0}, "scale must be > 0"), ({"shift_x": math.nan}, "shift_x must be a finite")]
    )
    def test_errors(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            BoxAdapter(**kwargs)


class TestFlipTest:
    def test_mirror_is_exact(self):
        """A flip-symmetric network: the flip test must reproduce the plain prediction (exact mirror mapping)."""
        image = blob_image(120, 100, [(47.3, 52.8)], sigma=8.0)
        box = [(20.0, 25.0, 95.0, 90.0)]
        plain = FaceAligner(BlobNet(), None, device="cpu").predict(image, box)[0]
        flipped = FaceAligner(BlobNet(), None, device="cpu", flip_test=True).predict(image, box)[0]
        np.testing.assert_allclose(flipped.landmarks, plain.landmarks, atol=1e-4)
        np.testing.assert_allclose(flipped.scores, plain.scores, atol=1e-6)

    def test_left_right_channels_are_swapped(self):
        """With left/right-eye-like channels, only the scheme's flip permutation keeps each point on its blob."""
        left, right = (38.2, 50.4), (81.7, 49.1)
        image = blob_image(120, 100, [left, right], sigma=6.0)
        box = [(15.0, 10.0, 105.0, 90.0)]
        net = BlobNet(halves=True)
        plain = FaceAligner(net, None, device="cpu").predict(image, box)[0]
        flipped = FaceAligner(net, None, device="cpu", flip_test=True).predict(image, box)[0]
        for k, target in ((0, left), (1, right), (3, left), (4, right)):
            np.testing.assert_allclose(plain.landmarks[k], target, atol=0.02)
            np.testing.assert_allclose(flipped.landmarks[k], plain.landmarks[k], atol=1e-4)


class TestBatching:
    def test_batch_equals_single_and_runs_the_network_once(self):
        aligner = FaceAligner(PeakNet(), FixedDetector([]), device="cpu")
        images = [np.zeros((80, 100, 3), np.uint8), np.zeros((200, 150, 3), np.uint8), np.zeros((50, 50), np.uint8)]
        boxes = [[(10, 10, 60, 70), (50, 5, 90, 40)], np.zeros((0, 4)), [(0, 0, 40, 40, 0.3)]]
        calls = []
        aligner.model.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))  # the aligner's copy
        batch = aligner.predict_batch(images, boxes)
        assert calls == [3]  # all faces of the batch in one network call
        assert [len(faces) for faces in batch] == [2, 0, 1]
        for image, given, faces in zip(images, boxes, batch, strict=True):
            single = aligner.predict(image, given)
            for a, b in zip(single, faces, strict=True):
                # A batched convolution need not be bit-identical to batch 1 (the CPU kernel may block and sum in
                # another order; 1.4e-7 relative seen on a 2-core machine): 1e-4 px is far below the codec's
                # 0.05 heatmap-px precision and far above float32 rounding of ~100 px coordinates.
                np.testing.assert_allclose(a.landmarks, b.landmarks, rtol=0, atol=1e-4)
                np.testing.assert_array_equal(a.box, b.box)  # boxes are copied, not computed

    def test_detection_runs_once_per_batch(self):
        box = np.array([[5.0, 5.0, 45.0, 45.0]])
        detector = FixedDetector([box, np.zeros((0, 4)), box])
        aligner = FaceAligner(PeakNet(), detector, device="cpu")
        images = [np.zeros((50, 60, 3), np.uint8)] * 3
        batch = aligner.predict_batch(images)
        assert [len(f) for f in batch] == [1, 0, 1] and detector.calls == 1 and len(detector.seen) == 3

    def test_no_face_is_an_empty_list(self):
        aligner = FaceAligner(PeakNet(), FixedDetector([np.zeros((0, 4))]), device="cpu")
        assert aligner.predict(np.zeros((40, 40, 3), np.uint8)) == []

    def test_image_conversions(self):
        aligner = FaceAligner(BlobNet(), None, device="cpu")
        rgb = blob_image(60, 40, [(25.0, 20.0)], sigma=4.0)
        reference = aligner.predict(rgb)[0].landmarks
        for variant in (
            rgb[:, :, 0],
            np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)]),
            rgb.astype(np.uint16) * 257,
        ):
            np.testing.assert_array_equal(aligner.predict(variant)[0].landmarks, reference)

    def test_errors(self):
        aligner = FaceAligner(PeakNet(), None, device="cpu")
        image = np.zeros((40, 40, 3), np.uint8)
        with pytest.raises(TypeError, match="expects a list of images"):
            aligner.predict_batch(image)
        with pytest.raises(ValueError, match="one entry per image"):
            aligner.predict_batch([image], [None, None])
        with pytest.raises(ValueError, match=r"boxes\[0\]\[1\] .* is not a face box: it needs x1 > x0"):
            aligner.predict(image, [(0, 0, 10, 10), (5, 5, 4, 9)])
        with pytest.raises(ValueError, match=r"shape \(N, 4\) or \(N, 5\)"):
            aligner.predict(image, [(0, 0, 10)])
        with pytest.raises(ValueError, match=r"got rows of \[3, 4\] numbers"):
            aligner.predict(image, [(0, 0, 10, 10), (0, 0, 10)])
        with pytest.raises(ValueError, match="must have shape"):
            aligner.predict(image, [("a", "b")])
        ragged = aligner.predict(image, [(0, 0, 10, 10), (2, 2, 30, 30, 0.5)])  # rows of 4 and 5 numbers
        assert [f.box.tolist() for f in ragged] == [[0, 0, 10, 10], [2, 2, 30, 30]]
        with pytest.raises(TypeError, match="numpy array"):
            aligner.predict(image.tolist())
        with pytest.raises(DataError, match="image not found"):
            aligner.predict("missing.jpg")


class TestFiles:
    def test_bad_files_do_not_stop_a_batch(self, tmp_path):
        paths = []
        for i, name in enumerate(["a.png", "broken.jpg", "b.png", "empty.png", "c.png"]):
            path = tmp_path / name
            if name == "broken.jpg":
                path.write_bytes(b"not an image")
            elif name == "empty.png":
                path.write_bytes(b"")
            else:
                cv2.imwrite(str(path), blob_image(40 + i, 30, [(20.0, 15.0)], 3.0))
            paths.append(path)
        aligner = FaceAligner(BlobNet(), None, device="cpu", batch_size=2)
        results = list(aligner.predict_files(paths, keep_images=True))
        assert [r.path for r in results] == paths
        assert [r.ok for r in results] == [True, False, True, False, True]
        assert "broken.jpg" in results[1].error and "image file is empty" in results[3].error
        assert results[2].size == (42, 30) and results[2].image.shape == (30, 42, 3)
        np.testing.assert_allclose(results[4].faces[0].landmarks[0], (20.0, 15.0), atol=0.05)
        assert results[1].to_dict() == {"image": str(paths[1]), "error": results[1].error}

    def test_bad_boxes_name_the_file(self, tmp_path):
        cv2.imwrite(str(tmp_path / "a.png"), np.zeros((20, 20, 3), np.uint8))
        aligner = FaceAligner(PeakNet(), None, device="cpu")
        (result,) = aligner.predict_files([tmp_path / "a.png"], boxes=[[(5, 5, 1, 1)]])
        assert not result.ok and "a.png" in result.error and "x1 > x0" in result.error

    def test_iter_directory(self, tmp_path):
        (tmp_path / "sub").mkdir()
        for name in ("x.png", "sub/y.png"):
            cv2.imwrite(str(tmp_path / name), np.zeros((16, 16, 3), np.uint8))
        aligner = FaceAligner(PeakNet(), None, device="cpu")
        assert [r.path.name for r in aligner.iter_directory(tmp_path)] == ["x.png"]
        assert [r.path.name for r in aligner.iter_directory(tmp_path, recursive=True)] == ["y.png", "x.png"]
        empty = tmp_path / "empty"
        empty.mkdir()
        assert list(aligner.iter_directory(empty)) == []
        with pytest.raises(NotADirectoryError):
            list(aligner.iter_directory(tmp_path / "missing"))


class TestFaceAlignmentNames:
    def test_get_landmarks_from_image(self):
        aligner = FaceAligner(PeakNet(), FixedDetector([np.array([[10.0, 10.0, 60.0, 50.0]])]), device="cpu")
        image = np.zeros((64, 80, 3), np.uint8)
        (points,) = aligner.get_landmarks_from_image(image)
        assert isinstance(points, np.ndarray) and points.shape == (5, 2)
        np.testing.assert_allclose(points, expected_peaknet((10.0, 10.0, 60.0, 50.0)), atol=1e-4)
        landmarks, scores, boxes = aligner.get_landmarks_from_image(
            image, detected_faces=[[5, 5, 40, 40, 0.7], [30, 20, 70, 60, 0.2]], return_bboxes=True
        )
        assert len(landmarks) == len(scores) == 2 and scores[0].shape == (5,)
        np.testing.assert_allclose(boxes[1], [30, 20, 70, 60, 0.2], rtol=1e-6)

    def test_no_face_is_none_with_a_warning(self):
        aligner = FaceAligner(PeakNet(), FixedDetector([np.zeros((0, 4))] * 2), device="cpu")
        image = np.zeros((30, 30, 3), np.uint8)
        with pytest.warns(UserWarning, match="No faces were detected"):
            assert aligner.get_landmarks_from_image(image) is None
        with pytest.warns(UserWarning, match="No faces were detected"):
            assert aligner.get_landmarks_from_image(image, return_landmark_score=True) == (None, None, None)

    def test_get_landmarks_from_directory(self, tmp_path):
        (tmp_path / "sub").mkdir()
        for name in ("a.jpg", "sub/b.png", "c.bmp"):
            cv2.imwrite(str(tmp_path / name), np.zeros((24, 24, 3), np.uint8))
        (tmp_path / "bad.png").write_bytes(b"junk")
        detector = FixedDetector([np.array([[2.0, 2.0, 20.0, 20.0]]), np.zeros((0, 4))])
        aligner = FaceAligner(PeakNet(), detector, device="cpu")
        with pytest.warns(UserWarning, match="bad.png"):
            out = aligner.get_landmarks_from_directory(tmp_path, show_progress_bar=False)
        assert sorted(out) == sorted(str(tmp_path / n) for n in ("a.jpg", "bad.png", "sub/b.png"))  # no .bmp
        assert out[str(tmp_path / "a.jpg")][0].shape == (5, 2)
        assert out[str(tmp_path / "bad.png")] is None and out[str(tmp_path / "sub/b.png")] is None


def _tiny_hourglass(num_landmarks: int = 5) -> StackedHourglass:
    torch.manual_seed(0)
    return StackedHourglass(num_stacks=1, num_landmarks=num_landmarks, features=16, depth=1, input_size=32)


class TestFromPretrained:
    def test_missing_bundled_files_are_named(self, tmp_path, monkeypatch):
        monkeypatch.setattr(aligner_module, "BUNDLED_LANDMARKS", tmp_path / "landmarks_68.safetensors")
        with pytest.raises(FileNotFoundError, match="bundled accurate landmark model not found: .*landmarks_68.saf"):
            FaceAligner.from_pretrained()
        weights = save_weights(_tiny_hourglass(), tmp_path / "lm.safetensors")
        monkeypatch.setattr(aligner_module, "BUNDLED_DETECTOR", tmp_path / "detector.safetensors")
        with pytest.raises(FileNotFoundError, match="bundled detector not found: .*detector.safetensors"):
            FaceAligner.from_pretrained(weights, detector=aligner_module.BUNDLED)

    def test_model_selects_a_bundled_file(self, tmp_path, monkeypatch):
        fast, accurate = _tiny_hourglass(5), _tiny_hourglass(68)
        monkeypatch.setattr(aligner_module, "BUNDLED_FAST_LANDMARKS", save_weights(fast, tmp_path / "f.safetensors"))
        monkeypatch.setattr(aligner_module, "BUNDLED_LANDMARKS", save_weights(accurate, tmp_path / "a.safetensors"))
        assert FaceAligner.from_pretrained(device="cpu", model="fast", detector=None).config == fast.config
        for model in (None, "accurate"):
            assert FaceAligner.from_pretrained(device="cpu", model=model, detector=None).config == accurate.config
        with pytest.raises(ValueError, match="model must be one of"):
            FaceAligner.from_pretrained(model="tiny")
        with pytest.raises(ValueError, match="not both"):
            FaceAligner.from_pretrained(tmp_path / "a.safetensors", model="fast")

    def test_loads_weights_settings_and_detector(self, tmp_path, monkeypatch):
        settings = InferenceSettings(crop_scale=1.4, codec="awing_official", box_adapter=BoxAdapter(0.0, 0.1, 1.2))
        model = _tiny_hourglass()
        weights = save_weights(model, tmp_path / "landmarks_68.safetensors", extra_metadata=settings.to_metadata())
        det_config = DetectorModelConfig(width_mult=0.25)
        detector_file = save_detector(FaceDetectorNet(det_config), tmp_path / "detector.safetensors")
        monkeypatch.setattr(aligner_module, "BUNDLED_LANDMARKS", weights)
        monkeypatch.setattr(aligner_module, "BUNDLED_DETECTOR", detector_file)
        bundled = aligner_module.BUNDLED
        aligner = FaceAligner.from_pretrained(device="cpu", detector=bundled, batch_size=3, flip_test=True)
        assert isinstance(FaceAligner.from_pretrained(device="cpu").detector, FaceDetector)  # the default: bundled
        haar = FaceAligner.from_pretrained(device="cpu", detector=aligner_module.OPENCV).detector
        assert isinstance(haar, HaarFaceDetector)
        assert aligner.settings == settings and aligner.codec.mode == "awing_official"
        assert aligner.scheme.name == "5" and aligner.batch_size == 3 and aligner.flip_test
        assert isinstance(aligner.detector, FaceDetector) and aligner.detector.config == det_config
        for key, value in model.state_dict().items():
            torch.testing.assert_close(aligner.model.state_dict()[key], value)
        assert FaceAligner.from_pretrained(weights, "cpu", detector=None).detector is None
        assert FaceAligner.from_pretrained(weights, "cpu", detector=detector_file).detector is not None
        image = np.zeros((48, 48, 3), np.uint8)
        assert len(FaceAligner.from_pretrained(weights, "cpu", detector=None).predict(image)) == 1

    def test_defaults_without_metadata(self, tmp_path):
        weights = save_weights(_tiny_hourglass(), tmp_path / "plain.safetensors")
        aligner = FaceAligner.from_pretrained(weights, "cpu", detector=None)
        assert aligner.settings == InferenceSettings()

    def test_not_weights(self, tmp_path):
        (tmp_path / "junk.safetensors").write_bytes(b"junk")
        with pytest.raises(ValueError, match="not a readable .safetensors"):
            FaceAligner.from_pretrained(tmp_path / "junk.safetensors", "cpu", detector=None)
        with pytest.raises(FileNotFoundError, match="nope.safetensors"):
            FaceAligner.from_pretrained(tmp_path / "nope.safetensors", "cpu", detector=None)


class TestInferenceSettings:
    def test_metadata_round_trip(self):
        settings = InferenceSettings(crop_scale=1.3, sigma=2.0, box_adapter=BoxAdapter(0.01, -0.05, 1.1))
        metadata = settings.to_metadata()
        assert json.loads(metadata["data"]) == {"crop_scale": 1.3, "codec": "subpixel", "sigma": 2.0}
        assert json.loads(metadata["box_adapter"]) == {"shift_x": 0.01, "shift_y": -0.05, "scale": 1.1}
        assert InferenceSettings.from_metadata(metadata) == settings
        assert InferenceSettings.from_metadata({}) == InferenceSettings()
        partial = InferenceSettings.from_metadata({"data": '{"crop_scale": 1.5}'})
        assert partial == InferenceSettings(crop_scale=1.5)

    def test_sizes_are_checked_against_the_model(self):
        config = ModelConfig(num_stacks=1, num_landmarks=5, features=8, depth=1, input_size=64)
        ok = {"data": '{"input_size": 64, "heatmap_size": 16}'}
        assert InferenceSettings.from_metadata(ok, config) == InferenceSettings()
        with pytest.raises(ValueError, match="heatmap_size=32 but the model has 16"):
            InferenceSettings.from_metadata({"data": '{"heatmap_size": 32}'}, config)

    @pytest.mark.parametrize(
        "metadata, match",
        [
            ({"data": "{"}, "'data' is not valid JSON"),
            ({"data": "[1]"}, "must be a JSON object"),
            ({"data": '{"crop": 1}'}, r"unknown InferenceSettings keys \['crop'\]"),
            ({"data": '{"codec": "argmax"}'}, "codec must be one of"),
            ({"data": '{"crop_scale": -1}'}, "crop_scale must be > 0"),
            ({"box_adapter": '{"scale": 1, "dx": 0}'}, r"unknown BoxAdapter keys \['dx'\]"),
        ],
    )
    def test_errors(self, metadata, match):
        with pytest.raises(ValueError, match=match):
            InferenceSettings.from_metadata(metadata)


class TestWeightsMetadata:
    def test_extra_metadata_is_stored_and_read_back(self, tmp_path):
        path = save_weights(_tiny_hourglass(), tmp_path / "w.safetensors", extra_metadata={"note": "é ok", "x": "1"})
        metadata = read_metadata(path)
        assert metadata["note"] == "é ok" and metadata["x"] == "1"
        assert metadata["format"] == "awing.weights.v1" and metadata["scheme"] == "5"
        plain = read_metadata(save_weights(_tiny_hourglass(), tmp_path / "p.safetensors"))
        assert set(plain) == {"format", "model_config", "input_size", "awing_version", "scheme"}

    def test_pth_has_none(self, tmp_path):
        torch.save(_tiny_hourglass().state_dict(), tmp_path / "w.pth")
        assert read_metadata(tmp_path / "w.pth") == {}

    @pytest.mark.parametrize(
        "extra, error, match",
        [
            ({"format": "x"}, ValueError, r"reserved keys \['format'\]"),
            ({"scheme": "68"}, ValueError, "reserved"),
            ({"n": 1}, TypeError, "must map str to str"),
            (["a"], TypeError, "mapping of str to str"),
        ],
    )
    def test_errors(self, tmp_path, extra, error, match):
        with pytest.raises(error, match=match):
            save_weights(_tiny_hourglass(), tmp_path / "w.safetensors", extra_metadata=extra)
        assert "format" in RESERVED_METADATA

    def test_read_errors(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="weights file not found"):
            read_metadata(tmp_path / "none.safetensors")
        (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 3)
        with pytest.raises(ValueError, match="not a readable"):
            read_metadata(tmp_path / "bad.safetensors")


class TestFaceAndMisc:
    def test_face_dict_round_trip_is_exact(self):
        rng = np.random.default_rng(0)
        face = Face(
            box=rng.uniform(0, 500, 4).astype(np.float32),
            box_score=0.87654321,
            landmarks=rng.uniform(0, 500, (68, 2)).astype(np.float32),
            scores=rng.uniform(0, 1, 68).astype(np.float32),
            scheme="68",
        )
        back = Face.from_dict(json.loads(json.dumps(face.to_dict())))
        for name in ("box", "landmarks", "scores"):
            np.testing.assert_array_equal(getattr(back, name), getattr(face, name))
        assert back.box_score == face.box_score and back.scheme == "68"
        assert Face.from_dict({**face.to_dict(), "box_score": None}).box_score is None

    def test_image_prediction_dict(self, tmp_path):
        result = ImagePrediction(tmp_path / "é.png", [], size=(7, 5))
        assert result.to_dict() == {"image": str(tmp_path / "é.png"), "width": 7, "height": 5, "faces": []}

    def test_lazy_exports(self):
        assert awing.FaceAligner is FaceAligner and awing.Face is Face
        with pytest.raises(AttributeError, match="no attribute 'Nope'"):
            awing.Nope  # noqa: B018

    def test_device(self):
        assert resolve_device("cpu") == torch.device("cpu")
        assert resolve_device("auto").type in ("cpu", "cuda")
        with pytest.raises(ValueError, match="device must be"):
            resolve_device("gpu0")
        if not torch.cuda.is_available():
            with pytest.raises(ValueError, match="CUDA is not available"):
                resolve_device("cuda")

    def test_constructor_errors(self):
        with pytest.raises(TypeError, match="ModelConfig in .config"):
            FaceAligner(nn.Identity())
        with pytest.raises(ValueError, match="scheme 68 has 68 points but the model predicts 5"):
            FaceAligner(PeakNet(), scheme="68", device="cpu")
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            FaceAligner(PeakNet(), batch_size=0, device="cpu")
        with pytest.raises(TypeError, match="detector must be a FaceDetector"):
            FaceAligner(PeakNet(), detector="bundled", device="cpu")
        with pytest.raises(ValueError, match="no landmark scheme has 7 points"):
            FaceAligner(_tiny_hourglass(7), device="cpu")

    def test_the_callers_model_is_untouched(self):
        model = _tiny_hourglass()
        model.train()
        FaceAligner(model, device="cpu")
        assert model.training
        assert next(model.parameters()).is_contiguous()

    def test_no_warnings_on_success(self):
        aligner = FaceAligner(PeakNet(), None, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            aligner.get_landmarks_from_image(np.zeros((20, 20, 3), np.uint8))
