from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from awing.data.io import DataError
from awing.detection.augment import DetectionAugment, photometric_jitter, transform_boxes
from awing.detection.config import DetectionAugmentConfig
from awing.detection.data import (
    DetectionSample,
    build_detection_dataset,
    collate_detection,
    five_points_from_68,
    is_validation,
    make_detection_record,
    read_dlib_xml,
    read_voc_folder,
    read_voc_xml,
    read_wider_annotations,
)

# --- readers -------------------------------------------------------------------------------------------------------


def voc_xml(filename: str, objects: list[tuple[str, str, str, str, str]], difficult: int = 0) -> str:
    body = "".join(
        f"<object><name>face</name><difficult>{difficult}</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for a, b, c, d, _ in objects
    )
    size = "<size><width>64</width><height>48</height></size>"
    return f"<annotation><filename>{filename}</filename>{size}{body}</annotation>"


class TestVOC:
    def test_values_and_layout(self, tmp_path):
        (tmp_path / "annotations").mkdir()
        (tmp_path / "images").mkdir()
        xml = tmp_path / "annotations" / "a.xml"
        xml.write_text(voc_xml("a.jpg", [("11", "21", "31", "41", ""), ("1", "1", "5", "5", "")]))
        record = read_voc_xml(xml)
        np.testing.assert_array_equal(record.boxes, [[10, 20, 30, 40], [0, 0, 4, 4]])  # 1-based -> 0-based
        assert record.image_path == str(tmp_path / "images" / "a.jpg")
        assert record.attributes == {"labels": ["face", "face"], "size": (64, 48)}
        assert not record.ignore.any() and not record.landmark_mask.any() and record.landmarks.shape == (2, 5, 2)
        np.testing.assert_array_equal(read_voc_xml(xml, one_based=False).boxes[0], [11, 21, 31, 41])
        xml.write_text(voc_xml("a.jpg", [("11", "21", "31", "41", "")], difficult=1))
        assert read_voc_xml(xml).ignore.tolist() == [True]

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            ("<annotation><filename>a.jpg</filename>", "malformed XML"),
            ("<dataset/>", "expected <annotation>"),
            ("<annotation></annotation>", "no <filename>"),
            ("<annotation><filename>a.jpg</filename><object><name>f</name></object></annotation>", "no <bndbox>"),
            (voc_xml("a.jpg", [("x", "1", "5", "5", "")]), r"<xmin> is 'x'; expected a number"),
            (voc_xml("a.jpg", [("10", "1", "5", "5", "")]), "negative size"),
            (voc_xml("a.jpg", [("1", "1", "", "5", "")]), "missing <xmax>"),
        ],
    )
    def test_errors_name_the_file(self, tmp_path, content, message):
        xml = tmp_path / "bad.xml"
        xml.write_text(content)
        with pytest.raises(DataError, match=message) as info:
            read_voc_xml(xml)
        assert str(xml) in str(info.value)

    def test_missing_file(self, tmp_path):
        with pytest.raises(DataError, match="not found"):
            read_voc_xml(tmp_path / "none.xml")
        with pytest.raises(DataError, match="folder not found"):
            read_voc_folder(tmp_path / "none")
        with pytest.raises(ValueError, match="valid splits"):
            read_voc_folder(tmp_path, split="test")

    @pytest.mark.slow
    def test_real_face_mask_set(self, shared_data):
        root = shared_data / "face-mask-detection"
        records = read_voc_folder(root)
        assert len(records) == 853 and sum(len(r.boxes) for r in records) == 4072
        train, val = read_voc_folder(root, "train"), read_voc_folder(root, "val")
        assert (len(train), len(val)) == (740, 113)
        assert {r.image_path for r in train}.isdisjoint(r.image_path for r in val)
        first = next(r for r in records if Path(r.source).stem == "maksssksksss0")
        np.testing.assert_array_equal(first.boxes[0], [78, 104, 108, 141])
        assert first.attributes["labels"][:2] == ["without_mask", "with_mask"]
        assert all(Path(r.image_path).is_file() for r in records)


class TestSplit:
    def test_rule(self):
        assert [i for i in range(30) if is_validation(f"maksssksksss{i}")] == [14, 23, 26, 28]
        share = np.mean([is_validation(f"image_{i}") for i in range(5000)])
        assert 0.13 < share < 0.17


class TestDlib:
    def test_synthetic(self, tmp_path):
        parts = "".join(f"<part name='{i:02d}' x='{i}' y='{2 * i}'/>" for i in range(68))
        (tmp_path / "set.xml").write_text(
            "<dataset><images><image file='img/a.jpg'>"
            f"<box top='10' left='20' width='30' height='40'>{parts}</box>"
            "<box top='0' left='0' width='5' height='5' ignore='1'/></image>"
            "<image file='b.jpg'/></images></dataset>"
        )
        a, b = read_dlib_xml(tmp_path / "set.xml")
        np.testing.assert_array_equal(a.boxes, [[20, 10, 50, 50], [0, 0, 5, 5]])
        assert a.ignore.tolist() == [False, True] and a.landmark_mask.tolist() == [True, False]
        # eye centres = means of points 36-41 (x 38.5) and 42-47 (x 44.5); nose 30; mouth corners 48 and 54
        np.testing.assert_allclose(a.landmarks[0], [[38.5, 77], [44.5, 89], [30, 60], [48, 96], [54, 108]])
        assert a.image_path == str(tmp_path / "img" / "a.jpg") and b.boxes.shape == (0, 4)

    def test_errors(self, tmp_path):
        path = tmp_path / "bad.xml"
        dataset = "<dataset><images><image file='a.jpg'>{}</image></images></dataset>"
        path.write_text(dataset.format("<box top='1' left='2' width='-3' height='4'/>"))
        with pytest.raises(DataError, match="negative size") as info:
            read_dlib_xml(path)
        assert "bad.xml [image 0 (a.jpg), box 0]" in str(info.value)
        path.write_text(dataset.format("<box top='1' left='two' width='3' height='4'/>"))
        with pytest.raises(DataError, match="left is 'two'"):
            read_dlib_xml(path)
        path.write_text("<images/>")
        with pytest.raises(DataError, match="dlib imglab XML"):
            read_dlib_xml(path)

    def test_real_files(self, shared_data):
        folder = shared_data / "fixtures" / "dlib-faces" / "examples" / "faces"
        training, testing = read_dlib_xml(folder / "training.xml"), read_dlib_xml(folder / "testing.xml")
        assert sum(len(r.boxes) for r in training) == 18 and sum(len(r.boxes) for r in testing) == 25
        np.testing.assert_array_equal(training[0].boxes[0], [194, 90, 231, 127])  # top 90 left 194 37 x 37
        marked = read_dlib_xml(folder / "training_with_face_landmarks.xml")
        assert all(r.landmark_mask.all() for r in marked)
        box, points = marked[0].boxes[0], marked[0].landmarks[0]
        assert ((points >= box[:2] - 5) & (points <= box[2:] + 5)).all()  # 5 points inside their face
        assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # image-left eye and mouth corner first


WIDER = """0--Parade/a.jpg
2
10 20 30 40 0 0 0 0 0 0
5 5 8 0 2 0 0 0 1 0
0--Parade/empty.jpg
0
0 0 0 0 0 0 0 0 0 0
1--Handshaking/c.jpg
1
1 2 3 4 1 1 0 1 0 1
"""


class TestWider:
    def test_values(self, tmp_path):
        path = tmp_path / "gt.txt"
        path.write_text(WIDER)
        records = read_wider_annotations(path, tmp_path / "images")
        assert [Path(r.image_path).name for r in records] == ["a.jpg", "empty.jpg", "c.jpg"]
        np.testing.assert_array_equal(records[0].boxes, [[10, 20, 40, 60], [5, 5, 13, 5]])
        assert records[0].ignore.tolist() == [False, True]  # zero height -> ignore region
        assert records[0].attributes["blur"].tolist() == [0, 2] and records[0].attributes["occlusion"].tolist() == [
            0,
            1,
        ]
        assert records[1].boxes.shape == (0, 4)
        assert records[2].ignore.tolist() == [True]  # invalid = 1
        assert records[2].source == f"{path}:8"

    @pytest.mark.parametrize(
        ("text", "message", "line"),
        [
            (
                "a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\n",
                "expected 2 box lines of 10 numbers; line 2 has the end of the file",
                4,
            ),
            ("a.jpg\n1\n1 2 3 4 0 0 0 0 0\n", "9 tokens", 3),
            ("a.jpg\n1\n1 2 x 4 0 0 0 0 0 0\n", r"token 3 \('x'\) is not a number", 3),
            ("a.jpg\n1\n1 2 -3 4 0 0 0 0 0 0\n", "negative size", 3),
            ("a.jpg\ntwo\n", "box count is 'two'", 2),
            ("a.jpg\n-1\n", "non-negative", 2),
            ("a.jpg\n0\nb.jpg\n1\n1 2 3 4 0 0 0 0 0 0\n", "one line of zeros after a count of 0", 3),
            ("a.jpg\n", "no box-count line", 2),
        ],
    )
    def test_errors_name_file_and_line(self, tmp_path, text, message, line):
        path = tmp_path / "gt.txt"
        path.write_text(text)
        with pytest.raises(DataError, match=message) as info:
            read_wider_annotations(path, tmp_path)
        assert info.value.file == str(path) and info.value.line == line

    def test_dataset_layout_and_collate(self, tmp_path):
        (tmp_path / "wider_face_split").mkdir()
        (tmp_path / "wider_face_split" / "wider_face_train_bbx_gt.txt").write_text(WIDER)
        for name in ("0--Parade/a.jpg", "0--Parade/empty.jpg", "1--Handshaking/c.jpg"):
            image = tmp_path / "WIDER_train" / "images" / name
            image.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(image), np.full((60, 80, 3), 90, np.uint8))
        augment = DetectionAugment(64, DetectionAugmentConfig(min_face=0))
        ds = build_detection_dataset("wider", tmp_path, "train", augment, seed=3)
        assert len(ds) == 3 and len(build_detection_dataset("wider", tmp_path, "train", max_samples=2)) == 2
        first = ds[0]
        np.testing.assert_array_equal(first.image, ds[0].image)  # a function of (seed, epoch, index)
        ds.set_epoch(1)
        assert not np.array_equal(first.image, ds[0].image) or not np.array_equal(first.boxes, ds[0].boxes)
        images, targets = collate_detection([ds[i] for i in range(3)])
        assert images.shape == (3, 3, 64, 64) and images.dtype == torch.float32
        assert targets[1]["boxes"].shape == (0, 4) and targets[0]["landmark_mask"].dtype == torch.bool
        with pytest.raises(ValueError, match="valid splits"):
            build_detection_dataset("wider", tmp_path, "test")
        with pytest.raises(ValueError, match="valid names"):
            build_detection_dataset("coco", tmp_path, "train")
        with pytest.raises(ValueError, match="epoch"):
            ds.set_epoch(-1)
        (tmp_path / "WIDER_train" / "images" / "0--Parade" / "a.jpg").unlink()
        with pytest.raises(DataError, match=r"image not found \(annotation: .*gt.txt:1\)"):
            ds[0]


class TestRecords:
    def test_make_record_checks(self):
        with pytest.raises(DataError, match="negative size"):
            make_detection_record("a.jpg", [[10, 10, 5, 20]], source="list.txt:3")
        with pytest.raises(DataError, match="finite"):
            make_detection_record("a.jpg", [[0, 0, np.nan, 1]])
        record = make_detection_record("a.jpg", [[0, 0, 0, 4], [0, 0, 3, 4]], landmarks=np.zeros((2, 5, 2)))
        assert record.ignore.tolist() == [True, False] and record.landmark_mask.tolist() == [True, True]

    def test_five_points_errors(self):
        with pytest.raises(ValueError, match=r"\(\.\.\., 68, 2\)"):
            five_points_from_68(np.zeros((5, 2)))


# --- augmentation --------------------------------------------------------------------------------------------------


def sample_with_face(image: np.ndarray, box, points=None) -> DetectionSample:
    points = np.zeros((1, 5, 2), np.float32) if points is None else np.asarray(points, np.float32)[None]
    return DetectionSample(image, np.asarray([box], np.float32), points, np.ones(1, bool), np.zeros(1, bool), "x.jpg")


class TestDetectionAugment:
    def test_letterbox_is_exact(self):
        image = np.zeros((50, 100, 3), np.uint8)
        image[10:20, 30:40] = 255  # pixels 30..39 x 10..19: edges [29.5, 39.5] x [9.5, 19.5]
        out = DetectionAugment(200, train=False)(sample_with_face(image, [29.5, 9.5, 39.5, 19.5]))
        # k = 2: x_out = (x + 0.5) * 2 - 0.5 -> the white square covers output pixels 60..79 x 20..39, whose outer ring
        # samples the source at 29.75 / 39.25 (bilinear: 3/4 white); pixel 59 samples 29.25 (1/4 white)
        np.testing.assert_allclose(out.boxes, [[59.5, 19.5, 79.5, 39.5]])
        assert out.image[21:39, 61:79].min() == 255 and out.image[:, :59].max() == 0
        assert out.image[30, 60, 0] == out.image[30, 79, 0] == 191 and out.image[30, 59, 0] == 64
        assert out.image[101:].max() == 0  # padding below the image is black

    def test_flip_permutes_points(self):
        image = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
        points = [[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]]  # eyes, nose, mouth corners (image-left first)
        config = DetectionAugmentConfig(crop_scales=[1.0], flip_prob=1.0, photometric_prob=0.0)
        out = DetectionAugment(100, config)(sample_with_face(image, [20, 30, 80, 90], points), np.random.default_rng(0))
        flipped = [[99 - x, y] for x, y in points]
        np.testing.assert_allclose(out.landmarks[0], np.asarray(flipped)[[1, 0, 2, 4, 3]], atol=1e-4)
        np.testing.assert_allclose(out.boxes, [[19, 30, 79, 90]], atol=1e-4)
        assert out.landmarks[0, 0, 0] < out.landmarks[0, 1, 0]  # still image-left eye first
        np.testing.assert_allclose(out.image.astype(int), image[:, ::-1].astype(int), atol=1)

    def test_random_crops_keep_faces_with_centre_inside(self):
        image = np.zeros((100, 300, 3), np.uint8)
        boxes = np.array([[10, 10, 40, 40], [250, 50, 290, 90], [120, 0, 130, 5]], np.float32)
        sample = DetectionSample(
            image, boxes, np.zeros((3, 5, 2), np.float32), np.zeros(3, bool), np.array([0, 0, 1], bool), "x"
        )
        augment = DetectionAugment(64, DetectionAugmentConfig(crop_scales=[0.5, 0.8], min_face=0))
        for seed in range(20):
            out = augment(sample, np.random.default_rng(seed))
            faces = out.boxes[~out.ignore]
            assert len(faces) >= 1 and out.image.shape == (64, 64, 3)
            assert (out.boxes >= -0.5).all() and (out.boxes <= 63.5).all()

    @pytest.mark.parametrize("face", [[100, 120, 140, 170], [0, 0, 290, 190]])
    def test_zoom_brings_a_face_to_the_drawn_size_with_its_surroundings(self, face):
        image = np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8)
        config = DetectionAugmentConfig(zoom_prob=1.0, zoom_sizes=(20.0, 200.0), flip_prob=0.0, photometric_prob=0.0)
        augment, sample = DetectionAugment(64, config), sample_with_face(image, face)
        sides = []
        for seed in range(30):
            left, top, right, bottom = augment.crop_region(
                300, 200, sample.boxes, sample.ignore, np.random.default_rng(seed)
            )
            side = right - left
            assert bottom - top == pytest.approx(side)
            target = 64 * np.sqrt((face[2] - face[0]) * (face[3] - face[1])) / side  # face side in output pixels
            assert 20 - 1e-6 <= target <= 200 + 1e-6
            sides.append(target)
            assert side <= 300 + 1e-6  # never zoomed out beyond the image's longer side
            for lo, hi, start, end, extent in (
                (left, right, face[0], face[2], 300),
                (top, bottom, face[1], face[3], 200),
            ):
                if end - start <= side:  # the face fits along this axis: it is inside, and so is the image
                    assert lo <= start and end <= hi
                    assert (lo >= -0.5 - 1e-6 and hi <= extent - 0.5 + 1e-6) or (lo <= -0.5 and hi >= extent - 0.5)
                else:  # too large: centred on the face
                    assert (lo + hi) / 2 == pytest.approx((start + end) / 2)
            out = augment(sample, np.random.default_rng(seed))
            np.testing.assert_allclose(np.sqrt(np.prod(out.boxes[0, 2:] - out.boxes[0, :2])), min(target, 64), rtol=0.2)
        assert np.median(np.log(sides)) == pytest.approx(np.log(np.sqrt(20 * 200)), abs=0.6)  # log-uniform draw

    def test_zoom_config_errors(self):
        with pytest.raises(ValueError, match="zoom_sizes"):
            DetectionAugmentConfig(zoom_sizes=(50.0, 10.0))
        with pytest.raises(ValueError, match="zoom_prob"):
            DetectionAugmentConfig(zoom_prob=1.5)

    def test_small_faces_become_ignore(self):
        image = np.zeros((400, 400, 3), np.uint8)
        out = DetectionAugment(64, DetectionAugmentConfig(min_face=4.0), train=False)(
            sample_with_face(image, [10, 10, 30, 30])
        )
        assert out.ignore.tolist() == [True]  # 20 px * 64 / 400 = 3.2 px < 4

    def test_reproducible_and_empty(self):
        image = np.random.default_rng(1).integers(0, 256, (80, 120, 3), dtype=np.uint8)
        augment = DetectionAugment(64)
        a = augment(sample_with_face(image, [10, 10, 50, 50]), np.random.default_rng(7))
        b = augment(sample_with_face(image, [10, 10, 50, 50]), np.random.default_rng(7))
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        empty = DetectionSample(
            image,
            np.zeros((0, 4), np.float32),
            np.zeros((0, 5, 2), np.float32),
            np.zeros(0, bool),
            np.zeros(0, bool),
            "x",
        )
        out = augment(empty, np.random.default_rng(0))
        assert out.boxes.shape == (0, 4) and out.landmarks.shape == (0, 5, 2) and out.image.shape == (64, 64, 3)

    def test_errors(self):
        with pytest.raises(ValueError, match="output_size"):
            DetectionAugment(0)
        with pytest.raises(ValueError, match="Generator"):
            DetectionAugment(64)(sample_with_face(np.zeros((10, 10, 3), np.uint8), [1, 1, 5, 5]))


class TestPhotometric:
    def test_probability_zero_is_identity_and_one_changes(self):
        image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        assert photometric_jitter(image, np.random.default_rng(0), 0.0) is image
        out = photometric_jitter(image, np.random.default_rng(0), 1.0)
        assert out.dtype == np.uint8 and out.shape == image.shape and not np.array_equal(out, image)

    def test_transform_boxes_rebuilds_from_corners(self):
        rotate = np.array([[0.0, -1.0, 10.0], [1.0, 0.0, 0.0]])  # x' = 10 - y, y' = x
        np.testing.assert_allclose(transform_boxes(rotate, np.array([[1, 2, 3, 5]])), [[5, 1, 8, 3]])
