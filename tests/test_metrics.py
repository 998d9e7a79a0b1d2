from __future__ import annotations

import numpy as np
import pytest

from awing.landmarks import get_scheme
from awing.metrics import auc, ced_curve, failure_rate, nme, norm_distance

# Normalisation groups written out from methods.md §5.1, independently of awing.landmarks.
EXPECTED_GROUPS = {
    "68": {"inter_ocular": ((36,), (45,)), "inter_pupil": (tuple(range(36, 42)), tuple(range(42, 48)))},
    "98": {"inter_ocular": ((60,), (72,)), "inter_pupil": ((96,), (97,))},
    "29": {"inter_ocular": ((8,), (9,)), "inter_pupil": ((16,), (17,))},
}


def _two_images() -> tuple[np.ndarray, np.ndarray]:
    """Hand-made 68-point case. Image 0: 36 = (10, 20), 45 = (70, 100), other points at 0; errors 5 (point 0) and
    6 (point 1). Image 1: 45 = (30, 40), other points at 0; every point off by (6, 8), i.e. error 10."""
    gt = np.zeros((2, 68, 2))
    gt[0, 36], gt[0, 45], gt[1, 45] = (10, 20), (70, 100), (30, 40)
    pred = gt.copy()
    pred[0, 0] += (3, 4)
    pred[0, 1] += (0, 6)
    pred[1] += (6, 8)
    return pred, gt


class TestNME:
    def test_smoke(self):
        pred, gt = _two_images()
        out = nme(pred.astype(np.float32), gt.astype(np.float32))
        assert out.shape == (2,) and out.dtype == np.float64

    @pytest.mark.parametrize(
        ("norm", "expected"),
        [
            # d = |(60, 80)| = 100 and |(30, 40)| = 50
            ("inter_ocular", [11 / 68 / 100, 10 / 50]),
            # eye centroids: (10, 20) / 6 and (70, 100) / 6, so d = 100 / 6; image 1: 50 / 6
            ("inter_pupil", [11 / 68 / (100 / 6), 10 / (50 / 6)]),
            # tight box of the ground truth: 70 x 100 and 30 x 40
            ("box", [11 / 68 / np.sqrt(70 * 100), 10 / np.sqrt(30 * 40)]),
        ],
    )
    def test_hand_computed(self, norm, expected):
        pred, gt = _two_images()
        np.testing.assert_allclose(nme(pred, gt, norm=norm), expected, rtol=1e-12)

    def test_visible(self):
        pred, gt = _two_images()
        visible = np.ones((2, 68), dtype=bool)
        visible[0, 1] = False  # the 6-px error no longer counts: mean over 67 points
        gt[0, 1] = np.nan  # invisible points may be missing
        np.testing.assert_allclose(nme(pred, gt, visible=visible), [5 / 67 / 100, 10 / 50], rtol=1e-12)
        visible[0, 45] = False  # image 0's box now spans the visible points (0, 0) and (10, 20)
        expected = [5 / 66 / np.sqrt(10 * 20), 10 / np.sqrt(30 * 40)]
        np.testing.assert_allclose(nme(pred, gt, norm="box", visible=visible), expected, rtol=1e-12)
        visible[1, 45] = False  # image 1's visible points all sit at (0, 0)
        with pytest.raises(ValueError, match="image 1: box normalisation distance is 0"):
            nme(pred, gt, norm="box", visible=visible)

    @pytest.mark.parametrize("name", sorted(EXPECTED_GROUPS))
    @pytest.mark.parametrize("norm", ["inter_ocular", "inter_pupil"])
    def test_scheme_indices(self, name, norm):
        rng = np.random.default_rng(0)
        K = get_scheme(name).num_points
        gt = rng.uniform(0, 100, size=(1, K, 2))
        left, right = EXPECTED_GROUPS[name][norm]
        d = norm_distance(gt, norm)  # scheme inferred from K
        expected = np.linalg.norm(gt[0, list(left)].mean(0) - gt[0, list(right)].mean(0))
        np.testing.assert_allclose(d, [expected], rtol=1e-12)
        for k in range(K):
            moved = gt.copy()
            moved[0, k] += (7.0, -3.0)
            changed = not np.isclose(norm_distance(moved, norm, scheme=name)[0], d[0], rtol=1e-12)
            assert changed == (k in left + right), f"point {k}"

    def test_scheme_argument(self):
        pred, gt = _two_images()
        np.testing.assert_array_equal(nme(pred, gt, scheme="300w"), nme(pred, gt, scheme=get_scheme(68)))

    def test_box_any_k(self):
        gt = np.array([[[0.0, 0.0], [4.0, 9.0], [2.0, 1.0]]])
        pred = gt + [[[3.0, 4.0], [0.0, 0.0], [0.0, 0.0]]]
        np.testing.assert_allclose(nme(pred, gt, norm="box"), [5 / 3 / 6])

    def test_errors(self):
        pred, gt = _two_images()
        with pytest.raises(ValueError, match=r"same shape .* \(2, 67, 2\) and \(2, 68, 2\)"):
            nme(pred[:, :67], gt)
        with pytest.raises(ValueError, match=r"\(N, K, 2\)"):
            nme(pred[0], gt[0])
        with pytest.raises(ValueError, match=r"visible must have shape \(N, K\)"):
            nme(pred, gt, visible=np.ones(68, dtype=bool))
        with pytest.raises(TypeError, match="bool"):
            nme(pred, gt, visible=np.ones((2, 68)))
        with pytest.raises(ValueError, match="valid K: 5, 19, 21, 29, 68, 98"):
            nme(np.zeros((1, 7, 2)), np.ones((1, 7, 2)))
        with pytest.raises(ValueError, match="scheme '98' has 98 points, landmarks have 68"):
            nme(pred, gt, scheme="wflw")
        with pytest.raises(ValueError, match="unknown norm 'iod'; valid: inter_ocular, inter_pupil, box"):
            nme(pred, gt, norm="iod")
        with pytest.raises(ValueError, match="image 1: non-finite prediction"):
            nme(np.where(np.arange(2)[:, None, None] == 1, np.nan, pred), gt, norm="box")
        gt[1, 45] = gt[1, 36]
        with pytest.raises(ValueError, match="image 1: inter_ocular normalisation distance is 0"):
            nme(pred, gt)
        with pytest.raises(ValueError, match="image 0: no visible landmark"):
            nme(pred, gt, visible=np.zeros((2, 68), dtype=bool))


NMES = [0.0, 0.05, 0.1, 0.1001, 0.2]


class TestFailureRate:
    def test_hand_computed(self):
        assert failure_rate(NMES) == 2 / 5  # 0.1 itself is not a failure
        assert failure_rate(NMES, threshold=0.08) == 3 / 5
        assert failure_rate([0.5]) == 1.0

    def test_errors(self):
        with pytest.raises(ValueError, match="non-empty 1-D"):
            failure_rate([])
        with pytest.raises(ValueError, match="non-empty 1-D"):
            failure_rate(np.zeros((2, 2)))
        with pytest.raises(ValueError, match="finite and non-negative"):
            failure_rate([0.1, np.nan])
        with pytest.raises(ValueError, match="threshold"):
            failure_rate([0.1], threshold=0.0)


class TestCEDCurve:
    def test_endpoints(self):
        x, y = ced_curve(NMES)
        assert x.shape == y.shape == (1001,)
        assert x[0] == 0.0 and x[-1] == 0.1 and x[500] == 0.05
        np.testing.assert_allclose(np.diff(x), 1e-4, rtol=1e-9)
        assert y[0] == 1 / 5 and y[499] == 1 / 5 and y[500] == 2 / 5
        assert y[-1] == 3 / 5 == 1 - failure_rate(NMES)
        assert np.all(np.diff(y) >= 0)

    def test_other_grid(self):
        x, y = ced_curve(NMES, threshold=0.05, step=1e-3)
        assert x.shape == (51,) and x[-1] == 0.05 and y[-1] == 2 / 5

    def test_errors(self):
        with pytest.raises(ValueError, match="whole multiple"):
            ced_curve(NMES, threshold=0.1, step=3e-4)
        with pytest.raises(ValueError, match="step"):
            ced_curve(NMES, step=0.0)


class TestAUC:
    def test_perfect(self):
        assert auc(np.zeros(10)) == 1.0

    def test_first_step(self):
        # CED = 0 at x = 0 and 1 elsewhere; composite Simpson weights h/3 (1, 4, 2, ..., 4, 1) sum to 3n, so the
        # missing first weight leaves (3n - 1) / (3n) with n = 1000 intervals
        assert auc(np.full(4, 1e-9)) == pytest.approx(2999 / 3000, abs=1e-12)

    def test_all_failures(self):
        assert auc([0.3, 0.11]) == 0.0

    @pytest.mark.parametrize(("high", "expected"), [(0.2, 0.25), (0.05, 0.75), (0.1, 0.5)])
    def test_uniform(self, high, expected):
        # NME ~ U(0, high): CED(x) = min(x / high, 1); AUC = (1 / 0.1) * integral_0^0.1 CED(x) dx
        nmes = (np.arange(20000) + 0.5) / 20000 * high
        assert auc(nmes) == pytest.approx(expected, abs=1e-3)

    def test_threshold(self):
        # a point mass at 0.02505 (between grid points): AUC@0.05 = 1 - 0.02505 / 0.05
        assert auc([0.02505], threshold=0.05) == pytest.approx(1 - 0.02505 / 0.05, abs=1e-3)
