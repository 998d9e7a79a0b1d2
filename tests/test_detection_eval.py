from __future__ import annotations

import math

import numpy as np
import pytest

from awing.data.io import DataError
from awing.detection.data import make_detection_record
from awing.detection.evaluate import (
    SIMPLIFIED_WIDER_MIN_HEIGHT,
    WiderImage,
    average_precision,
    best_f1_threshold,
    evaluate_detections,
    find_wider_ground_truth,
    match_detections,
    precision_recall,
    read_wider_ground_truth,
    simplified_wider_subsets,
    wider_face_evaluation,
    wider_key,
)

# Two images, three faces (A, B in image 1; C in image 2) and four detections with known IoUs:
#   d1 0.9 = A exactly (IoU 1) -> TP;  d2 0.8 on A again (IoU 0.8) -> duplicate, FP;
#   d3 0.7 on C with IoU exactly 0.5 -> TP (the threshold is inclusive);  d4 0.6 on nothing -> FP;  B is missed.
# Ranked: precision 1, 1/2, 2/3, 1/2; recall 1/3, 1/3, 2/3, 2/3; envelope 1 up to 1/3, 2/3 up to 2/3:
# AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
GT = [
    (np.array([[0.0, 0, 10, 10], [20, 0, 30, 10]]), None),
    (np.array([[0.0, 0, 10, 10]]), None),
]
DETECTIONS = [
    {"boxes": np.array([[0.0, 0, 10, 10], [0, 0, 10, 8], [50, 50, 60, 60]]), "scores": np.array([0.9, 0.8, 0.6])},
    {"boxes": np.array([[0.0, 0, 10, 5]]), "scores": np.array([0.7])},
]


class TestMatchDetections:
    def test_hand_built(self):
        boxes = np.array([[0.0, 0, 10, 8], [50, 50, 60, 60], [0, 0, 10, 10], [20, 0, 30, 6]])  # IoUs 0.8, 0, 1, 0.6
        outcome, matched = match_detections(boxes, np.array([0.8, 0.6, 0.9, 0.7]), GT[0][0])
        # d(0.9) takes A, so d(0.8) on A is a duplicate; d(0.7) takes B at IoU 0.6; d(0.6) overlaps nothing
        np.testing.assert_array_equal(outcome, [0, 0, 1, 1])
        np.testing.assert_array_equal(matched, [True, True])

    def test_ignore_region(self):
        outcome, matched = match_detections(
            np.array([[20.0, 0, 30, 10], [0, 0, 10, 10]]), np.array([0.9, 0.8]), GT[0][0], np.array([False, True])
        )
        np.testing.assert_array_equal(outcome, [-1, 1])  # on the ignore region: neither TP nor FP
        np.testing.assert_array_equal(matched, [True, False])

    def test_require_centre(self):
        det = np.array([[0.0, 0, 10, 4]])  # IoU 0.4 with A, does not reach A's centre (5, 5)
        gt = GT[0][0][:1]
        assert match_detections(det, np.ones(1), gt, iou_threshold=0.3)[0].tolist() == [1]
        assert match_detections(det, np.ones(1), gt, iou_threshold=0.3, require_centre=True)[0].tolist() == [0]

    def test_empty(self):
        outcome, matched = match_detections(np.zeros((0, 4)), np.zeros(0), GT[0][0])
        assert outcome.shape == (0,) and matched.tolist() == [False, False]
        outcome, matched = match_detections(np.ones((2, 4)), np.ones(2), np.zeros((0, 4)))
        assert outcome.tolist() == [0, 0] and matched.shape == (0,)

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"det_boxes": np.ones((2, 3))}, "det_boxes must be"),
            ({"det_scores": np.ones(3)}, "one score per box"),
            ({"gt_ignore": np.zeros(3, bool)}, "one flag per box"),
            ({"iou_threshold": 0.0}, "iou_threshold"),
        ],
    )
    def test_errors(self, kwargs, message):
        args = {"det_boxes": np.ones((2, 4)), "det_scores": np.ones(2), "gt_boxes": GT[0][0], **kwargs}
        with pytest.raises(ValueError, match=message):
            match_detections(**args)


class TestAveragePrecision:
    def test_hand_value(self):
        assert average_precision(np.array([1, 1, 2, 2]) / 3, np.array([1, 1 / 2, 2 / 3, 1 / 2])) == pytest.approx(5 / 9)

    def test_perfect_and_empty(self):
        assert average_precision(np.array([0.5, 1.0]), np.array([1.0, 1.0])) == 1.0
        assert average_precision(np.zeros(0), np.zeros(0)) == 0.0
        assert math.isnan(average_precision(np.array([np.nan]), np.array([0.0])))

    def test_errors(self):
        with pytest.raises(ValueError, match="non-decreasing"):
            average_precision(np.array([0.5, 0.2]), np.array([1.0, 1.0]))
        with pytest.raises(ValueError, match="same shape"):
            average_precision(np.array([0.5]), np.array([1.0, 1.0]))

    def test_thresholded_curve(self):
        precision, recall, points = precision_recall(
            np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0]), 3, thresholds=np.array([0.95, 0.85, 0.65, 0.0])
        )
        np.testing.assert_allclose(points, [0.85, 0.65, 0.0])  # 0.95: no detection reaches it
        np.testing.assert_allclose(precision, [1, 2 / 3, 1 / 2])
        np.testing.assert_allclose(recall, [1 / 3, 2 / 3, 2 / 3])


class TestEvaluateDetections:
    def test_ap_exact(self):
        metrics = evaluate_detections(DETECTIONS, GT, score_threshold=None)
        assert metrics.ap == pytest.approx(5 / 9, abs=1e-12)
        assert (metrics.num_faces, metrics.num_images, metrics.num_detections) == (3, 2, 4)
        np.testing.assert_allclose(metrics.precision_curve, [1, 1 / 2, 2 / 3, 1 / 2])
        np.testing.assert_allclose(metrics.recall_curve, [1 / 3, 1 / 3, 2 / 3, 2 / 3])
        assert (metrics.recall, metrics.precision) == pytest.approx((2 / 3, 1 / 2))

    @pytest.mark.parametrize(
        ("threshold", "recall", "precision"),
        [(0.75, 1 / 3, 1 / 2), (0.7, 2 / 3, 2 / 3), (0.65, 2 / 3, 2 / 3), (0.0, 2 / 3, 1 / 2)],
    )
    def test_recall_at_threshold(self, threshold, recall, precision):
        metrics = evaluate_detections(DETECTIONS, GT, score_threshold=threshold)
        assert (metrics.recall, metrics.precision) == pytest.approx((recall, precision))

    def test_best_f1_threshold(self):
        """F1 along the ranked curve: 1/2, 2/5, 2/3, 4/7 -> the third detection's score 0.7, F1 2/3."""
        threshold, f1 = best_f1_threshold(evaluate_detections(DETECTIONS, GT, score_threshold=None))
        assert threshold == pytest.approx(0.7) and f1 == pytest.approx(2 / 3)
        empty = evaluate_detections([{"boxes": np.zeros((0, 4)), "scores": np.zeros(0)}], GT[1:], score_threshold=None)
        assert all(math.isnan(v) for v in best_f1_threshold(empty))

    def test_above_every_score(self):
        metrics = evaluate_detections(DETECTIONS, GT, score_threshold=0.95)
        assert metrics.recall == 0.0 and math.isnan(metrics.precision)
        assert metrics.to_dict()["precision"] is None

    def test_ignore_region_removes_detection(self):
        gt = [(np.array([[0.0, 0, 10, 10], [20, 0, 30, 10], [50, 50, 60, 60]]), np.array([False, False, True])), GT[1]]
        metrics = evaluate_detections(DETECTIONS, gt, score_threshold=None)
        assert (metrics.num_faces, metrics.num_detections) == (3, 3)
        assert metrics.ap == pytest.approx(5 / 9) and metrics.precision == pytest.approx(2 / 3)

    def test_iou_threshold(self):
        metrics = evaluate_detections(DETECTIONS, GT, iou_threshold=0.9, score_threshold=None)
        assert metrics.ap == pytest.approx(1 / 3)  # only d1 is a TP, and it ranks first

    def test_no_faces_and_errors(self):
        metrics = evaluate_detections([DETECTIONS[0]], [(np.zeros((0, 4)), None)])
        assert math.isnan(metrics.ap) and math.isnan(metrics.recall) and metrics.num_faces == 0
        with pytest.raises(ValueError, match="one entry per image"):
            evaluate_detections(DETECTIONS, GT[:1])
        with pytest.raises(TypeError, match="'boxes' and 'scores'"):
            evaluate_detections([{"boxes": np.zeros((0, 4))}], GT[:1])


# --- WIDER FACE ----------------------------------------------------------------------------------------------------


def wider_example() -> tuple[dict, dict]:
    """Image e/a: F1 in every subset, F2 only in hard; a high-scoring false positive ranks first.

    easy / medium (F2 ignored, so its detection is ignored): FP, TP -> precision 0, 1/2, recall 0, 1 -> AP 1/2.
    hard: FP, TP, TP -> precision 0, 1/2, 2/3; recall 0, 1/2, 1 -> envelope 2/3 -> AP 2/3.
    Image e/b has no faces: its detection counts nowhere (the official code skips such images).
    """
    always = np.array([True, False])
    gt = {
        "e/a": WiderImage(
            np.array([[0.0, 0, 9, 9], [20, 0, 29, 9]]), {"easy": always, "medium": always, "hard": np.ones(2, bool)}
        ),
        "e/b": WiderImage(np.zeros((0, 4)), {s: np.zeros(0, bool) for s in ("easy", "medium", "hard")}),
    }
    detections = {
        "e/a": {"boxes": np.array([[50.0, 50, 59, 59], [0, 0, 9, 9], [20, 0, 29, 9]]), "scores": [0.95, 0.9, 0.8]},
        "e/b": {"boxes": np.array([[0.0, 0, 9, 9]]), "scores": [0.99]},
    }
    return detections, gt


class TestWider:
    def test_hand_values(self):
        detections, gt = wider_example()
        aps = wider_face_evaluation(detections, gt)
        assert aps == pytest.approx({"easy": 1 / 2, "medium": 1 / 2, "hard": 2 / 3})

    def test_inclusive_pixel_iou(self):
        # [0, 0, 9, 4] vs [0, 0, 9, 9]: continuous IoU 36/81 = 0.44, inclusive (w + 1, h + 1) IoU 50/100 = 0.5
        gt = {"e/a": WiderImage(np.array([[0.0, 0, 9, 9]]), {"hard": np.ones(1, bool)})}
        detections = {"e/a": {"boxes": np.array([[0.0, 0, 9, 4]]), "scores": [0.5]}}
        assert wider_face_evaluation(detections, gt) == {"hard": 1.0}
        assert evaluate_detections([detections["e/a"]], [(gt["e/a"].boxes, None)]).ap == 0.0

    def test_score_scale_and_missing_images(self):
        detections, gt = wider_example()
        rescaled = {k: {**d, "scores": 10 * np.asarray(d["scores"]) - 3} for k, d in detections.items()}
        assert wider_face_evaluation(rescaled, gt) == pytest.approx(wider_face_evaluation(detections, gt))
        gt["e/c"] = WiderImage(np.array([[0.0, 0, 9, 9]]), {s: np.ones(1, bool) for s in ("easy", "medium", "hard")})
        assert wider_face_evaluation(detections, gt)["easy"] == pytest.approx(1 / 4)  # recall halves: one face unseen
        with pytest.raises(ValueError, match="not in the ground truth"):
            wider_face_evaluation({"x/y": detections["e/a"]}, gt)

    def test_simplified_subsets(self, tmp_path):
        heights = [60.0, 30.0, 12.0, 5.0, 80.0]
        boxes = np.array([[0.0, 0, 10, h] for h in heights])
        record = make_detection_record(
            tmp_path / "0--Parade" / "x.jpg", boxes, ignore=np.array([False, False, False, False, True])
        )
        image = simplified_wider_subsets([record])["0--Parade/x"]
        assert SIMPLIFIED_WIDER_MIN_HEIGHT == {"easy": 50.0, "medium": 25.0, "hard": 10.0}
        assert image.keep["easy"].tolist() == [True, False, False, False, False]
        assert image.keep["medium"].tolist() == [True, True, False, False, False]
        assert image.keep["hard"].tolist() == [True, True, True, False, False]
        assert wider_key("/data/WIDER_val/images/0--Parade/x.jpg") == "0--Parade/x"

    def test_read_official_mat(self, tmp_path):
        from scipy.io import savemat

        def cell(items):
            out = np.empty((len(items), 1), dtype=object)
            for i, item in enumerate(items):
                out[i, 0] = item
            return out

        savemat(
            tmp_path / "wider_face_val.mat",
            {
                "event_list": cell(["0--Parade", "1--Handshaking"]),
                "file_list": cell([cell(["a", "b"]), cell(["c"])]),
                "face_bbx_list": cell(
                    [
                        cell([np.array([[1.0, 2, 10, 20], [30, 40, 5, 6]]), np.array([[0.0, 0, 4, 4]])]),
                        cell([np.zeros((0, 4))]),
                    ]
                ),
            },
        )
        for name, lists in {
            "easy": [[np.array([[1]]), np.zeros((0, 1))], [np.zeros((0, 1))]],
            "medium": [[np.array([[1]]), np.array([[1]])], [np.zeros((0, 1))]],
            "hard": [[np.array([[1], [2]]), np.array([[1]])], [np.zeros((0, 1))]],
        }.items():
            savemat(tmp_path / f"wider_{name}_val.mat", {"gt_list": cell([cell(x) for x in lists])})
        assert find_wider_ground_truth(tmp_path) == tmp_path
        gt = read_wider_ground_truth(tmp_path)
        assert sorted(gt) == ["0--Parade/a", "0--Parade/b", "1--Handshaking/c"]
        np.testing.assert_array_equal(gt["0--Parade/a"].boxes, [[1, 2, 11, 22], [30, 40, 35, 46]])
        assert {s: k.tolist() for s, k in gt["0--Parade/a"].keep.items()} == {
            "easy": [True, False],
            "medium": [True, False],
            "hard": [True, True],
        }
        assert gt["0--Parade/b"].keep["easy"].tolist() == [False] and gt["1--Handshaking/c"].boxes.shape == (0, 4)
        bad = cell([cell([np.array([[3]]), np.zeros((0, 1))]), cell([np.zeros((0, 1))])])
        savemat(tmp_path / "wider_hard_val.mat", {"gt_list": bad})
        with pytest.raises(DataError, match="indexes face 3 of 2"):
            read_wider_ground_truth(tmp_path)

    def test_ground_truth_folder(self, tmp_path):
        assert find_wider_ground_truth(tmp_path) is None
        with pytest.raises(FileNotFoundError, match="wider_face_val.mat"):
            find_wider_ground_truth(tmp_path, tmp_path)
        with pytest.raises(DataError, match="datasets/wider-face/README.md"):
            read_wider_ground_truth(tmp_path)
