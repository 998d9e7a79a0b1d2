"""Tests of AFLW-68 (awing.data.aflw68): the AFLW -> 68 correspondence, the teacher agreement and the loader, plus
the box and keep-rule helpers of scripts/build_aflw68.py. None needs dlib; the real-data check skips without it."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from script_loader import load_script

from awing.data import DATASETS, DataError, aflw_is_validation, build_dataset
from awing.data.aflw68 import (
    AFLW21_SHARED,
    AFLW21_TO_68,
    BUILD_FORMAT,
    AFLW68Dataset,
    shared_point_errors,
    shared_points_68,
    teacher_agreement,
)
from awing.landmarks import get_scheme


def _shape68(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    """(n, 68, 2) points spanning exactly [0, 100] x [0, 50] (two points pinned to the corners)."""
    pts = rng.uniform([0, 0], [100, 50], size=(n, 68, 2))
    pts[:, 0], pts[:, 1] = (0, 0), (100, 50)
    return pts


def _human_from(points68: np.ndarray) -> np.ndarray:
    """(n, 21, 2) AFLW points equal to the teacher's counterparts (ears at -1)."""
    human = np.full((len(points68), 21, 2), -1.0)
    human[:, list(AFLW21_SHARED)] = shared_points_68(points68)
    return human


# ------------------------------------------------------------------------------------------- correspondence


class TestCorrespondence:
    def test_shared_points_are_the_21_without_ears(self):
        assert AFLW21_SHARED == tuple(i for i in range(21) if i not in (12, 16))
        assert all(0 <= j < 68 for idx in AFLW21_TO_68.values() for j in idx)

    def test_flip_pairs_map_onto_flip_pairs(self):
        flip68 = get_scheme("68").flip_index
        flip21 = get_scheme("21").flip_index
        for a in AFLW21_SHARED:
            mirrored = {flip68[j] for j in AFLW21_TO_68[a]}
            assert mirrored == set(AFLW21_TO_68[flip21[a]]), f"AFLW point {a}"

    def test_mirroring_both_schemes_keeps_the_agreement(self):
        rng = np.random.default_rng(0)
        teacher = _shape68(rng, 3)
        human = _human_from(teacher) + rng.normal(0, 2, (3, 21, 2))
        visible = rng.random((3, 21)) < 0.8
        visible[:, 14] = True
        flip68, flip21 = list(get_scheme("68").flip_index), list(get_scheme("21").flip_index)
        mirror = np.array([-1.0, 1.0])
        expected = teacher_agreement(teacher, human, visible)
        mirrored = teacher_agreement((teacher * mirror)[:, flip68], (human * mirror)[:, flip21], visible[:, flip21])
        np.testing.assert_allclose(mirrored, expected, rtol=1e-12)

    def test_golden_counterparts(self):
        points = np.zeros((68, 2))
        points[36:42] = np.arange(12).reshape(6, 2)  # left eye: mean (5, 6)
        points[62], points[66] = (10, 20), (30, 40)  # inner-lip midpoints: mean (20, 30)
        points[8] = (7, 9)
        out = shared_points_68(points)
        np.testing.assert_allclose(out[AFLW21_SHARED.index(7)], [5, 6])
        np.testing.assert_allclose(out[AFLW21_SHARED.index(18)], [20, 30])
        np.testing.assert_allclose(out[AFLW21_SHARED.index(20)], [7, 9])
        assert shared_points_68(np.zeros((4, 3, 68, 2))).shape == (4, 3, 19, 2)

    def test_shape_error(self):
        with pytest.raises(ValueError, match=r"points68 must have shape \(..., 68, 2\), got \(98, 2\)"):
            shared_points_68(np.zeros((98, 2)))

    def test_human_68_points_agree_with_human_21_points(self, shared_data):
        """Both annotations of AFLW2000-3D (no model involved): near-frontal faces agree within 6 % of the box."""
        root = shared_data / "aflw2000-3d"
        pts68 = np.load(root / "pts68_reannotated.npy")[:, :2].transpose(0, 2, 1)
        pts21 = np.load(root / "pts21.npy").transpose(0, 2, 1)
        frontal = np.flatnonzero(np.abs(np.load(root / "yaw_deg.npy")) < 30)[:200]
        values = teacher_agreement(pts68[frontal], pts21[frontal], pts21[frontal, :, 0] >= 0)
        assert np.median(values) < 0.06


# ------------------------------------------------------------------------------------------------ agreement


class TestTeacherAgreement:
    def test_hand_computed(self):
        teacher = _shape68(np.random.default_rng(1))
        human = _human_from(teacher)
        human[0, 14] += (3, 4)  # 5 px off
        human[0, 20] += (0, 6)  # 6 px off, but invisible
        visible = np.zeros((1, 21), bool)
        visible[0, [14, 7, 12]] = True  # the ear (12) is not a shared point
        size = np.sqrt(100 * 50)
        np.testing.assert_allclose(teacher_agreement(teacher, human, visible), [(5 + 0) / 2 / size], rtol=1e-12)
        errors = shared_point_errors(teacher, human)
        assert errors.shape == (1, 19)
        np.testing.assert_allclose(errors[0, AFLW21_SHARED.index(20)], 6 / size, rtol=1e-12)

    def test_no_visible_shared_point(self):
        teacher = _shape68(np.random.default_rng(2), 2)
        visible = np.ones((2, 21), bool)
        visible[1] = False
        visible[1, [12, 16]] = True
        with pytest.raises(ValueError, match="face 1 has no visible shared AFLW point"):
            teacher_agreement(teacher, _human_from(teacher), visible)

    def test_errors(self):
        teacher = _shape68(np.random.default_rng(3))
        human = _human_from(teacher)
        with pytest.raises(ValueError, match=r"visible21 must be a bool array of shape \(1, 21\)"):
            teacher_agreement(teacher, human, np.ones((1, 21)))
        with pytest.raises(ValueError, match=r"points21 \(N, 21, 2\).*got \(1, 68, 2\) and \(1, 19, 2\)"):
            shared_point_errors(teacher, human[:, :19])
        flat = teacher.copy()
        flat[..., 1] = 0
        with pytest.raises(ValueError, match="face 0: the teacher's 68 points span a box without area"):
            shared_point_errors(flat, human)


# --------------------------------------------------------------------------------------------------- loader


def _names(count: int, val: int) -> list[str]:
    """``count`` crop names, ``val`` of them in the validation split (first), the others in train."""
    val_names, train_names, i = [], [], 0
    while len(val_names) < val or len(train_names) < count - val:
        name = f"image{i:05d}.jpg"
        (val_names if aflw_is_validation(name) else train_names).append(name)
        i += 1
    return val_names[:val] + train_names[: count - val]


@pytest.fixture
def build(tmp_path) -> Path:
    """A 6-face build in tmp_path/aflw68 over crops in tmp_path/aflw (2 val faces, yaws in the three bins)."""
    names = _names(6, 2)
    crops = tmp_path / "aflw" / "crops"
    crops.mkdir(parents=True)
    image = np.zeros((120, 120, 3), np.uint8)
    image[:, :, 2] = 200  # BGR on disk: red
    for name in names:
        assert cv2.imwrite(str(crops / name), image)
    root = tmp_path / "aflw68"
    root.mkdir()
    rng = np.random.default_rng(4)
    np.save(root / "pts68.npy", (10 + _shape68(rng, 6) * 0.8).astype(np.float32))
    np.save(root / "yaw_deg.npy", np.array([5, -40, 70, -95, 29.9, 30], np.float32))
    np.save(root / "agreement.npy", np.linspace(0.01, 0.06, 6).astype(np.float32))
    (root / "names.txt").write_text("\n".join(names) + "\n")
    (root / "build.json").write_text(json.dumps({"format": BUILD_FORMAT, "aflw_root": "../aflw"}))
    return root


class TestAFLW68Dataset:
    def test_reads_faces(self, build):
        ds = AFLW68Dataset(build, split="all")
        assert len(ds) == 6 and ds.scheme == "68" and "aflw68" in DATASETS
        points = np.load(build / "pts68.npy")
        sample = ds[2]
        assert sample.image.shape == (120, 120, 3) and sample.image[60, 60, 0] > 150  # RGB
        np.testing.assert_array_equal(sample.landmarks_img, points[2])
        np.testing.assert_allclose(sample.box, [10, 10, 90, 50])  # tight box of the 68 points
        assert sample.visible.all()
        assert sample.attributes["yaw_deg"] == pytest.approx(70)
        assert sample.attributes["agreement"] == pytest.approx(0.03)

    def test_split_rule(self, build):
        names = (build / "names.txt").read_text().split()
        val = AFLW68Dataset(build, split="val")
        train = build_dataset("aflw68", build, split="train")
        assert [Path(r.image_path).name for r in val.records] == names[:2]
        assert [Path(r.image_path).name for r in train.records] == names[2:]
        assert len(AFLW68Dataset(build)) == 4  # default split: train
        with pytest.raises(ValueError, match="unknown split 'test' for AFLW68Dataset; valid splits: train, val, all"):
            AFLW68Dataset(build, split="test")

    def test_yaw_subsets(self, build):
        ds = AFLW68Dataset(build, split="all")
        assert ds.subset_indices("yaw_0_30").tolist() == [0, 4]
        assert ds.subset_indices("yaw_30_60").tolist() == [1, 5]
        assert ds.subset_indices("yaw_60_90").tolist() == [2, 3]

    def test_aflw_root_override(self, build, tmp_path):
        (build / "build.json").write_text(json.dumps({"format": BUILD_FORMAT, "aflw_root": "nowhere"}))
        with pytest.raises(DataError, match=r"nowhere/crops: folder not found; see datasets/aflw68/README.md"):
            AFLW68Dataset(build)
        assert len(AFLW68Dataset(build, aflw_root=tmp_path / "aflw")) == 4

    @pytest.mark.parametrize(
        ("file", "content", "match"),
        [
            ("build.json", None, "build.json: file not found"),
            ("build.json", "{", r"build.json: not valid JSON"),
            ("build.json", '{"format": "v0", "aflw_root": "../aflw"}', "format is 'v0'; expected 'awing.aflw68.v1'"),
            ("build.json", '{"format": "awing.aflw68.v1"}', "'aflw_root' must be a path string, got None"),
            ("names.txt", None, "names.txt: file not found"),
            ("pts68.npy", np.zeros((6, 68, 3)), r"pts68.npy: array has shape \(6, 68, 3\); expected 6 x 68 x 2"),
            ("yaw_deg.npy", np.zeros(5), r"yaw_deg.npy: array has shape \(5,\); expected 6"),
            ("agreement.npy", None, "agreement.npy: file not found"),
        ],
    )
    def test_corrupt_build_names_the_file(self, build, file, content, match):
        path = build / file
        if content is None:
            path.unlink()
        elif isinstance(content, str):
            path.write_text(content)
        else:
            np.save(path, content)
        with pytest.raises(DataError, match=match):
            AFLW68Dataset(build, split="all")

    def test_bad_face(self, build, tmp_path):
        points = np.load(build / "pts68.npy")
        points[3, 5, 0] = np.nan
        np.save(build / "pts68.npy", points)
        name = (build / "names.txt").read_text().split()[4]
        (tmp_path / "aflw" / "crops" / name).unlink()
        with pytest.raises(DataError, match=r"pts68.npy \[row 3, .*\]: a landmark coordinate is NaN"):
            AFLW68Dataset(build, split="all")
        with pytest.warns(UserWarning, match="2 of 6"):
            ds = AFLW68Dataset(build, split="all", skip_invalid=True)
        assert len(ds) == 4

    def test_partly_labelled_faces_and_stored_boxes(self, build):
        """An extended build (scripts/extend_aflw68_human.py): x and y NaN = unlabelled; boxes.npy gives the box."""
        points = np.load(build / "pts68.npy")
        points[2, 20:] = np.nan
        np.save(build / "pts68.npy", points)
        boxes = np.array([[1, 2, 60, 70]] * 6, np.float32)
        np.save(build / "boxes.npy", boxes)
        sample = AFLW68Dataset(build, split="all")[2]
        assert sample.visible[:20].all() and not sample.visible[20:].any()
        np.testing.assert_array_equal(sample.landmarks_img[:20], points[2, :20])
        np.testing.assert_allclose(sample.box, boxes[2])
        boxes[4] = [5, 5, 5, 9]
        np.save(build / "boxes.npy", boxes)
        with pytest.raises(DataError, match=r"boxes.npy \[row 4, .*\]: box .* is not finite with x1 > x0"):
            AFLW68Dataset(build, split="all")
        np.save(build / "boxes.npy", boxes[:5])
        with pytest.raises(DataError, match=r"boxes.npy: array has shape \(5, 4\); expected 6 x 4"):
            AFLW68Dataset(build, split="all")


# ------------------------------------------------------------------------------------------ build script


class TestBuildHelpers:
    def test_dlib_rectangle_round_trip(self):
        script = load_script("build_aflw68")
        box = script.dlib_rect_to_box((10, 20, 89, 99))
        np.testing.assert_array_equal(box, [9.5, 19.5, 89.5, 99.5])  # 80 x 80 pixels
        assert script.box_to_dlib_rect(box) == (10, 20, 89, 99)

    def test_teacher_box_and_calibration(self):
        script = load_script("build_aflw68")
        reference = np.array([[10.0, 20.0, 50.0, 100.0], [0.0, 0.0, 60.0, 40.0]])
        boxes = script.teacher_boxes(reference, 1.2, (0.1, -0.1))
        # s = 80: centre (30, 60) + (8, -8), side 96; s = 60: centre (30, 20) + (6, -6), side 72
        np.testing.assert_allclose(boxes, [[-10, 4, 86, 100], [0, -22, 72, 50]])
        rects = [[script.box_to_dlib_rect(b)] for b in boxes] * 10
        result = script.calibrate(np.tile(reference, (10, 1)), rects)
        assert result["faces_used"] == 20 and result["scale"] == pytest.approx(1.2)
        np.testing.assert_allclose(result["offset"], [0.1, -0.1], atol=0.5 / 60)  # rectangles: nearest pixels

    def test_silhouette_and_keep_rule(self):
        script = load_script("build_aflw68")
        human = np.zeros((2, 21, 2))
        human[:, :, 0] = np.linspace(40, 80, 21)
        human[:, :, 1] = np.linspace(0, 50, 21)
        human[:, 14, 0] = 41  # nose tip on the left: both faces turn to the image left
        visible = np.ones((2, 21), bool)
        teacher = np.zeros((2, 68, 2))
        teacher[:, :, 0] = np.linspace(45, 85, 68)
        teacher[:, :, 1] = np.linspace(0, 100, 68)  # box 40 x 100: size sqrt(4000)
        teacher[1, 40, 0] = 30  # an eye point 10 px past the outline
        overshoot = script.silhouette_overshoot(teacher, human, visible)
        inner_min = 45 + 17 * 40 / 67  # point 17, the first inner point
        np.testing.assert_allclose(overshoot, [(40 - inner_min) / np.sqrt(4000), 10 / np.sqrt(55 * 100)])
        visible[0, 14] = False
        assert np.isinf(script.silhouette_overshoot(teacher, human, visible)[0])
        args = SimpleNamespace(max_yaw=60, tolerance=0.06, silhouette_margin=0.05, silhouette_min_yaw=30)
        reasons = script.keep_reasons(
            np.array([10, 40, -40, 70, 20]), np.array([0.05, 0.05, 0.07, 0.01, 0.05]), np.array([1, 1, 0, 0, 1]), args
        )
        assert reasons.tolist() == ["", "silhouette", "agreement", "yaw", ""]


class TestExtendHuman:
    """Helpers of scripts/extend_aflw68_human.py."""

    script = load_script("extend_aflw68_human")

    def test_single_counterparts(self):
        assert self.script.SINGLE_COUNTERPART == {
            0: 17, 1: 19, 2: 21, 3: 22, 4: 24, 5: 26, 6: 36, 8: 39, 9: 42, 11: 45, 13: 31, 14: 30, 15: 35, 17: 48,
            19: 54, 20: 8,
        }  # fmt: skip

    @pytest.mark.parametrize("yaw", [45.0, -70.0])
    def test_box_terms_round_trip(self, yaw):
        ref = np.array([10.0, 20.0, 50.0, 80.0])  # longer side 60
        box68 = np.array([4.0, 21.0, 58.0, 83.0])
        terms = self.script.box_terms(box68, ref, yaw)
        assert terms[0] == pytest.approx(np.sign(yaw) * (31 - 30) / 60) and terms[2] == pytest.approx(54 / 60)
        np.testing.assert_allclose(self.script.predicted_box(ref, terms, yaw), box68, atol=1e-5)
        mirrored = self.script.predicted_box(ref, terms, -yaw)  # the other turn: the shift changes side
        assert (mirrored[0] + mirrored[2]) / 2 == pytest.approx(29.0)
