"""scripts/build_distill_set.py: dense AFLW mosaics put each crop's face box in its own tile, and hard-negative
mining keeps the pool's negatives with the highest detector scores."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from script_loader import load_script

from awing.aligner import BUNDLED_DETECTOR
from awing.data import AFLWDataset, aflw_is_validation
from awing.detection import FaceDetector
from awing.detection.negatives import TRAIN_SEED, negative_image


@pytest.fixture(scope="module")
def script():
    return load_script("build_distill_set")


def test_dense_mosaic_tiles(script, tmp_path):
    names = [n for n in (f"image{i:05d}.jpg" for i in range(60)) if not aflw_is_validation(n)][:20]
    (tmp_path / "crops").mkdir()
    for k, name in enumerate(names):  # each crop a flat grey of its own level, so a tile tells its crop
        assert cv2.imwrite(str(tmp_path / "crops" / name), np.full((120, 120, 3), 10 * (k + 1), np.uint8))
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    pts = np.random.default_rng(0).uniform(30, 90, size=(len(names), 2, 21)).astype(np.float32)
    np.save(tmp_path / "pts21.npy", pts)
    np.save(tmp_path / "crop_roi_box.npy", np.tile(np.array([0, 0, 120, 120], np.float32), (len(names), 1)))
    np.save(tmp_path / "yaw_deg.npy", np.zeros(len(names), np.float32))
    background = np.zeros((480, 640, 3), np.uint8)
    ((name, image, boxes),) = script.dense_aflw_images(tmp_path, 1, np.random.default_rng(1), iter([background]))
    assert name == "aflw_dense_0000" and image.shape == (480, 640, 3)
    assert script.DENSE_GRIDS[0] == (4, 5) and boxes.shape == (20, 4)
    faces = AFLWDataset(tmp_path, "train")
    by_level = {int(faces[i].image[0, 0, 0]): i for i in range(len(faces))}
    for t, box in enumerate(boxes):  # 128 x 120 tiles: a 120 px crop fits at scale 1, centred 4 px in
        dx, dy = 128 * (t % 5) + 4, 120 * (t // 5)
        face = faces[by_level[int(image[dy + 60, dx + 60, 0])]]
        expected = np.clip(script.aflw_face_box(face.landmarks_img, face.visible), 0, 119) + [dx, dy, dx, dy]
        np.testing.assert_allclose(box, expected, atol=1e-3)


def test_hard_negatives_are_the_highest_scoring(script):
    detector = FaceDetector.from_weights(BUNDLED_DETECTOR, score_threshold=0.01, threads=1)
    pool = range(script.POOL_OFFSET, script.POOL_OFFSET + 6)
    best = [float(np.max(detector.detect(negative_image(TRAIN_SEED, i))["scores"], initial=0.0)) for i in pool]
    mined = script.hard_negatives(2, 6, BUNDLED_DETECTOR, threads=1)
    assert len(mined) == 2 and set(mined) <= set(pool)
    assert min(best[i - script.POOL_OFFSET] for i in mined) >= max(
        best[i - script.POOL_OFFSET] for i in pool if i not in mined
    )
