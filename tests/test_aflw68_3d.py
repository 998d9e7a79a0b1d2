"""AFLW68-3D: the teacher's 68 points against the human AFLW points on the real crops, and the blend rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from awing.data import build_dataset
from awing.data.aflw import aflw_crop_points
from awing.data.aflw68 import AFLW21_SHARED, shared_points_68
from awing.data.aflw68_3d import HUMAN_TARGETS, HUMAN_WEIGHT, MAX_DISAGREEMENT, TEACHER_FILE, blend_human, human_bias

AFLW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aflw-21"
needs_aflw = pytest.mark.skipif(not (AFLW / TEACHER_FILE).is_file(), reason="../shared/data/aflw-21 is absent")


def test_blend_moves_only_visible_human_points_by_the_weight() -> None:
    rng = np.random.default_rng(0)
    teacher = rng.uniform(10, 100, (3, 68, 2))
    human = rng.uniform(10, 100, (3, 21, 2))
    visible = rng.random((3, 21)) < 0.5
    bias = np.zeros((len(HUMAN_TARGETS), 2))
    target = blend_human(teacher, human, visible, bias)
    moved = {m for k, m in HUMAN_TARGETS.items()}
    untouched = [i for i in range(68) if i not in moved]
    np.testing.assert_array_equal(target[:, untouched], teacher[:, untouched])
    for k, m in HUMAN_TARGETS.items():
        expected = np.where(
            visible[:, k, None], (1 - HUMAN_WEIGHT) * teacher[:, m] + HUMAN_WEIGHT * human[:, k], teacher[:, m]
        )
        np.testing.assert_allclose(target[:, m], expected, rtol=1e-12)


def test_human_bias_recovers_a_known_offset_and_is_removed_by_the_blend() -> None:
    rng = np.random.default_rng(1)
    teacher = rng.uniform(10, 100, (50, 68, 2))
    extent = teacher.max(axis=1) - teacher.min(axis=1)
    size = np.sqrt(extent[:, 0] * extent[:, 1])
    offset = np.array([0.03, -0.02])  # 3 % and -2 % of the box
    human = np.zeros((50, 21, 2))
    for k, m in HUMAN_TARGETS.items():
        human[:, k] = teacher[:, m] + offset * size[:, None]
    visible = np.ones((50, 21), bool)
    bias = human_bias(teacher, human, visible)
    np.testing.assert_allclose(bias, np.tile(offset, (len(HUMAN_TARGETS), 1)), atol=1e-12)
    np.testing.assert_allclose(blend_human(teacher, human, visible, bias), teacher, atol=1e-9)


@needs_aflw
@pytest.mark.slow
def test_teacher_points_agree_with_the_human_points_on_real_crops() -> None:
    """The loader's frame and point order: recomputing agree19 from the crops' human points gives the file's value."""
    names = (AFLW / "names.txt").read_text().split()
    raw = np.load(AFLW / "pts21.npy").transpose(0, 2, 1).astype(np.float64)
    roi = np.load(AFLW / "crop_roi_box.npy")
    with np.load(AFLW / TEACHER_FILE) as archive:
        teacher = archive["pts68_crop"].transpose(0, 2, 1).astype(np.float64)
        agree = archive["agree19"]
    rows = np.arange(0, len(names), 97)  # 178 faces spread over the set
    human = aflw_crop_points(raw[rows], roi[rows])[:, list(AFLW21_SHARED)]
    visible = raw[rows][:, list(AFLW21_SHARED), 0] >= 0
    dist = np.linalg.norm(shared_points_68(teacher[rows]) - human, axis=-1) / 120 * 100
    recomputed = np.array([d[v].mean() for d, v in zip(dist, visible, strict=True)])
    # The file's eye / mouth centres may be defined slightly differently: agree within 0.5 % of the crop.
    assert np.median(np.abs(recomputed - agree[rows])) < 0.5
    assert np.median(recomputed) < 4.0  # the teacher sits on the people's points, not beside them

    ds = build_dataset("aflw68-3d", AFLW, "val")
    assert 850 < len(ds) < 909  # the 909 CRC-32 validation faces less the disagreeing ones
    assert max(r.attributes["agreement"] for r in ds.records) <= MAX_DISAGREEMENT
    sample = ds[0]
    assert sample.image.shape == (120, 120, 3) and sample.landmarks_img.shape == (68, 2)
    np.testing.assert_allclose(sample.box, [*sample.landmarks_img.min(0), *sample.landmarks_img.max(0)], atol=1e-4)
