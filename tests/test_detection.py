from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from awing.config import ConfigError, load_config, save_config
from awing.detection import (
    DetectionLoss,
    DetectorConfig,
    DetectorModelConfig,
    FaceDetector,
    FaceDetectorNet,
    batched_nms,
    box_iou,
    build_alwa,
    decode_boxes,
    decode_landmarks,
    encode_boxes,
    encode_landmarks,
    fuse_batchnorm,
    generate_anchors,
    load_detector,
    match_anchors,
    nms,
    paired_box_iou,
    save_detector,
)
from awing.detection.config import DetectionLossConfig, NoisyAnchorConfig
from awing.losses.alwa import ALWA
from awing.losses.focal import sigmoid_focal_loss

SIZES = [[16.0, 32.0], [64.0, 128.0], [256.0, 512.0]]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: a second thread only adds synchronisation, which is slow on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


STRIDES = (8, 16, 32)


def anchors_for(height: int, width: int) -> torch.Tensor:
    return generate_anchors(FaceDetectorNet.feature_sizes(height, width), STRIDES, SIZES)


class TestAnchors:
    def test_count_order_and_values(self):
        anchors = anchors_for(480, 640)
        assert anchors.shape == ((80 * 60 + 40 * 30 + 20 * 15) * 2, 4) and anchors.dtype == torch.float32
        # first cell of stride 8: centre (3.5, 3.5), sides 16 then 32
        torch.testing.assert_close(anchors[:2], torch.tensor([[-4.5, -4.5, 11.5, 11.5], [-12.5, -12.5, 19.5, 19.5]]))
        # stride 16, row 10, column 20, side 64: centre ((20 + 0.5) * 16 - 0.5, (10 + 0.5) * 16 - 0.5)
        index = 4800 * 2 + (10 * 40 + 20) * 2
        torch.testing.assert_close(anchors[index], torch.tensor([295.5, 135.5, 359.5, 199.5]))

    def test_mirror_symmetric(self):
        """Mirroring x -> W - 1 - x maps the anchor set onto itself (flip augmentation stays consistent)."""
        anchors = anchors_for(64, 96)
        mirrored = torch.stack([95 - anchors[:, 2], anchors[:, 1], 95 - anchors[:, 0], anchors[:, 3]], dim=1)
        key = lambda a: sorted(map(tuple, a.round(decimals=3).tolist()))  # noqa: E731
        assert key(mirrored) == key(anchors)

    def test_feature_sizes_match_network(self):
        net = FaceDetectorNet(DetectorModelConfig(fpn_channels=16)).eval()
        with torch.no_grad():
            logits, _, _ = net(torch.zeros(1, 3, 70, 100))
        assert logits.shape[1] == anchors_for(70, 100).shape[0]
        assert FaceDetectorNet.feature_sizes(70, 100) == [(9, 13), (5, 7), (3, 4)]

    def test_errors(self):
        with pytest.raises(ValueError, match="one entry per level"):
            generate_anchors([(2, 2)], (8, 16), SIZES)


class TestBoxCoding:
    def test_iou_hand_values(self):
        a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 0, 5]])
        b = torch.tensor([[5.0, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30]])
        torch.testing.assert_close(box_iou(a, b), torch.tensor([[25 / 175, 1.0, 0.0], [0.0, 0.0, 0.0]]))
        torch.testing.assert_close(paired_box_iou(a, b[:2]), torch.tensor([25 / 175, 0.0]))
        with pytest.raises(ValueError, match=r"\(N, 4\)"):
            box_iou(a[0], b)

    def test_encode_hand_values(self):
        anchor = torch.tensor([[0.0, 0.0, 20.0, 20.0]])  # centre (10, 10), side 20
        box = torch.tensor([[-8.0, -10.0, 32.0, 30.0]])  # centre (12, 10), side 40
        expected = torch.tensor([[2 / (0.1 * 20), 0.0, math.log(2) / 0.2, math.log(2) / 0.2]])
        torch.testing.assert_close(encode_boxes(box, anchor), expected)
        points = torch.tensor([[[10.0, 10.0], [14.0, 6.0], [0, 0], [20, 20], [10, 12]]])
        encoded = encode_landmarks(points, anchor)
        torch.testing.assert_close(encoded[0, :4], torch.tensor([0.0, 0.0, 2.0, -2.0]))

    def test_round_trip(self):
        generator = torch.Generator().manual_seed(0)
        anchors = anchors_for(64, 64)
        centre = torch.rand(len(anchors), 2, generator=generator) * 64
        size = 4 + torch.rand(len(anchors), 2, generator=generator) * 100
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
        torch.testing.assert_close(decode_boxes(encode_boxes(boxes, anchors), anchors), boxes, atol=1e-4, rtol=1e-5)
        points = torch.rand(len(anchors), 5, 2, generator=generator) * 64
        decoded = decode_landmarks(encode_landmarks(points, anchors), anchors)
        torch.testing.assert_close(decoded, points, atol=1e-4, rtol=1e-5)


class TestMatchAnchors:
    anchors = torch.tensor(
        [
            [0.0, 0, 16, 16],  # IoU 1 with face 0
            [4.0, 0, 20, 16],  # IoU 0.6 with face 0
            [8.0, 8, 24, 24],  # IoU 1/7 with face 0
            [100.0, 100, 116, 116],  # IoU 0.25 with face 1 (its best)
            [200.0, 200, 216, 216],  # nothing
            [300.0, 300, 316, 316],  # IoU 0.64 with the ignore region
        ]
    )
    boxes = torch.tensor([[0.0, 0, 16, 16], [100.0, 100, 132, 132], [302.0, 302, 318, 318]])
    ignore = torch.tensor([False, False, True])

    def test_threshold_rule_low_quality_and_ignore(self):
        result = match_anchors(self.anchors, self.boxes, self.ignore)
        assert result.labels.tolist() == [1, 1, 0, 1, 0, -1]
        assert result.matched.tolist() == [0, 0, -1, 1, -1, -1]
        torch.testing.assert_close(result.overlap, torch.tensor([1.0, 0.6, 0.0, 0.25, 0.0, 0.0]))
        # without the low-quality rule face 1 has no positive
        strict = match_anchors(self.anchors, self.boxes, self.ignore, low_quality_iou=0.3)
        assert strict.labels.tolist() == [1, 1, 0, 0, 0, -1]

    def test_ignore_band(self):
        result = match_anchors(self.anchors, self.boxes, self.ignore, pos_iou=0.7, neg_iou=0.5)
        assert result.labels.tolist() == [1, -1, 0, 1, 0, -1]

    def test_noisy_top_n(self):
        result = match_anchors(self.anchors, self.boxes, self.ignore, top_n=3)
        assert result.labels.tolist() == [1, 1, 1, 1, 0, -1]
        assert result.matched.tolist() == [0, 0, 0, 1, -1, -1]

    def test_no_boxes(self):
        result = match_anchors(self.anchors, torch.zeros(0, 4))
        assert result.labels.tolist() == [0] * 6 and result.matched.tolist() == [-1] * 6

    def test_errors(self):
        with pytest.raises(ValueError, match="ignore"):
            match_anchors(self.anchors, self.boxes, torch.zeros(2, dtype=torch.bool))
        with pytest.raises(ValueError, match=r"\(G, 4\)"):
            match_anchors(self.anchors, torch.zeros(4))


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float) -> list[int]:
    """The textbook loop: visit boxes by decreasing score, keep one unless a kept box overlaps it too much."""
    iou = box_iou(boxes, boxes).tolist()
    order = sorted(range(len(scores)), key=lambda i: (-scores[i].item(), i))
    keep: list[int] = []
    for i in order:
        if all(iou[i][j] <= threshold for j in keep):
            keep.append(i)
    return keep


class TestNMS:
    @pytest.mark.parametrize("seed", range(4))
    def test_equals_greedy_reference(self, seed):
        generator = torch.Generator().manual_seed(seed)
        centre = torch.rand(120, 2, generator=generator) * 100
        size = 5 + torch.rand(120, 2, generator=generator) * 30
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
        scores = torch.rand(120, generator=generator)
        for threshold in (0.3, 0.5):
            assert nms(boxes, scores, threshold).tolist() == greedy_nms(boxes, scores, threshold)

    def test_chain(self):
        """A suppressed box does not suppress: 0 kills 1, so 2 (which only overlaps 1) survives."""
        boxes = torch.tensor([[0.0, 0, 10, 10], [4, 0, 14, 10], [8, 0, 18, 10]])
        assert nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.3).tolist() == [0, 2]

    def test_batched_groups_do_not_interact(self):
        boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10]])
        scores = torch.tensor([0.9, 0.8, 0.7])
        assert batched_nms(boxes, scores, torch.tensor([0, 0, 1]), 0.5).tolist() == [0, 2]
        assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).tolist() == []

    def test_overlapping_boxes_one_per_face(self):
        """Two faces side by side, each with two shifted boxes (IoU 0.68 within a face, 0 across): one box each."""
        boxes = torch.tensor([[0.0, 0, 50, 50], [5, 5, 55, 55], [100, 0, 150, 50], [104, 3, 154, 53]])
        scores = torch.tensor([0.9, 0.95, 0.6, 0.8])
        assert nms(boxes, scores, 0.4).tolist() == [1, 3]

    def test_nested_boxes(self):
        """A 60 px box inside a 100 px one (IoU 0.36 < 0.4): kept by IoU alone, suppressed by containment (all of
        it lies inside); a box half outside (intersection 0.5 of the smaller) stays at containment 0.8."""
        big, nested = [0.0, 0, 100, 100], [20, 20, 80, 80]
        half_out = [70, 20, 130, 80]  # 30 x 60 of its 60 x 60 inside: share 0.5, IoU 1800 / 11800 = 0.15
        boxes, scores = torch.tensor([big, nested, half_out]), torch.tensor([0.9, 0.8, 0.7])
        assert nms(boxes, scores, 0.4).tolist() == [0, 1, 2]
        assert nms(boxes, scores, 0.4, containment=0.8).tolist() == [0, 2]
        assert nms(boxes, scores, 0.4, containment=0.45).tolist() == [0]
        # the nested box scoring higher suppresses the big one just the same (the smaller area is what counts)
        assert nms(boxes, torch.tensor([0.5, 0.8, 0.7]), 0.4, containment=0.8).tolist() == [1, 2]
        groups = torch.tensor([0, 1, 0])  # another image: never suppressed
        assert batched_nms(boxes, scores, groups, 0.4, containment=0.8).tolist() == [0, 1, 2]

    def test_containment_one_is_plain_iou(self):
        generator = torch.Generator().manual_seed(7)
        centre = torch.rand(80, 2, generator=generator) * 100
        size = 5 + torch.rand(80, 2, generator=generator) * 30
        boxes = torch.cat([centre - size / 2, centre + size / 2], dim=1)
        scores = torch.rand(80, generator=generator)
        assert nms(boxes, scores, 0.4, containment=1.0).tolist() == greedy_nms(boxes, scores, 0.4)

    def test_edge_cases(self):
        assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
        assert nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.1]), 0.5).tolist() == [0]
        with pytest.raises(ValueError, match="scores"):
            nms(torch.zeros(3, 4), torch.zeros(2), 0.5)


class TestNetwork:
    def test_output_shapes_and_backward(self):
        torch.manual_seed(0)
        net = FaceDetectorNet(DetectorModelConfig(fpn_channels=16))
        logits, boxes, points = net(torch.rand(2, 3, 64, 96) * 255)
        count = anchors_for(64, 96).shape[0]
        assert logits.shape == (2, count) and boxes.shape == (2, count, 4) and points.shape == (2, count, 10)
        (logits.sum() + boxes.sum() + points.sum()).backward()
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name

    def test_prior_initialisation(self):
        torch.manual_seed(0)
        net = FaceDetectorNet(DetectorModelConfig(prior_prob=0.01))  # training mode: BatchNorm on batch statistics
        with torch.no_grad():
            logits, _, _ = net(torch.rand(2, 3, 64, 64) * 255)
        assert torch.sigmoid(logits).mean().item() == pytest.approx(0.01, rel=0.2)

    def test_fuse_batchnorm_keeps_the_function(self):
        torch.manual_seed(0)
        net = FaceDetectorNet(DetectorModelConfig(fpn_channels=16))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.1, 0.1)
        net.eval()
        x = torch.rand(1, 3, 64, 64) * 255
        with torch.no_grad():
            before = net(x)
            after = fuse_batchnorm(net)(x)
        for a, b in zip(before, after, strict=True):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        with pytest.raises(ValueError, match="eval mode"):
            fuse_batchnorm(FaceDetectorNet())

    def test_input_errors(self):
        with pytest.raises(ValueError, match="B x 3 x H x W"):
            FaceDetectorNet()(torch.zeros(1, 1, 32, 32))


class OneFace(FaceDetectorNet):
    """A network that sees exactly one face: the side-64 anchor whose centre is nearest ``point`` (input pixels)."""

    def __init__(self, point: tuple[float, float]) -> None:
        super().__init__(DetectorModelConfig(fpn_channels=8, context=False))
        self.point = torch.tensor(point)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        anchors = generate_anchors(self.feature_sizes(*x.shape[-2:]), STRIDES, self.config.anchor_sizes)
        centres = (anchors[:, :2] + anchors[:, 2:]) / 2
        distance = (centres - self.point).norm(dim=1) + 1e6 * (anchors[:, 2] - anchors[:, 0] != 64)
        logits = torch.full((x.shape[0], len(anchors)), -10.0)
        logits[:, distance.argmin()] = 10.0
        return logits, torch.zeros(x.shape[0], len(anchors), 4), torch.zeros(x.shape[0], len(anchors), 10)


def textured(height: int, width: int) -> np.ndarray:
    """Noise: an image with structure everywhere, so the detector's content check keeps every box."""
    return np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)


class TestFaceDetector:
    def test_boxes_on_flat_or_smooth_areas_are_dropped(self):
        detector = FaceDetector(OneFace((327.5, 167.5)), input_max_side=640)
        gradient = np.repeat(np.linspace(0, 255, 320, dtype=np.float32)[None, :, None], 240, 0)
        for image in (np.zeros((240, 320, 3), np.uint8), np.repeat(gradient, 3, 2).astype(np.uint8)):
            assert detector.detect(image)["boxes"].shape == (0, 4)
        assert detector.detect(textured(240, 320))["boxes"].shape == (1, 4)

    def test_no_face_gives_empty_arrays(self):
        detector = FaceDetector(FaceDetectorNet(), score_threshold=0.99)
        result = detector.detect(np.zeros((50, 70, 3), np.uint8))
        assert result["boxes"].shape == (0, 4) and result["scores"].shape == (0,)
        assert result["landmarks"].shape == (0, 5, 2)
        assert {v.dtype for v in result.values()} == {np.dtype(np.float32)}
        assert detector.detect_batch([]) == []

    def test_maps_back_to_original_pixels(self):
        # a 320 x 240 image is resized by k = 2 to 640 x 480; the anchor at input centre (327.5, 167.5), side 64
        detector = FaceDetector(OneFace((327.5, 167.5)), input_max_side=640)
        result = detector.detect(textured(240, 320))
        # x = (x_in + 0.5) / 2 - 0.5
        np.testing.assert_allclose(result["boxes"], [[147.5, 67.5, 179.5, 99.5]], atol=1e-5)
        np.testing.assert_allclose(result["landmarks"], np.full((1, 5, 2), [163.5, 83.5]), atol=1e-5)
        assert result["scores"] == pytest.approx([1 / (1 + math.exp(-10))])

    def test_batch_equals_single(self):
        detector = FaceDetector(OneFace((200.0, 150.0)))
        images = [textured(240, 320), textured(400, 300), textured(50, 50)]
        batch = detector.detect_batch(images)
        for image, result in zip(images, batch, strict=True):
            single = detector.detect(image)
            for key in ("boxes", "scores", "landmarks"):
                np.testing.assert_allclose(result[key], single[key], atol=1e-5)
        # 400 x 300 -> k = 640 / 400 = 1.6, same box in input pixels
        centre = (np.asarray([200.0, 150.0]) + 0.5) / 1.6 - 0.5
        np.testing.assert_allclose(batch[1]["landmarks"][0, 0], centre, atol=0.6 * 16 / 1.6)

    def test_input_errors(self):
        detector = FaceDetector(FaceDetectorNet())
        with pytest.raises(TypeError, match="RGB uint8"):
            detector.detect(np.zeros((10, 10), np.uint8))
        with pytest.raises(TypeError, match="RGB uint8"):
            detector.detect(np.zeros((10, 10, 3), np.float32))
        with pytest.raises(TypeError, match="list of images"):
            detector.detect_batch(np.zeros((10, 10, 3), np.uint8))
        with pytest.raises(TypeError, match="FaceDetectorNet"):
            FaceDetector(torch.nn.Linear(1, 1))
        with pytest.raises(ValueError, match="nms_iou"):
            FaceDetector(FaceDetectorNet(), nms_iou=0.0)

    def test_weights_round_trip(self, tmp_path):
        torch.manual_seed(0)
        model = FaceDetectorNet(DetectorModelConfig(fpn_channels=32, anchor_sizes=[[12.0, 24.0], [48, 96], [192, 384]]))
        model.heads[0].bias.data[0] = 5.0  # some confident anchors
        path = save_detector(model, tmp_path / "det.safetensors")
        loaded, settings = load_detector(path)
        assert loaded.config == model.config and settings.score_threshold == 0.5
        image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
        a = FaceDetector(model, score_threshold=0.3).detect(image)
        b = FaceDetector.from_weights(path, score_threshold=0.3).detect(image)
        assert len(a["boxes"]) > 0
        for key in a:
            np.testing.assert_allclose(a[key], b[key], atol=1e-4)

    def test_weights_errors(self, tmp_path):
        from safetensors.torch import save_file

        with pytest.raises(FileNotFoundError):
            load_detector(tmp_path / "missing.safetensors")
        save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        with pytest.raises(ValueError, match="not an awing detector"):
            load_detector(tmp_path / "other.safetensors")
        with pytest.raises(ValueError, match=".safetensors"):
            save_detector(FaceDetectorNet(), tmp_path / "det.pt")
        (tmp_path / "bad.safetensors").write_bytes(b"garbage")
        with pytest.raises(ValueError, match="readable"):
            load_detector(tmp_path / "bad.safetensors")


def hand_case():
    """Anchors with known IoUs against one face box ``[0, 0, 16, 16]`` (see TestMatchAnchors)."""
    anchors = torch.tensor([[0.0, 0, 16, 16], [4, 0, 20, 16], [8, 8, 24, 24], [100, 100, 116, 116]])
    target = {
        "boxes": torch.tensor([[0.0, 0, 16, 16]]),
        "landmarks": torch.full((1, 5, 2), 8.0),  # the centre of anchor 0: encoded as zeros
        "landmark_mask": torch.tensor([True]),
        "ignore": torch.tensor([False]),
    }
    return anchors, target


class TestDetectionLoss:
    def test_focal_hand_computed(self):
        anchors, target = hand_case()
        logits = torch.tensor([[1.0, -1.0, -2.0, 0.5]], requires_grad=True)
        boxes = torch.zeros(1, 4, 4)
        boxes[0, 0] = torch.tensor([0.5, 0.0, 0.0, -2.0])
        points = torch.ones(1, 4, 10)
        out = DetectionLoss()(logits, boxes, points, anchors, [target])
        # positives: anchor 0 (IoU 1) and anchor 1 (IoU 0.6 >= 0.35): num_pos = 2
        cls = sigmoid_focal_loss(logits.detach(), torch.tensor([[1.0, 1.0, 0.0, 0.0]]), reduction="sum") / 2
        torch.testing.assert_close(out["cls"], cls)
        # anchor 0: smooth-L1(0.5) + smooth-L1(2) = 0.125 + 1.5; anchor 1: target dx = -4 / 1.6 = -2.5 -> 2.0
        torch.testing.assert_close(out["box"], torch.tensor(2 * (1.625 + 2.0) / 2))
        # landmark targets: anchor 0 zeros (10 x 0.5); anchor 1 x = (8 - 12) / 1.6 = -2.5 (5 x 3.0), y = 0 (5 x 0.5)
        torch.testing.assert_close(out["landmarks"], torch.tensor((10 * 0.5 + 5 * 3.0 + 5 * 0.5) / 2))
        torch.testing.assert_close(out["loss"], out["cls"] + out["box"] + out["landmarks"])
        assert out["num_pos"].item() == 2
        out["loss"].backward()
        assert torch.isfinite(logits.grad).all()

    def test_alwa_weight_scales_only_classification(self):
        anchors, target = hand_case()
        args = (torch.randn(1, 4), torch.randn(1, 4, 4), torch.randn(1, 4, 10), anchors, [target])
        loss = DetectionLoss()
        a, b = loss(*args), loss(*args, alwa_weight=0.3)
        torch.testing.assert_close(b["loss"], 0.3 * a["cls"] + a["box"] + a["landmarks"])
        torch.testing.assert_close(b["cls"], a["cls"])

    def test_ohem_keeps_hardest_negatives(self):
        anchors, target = hand_case()
        logits = torch.tensor([[1.0, -1.0, -2.0, 0.5]])
        config = DetectionLossConfig(classification="ohem", ohem_neg_pos=1)
        out = DetectionLoss(config)(logits, torch.zeros(1, 4, 4), torch.zeros(1, 4, 10), anchors, [target])
        # positives 0, 1; quota 1 x 2 negatives: anchors 3 (logit 0.5) and 2 (logit -2)
        expected = F.softplus(torch.tensor(-1.0)) + F.softplus(torch.tensor(1.0)) + F.softplus(torch.tensor(0.5))
        expected = expected + F.softplus(torch.tensor(-2.0))
        torch.testing.assert_close(out["cls"], expected / 2)
        config = DetectionLossConfig(classification="ohem", ohem_neg_pos=1, pos_iou=0.9, low_quality_iou=0.9)
        out = DetectionLoss(config)(logits, torch.zeros(1, 4, 4), torch.zeros(1, 4, 10), anchors, [target])
        # one positive (anchor 0), one negative: the hardest is anchor 3
        torch.testing.assert_close(out["cls"], F.softplus(torch.tensor(-1.0)) + F.softplus(torch.tensor(0.5)))

    def test_noisy_anchors(self):
        anchors, target = hand_case()
        logits = torch.zeros(1, 4)
        box_deltas = torch.zeros(1, 4, 4, requires_grad=True)
        config = DetectionLossConfig(noisy=NoisyAnchorConfig(enabled=True, top_n=3))
        out = DetectionLoss(config)(logits, box_deltas, torch.zeros(1, 4, 10), anchors, [target])
        # candidates 0, 1, 2 with predicted boxes = anchors: loc = IoU = 1, 0.6, 1/7; score = 0.5
        loc = torch.tensor([1.0, 0.6, 1 / 7])
        soft = 0.75 * loc + 0.25 * 0.5
        targets = torch.tensor([[soft[0], soft[1], soft[2], 0.0]])
        # re-weighting keeps the total: the loss equals the unweighted soft-target loss over num_pos = 3
        torch.testing.assert_close(out["cls"], sigmoid_focal_loss(logits, targets, reduction="sum") / 3)
        # box losses 0, 2.0 (dx = -2.5) and 9.0 (dx = dy = -5) keep their total too
        torch.testing.assert_close(out["box"], torch.tensor(2 * 11.0 / 3))
        out["box"].backward()
        # but each anchor's share follows r = 0.75 / (1 - loc) + 0.25 / (1 - 0.5), normalised on the box losses
        r = 0.75 / (1 - loc[1:]) + 0.25 * 2
        normalised = r * 11.0 / (2.0 * r[0] + 9.0 * r[1])
        # d smooth-L1 / d dx = +1 (prediction 0 above the targets -2.5 and -5), times box_weight / num_pos = 2 / 3
        torch.testing.assert_close(box_deltas.grad[0, 1:3, 0], 2 / 3 * normalised)

    def test_empty_targets(self):
        anchors, _ = hand_case()
        empty = {
            "boxes": torch.zeros(0, 4),
            "landmarks": torch.zeros(0, 5, 2),
            "landmark_mask": torch.zeros(0, dtype=torch.bool),
            "ignore": torch.zeros(0, dtype=torch.bool),
        }  # noqa: E501
        logits = torch.zeros(1, 4, requires_grad=True)
        for config in (DetectionLossConfig(), DetectionLossConfig(noisy=NoisyAnchorConfig(enabled=True))):
            out = DetectionLoss(config)(logits, torch.zeros(1, 4, 4), torch.zeros(1, 4, 10), anchors, [empty])
            assert out["box"].item() == 0 and out["landmarks"].item() == 0 and out["num_pos"].item() == 0
            torch.testing.assert_close(out["cls"], sigmoid_focal_loss(logits, torch.zeros(1, 4), reduction="sum"))

    def test_end_to_end_with_network(self):
        torch.manual_seed(0)
        net = FaceDetectorNet(DetectorModelConfig(fpn_channels=16))
        images = torch.rand(2, 3, 64, 64) * 255
        targets = [hand_case()[1], {**hand_case()[1], "landmark_mask": torch.tensor([False])}]
        out = DetectionLoss()(*net(images), anchors_for(64, 64), targets)
        out["loss"].backward()
        assert torch.isfinite(out["loss"]) and out["num_pos"].item() > 0

    def test_errors(self):
        anchors, target = hand_case()
        loss = DetectionLoss()
        good = (torch.zeros(1, 4), torch.zeros(1, 4, 4), torch.zeros(1, 4, 10), anchors)
        with pytest.raises(ValueError, match="one per image"):
            loss(*good, [target, target])
        with pytest.raises(ValueError, match="lacks"):
            loss(*good, [{"boxes": target["boxes"]}])
        with pytest.raises(ValueError, match="landmarks"):
            loss(*good, [{**target, "landmarks": torch.zeros(1, 4, 2)}])
        with pytest.raises(ValueError, match="anchors"):
            loss(*good[:3], anchors[:3], [target])
        with pytest.raises(ValueError, match="box_deltas"):
            loss(good[0], torch.zeros(1, 4, 3), good[2], anchors, [target])


class TestDetectorConfig:
    def test_overrides_and_round_trip(self, tmp_path):
        cfg = load_config(
            None, ["loss.alwa.enabled=true", "loss.classification=ohem", "model.fpn_channels=32"], cls=DetectorConfig
        )
        assert cfg.loss.alwa.enabled and cfg.loss.classification == "ohem" and cfg.model.fpn_channels == 32
        assert cfg.schedule.milestones == [190, 220] and cfg.optim.name == "sgd" and cfg.data.input_size == 640
        save_config(cfg, tmp_path / "det.yaml")
        assert load_config(tmp_path / "det.yaml", cls=DetectorConfig) == cfg
        alwa = build_alwa(cfg.loss)
        assert isinstance(alwa, ALWA) and alwa.interval == 100 and alwa.statistic == "std"
        assert build_alwa(DetectorConfig().loss) is None
        assert json.loads(json.dumps(cfg.model.to_dict()))["variances"] == [0.1, 0.2]

    def test_errors(self):
        with pytest.raises(ConfigError, match="did you mean 'loss.noisy.top_n'"):
            load_config(None, ["loss.noisy.topn=3"], cls=DetectorConfig)
        with pytest.raises(ConfigError, match="neg_iou"):
            load_config(None, ["loss.neg_iou=0.5"], cls=DetectorConfig)
        with pytest.raises(ConfigError, match="classification"):
            load_config(None, ["loss.classification=softmax"], cls=DetectorConfig)
        with pytest.raises(ValueError, match="anchor_sizes"):
            DetectorModelConfig(anchor_sizes=[[16.0], [32.0, 64.0], [128.0]])
        with pytest.raises(ValueError, match="multiple of 32"):
            load_config(None, ["data.input_size=100"], cls=DetectorConfig)
