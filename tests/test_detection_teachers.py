"""Reference detectors (ULFD, YuNet) on a real photo with human boxes; skipped without ../shared/models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from awing.data.io import read_image
from awing.detection import box_iou, read_dlib_xml
from awing.detection.teachers import TEACHER_FILES, build_teacher

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models" / "face-detectors"


@pytest.fixture
def photo(shared_data):
    records = read_dlib_xml(shared_data / "fixtures" / "dlib-faces" / "examples" / "faces" / "testing.xml")
    record = next(r for r in records if Path(r.image_path).name == "2008_002470.jpg")
    return read_image(record.image_path), record.boxes


@pytest.mark.parametrize("name", list(TEACHER_FILES))
def test_teacher_finds_the_faces_of_a_group_photo(name, photo):
    if not (MODELS / TEACHER_FILES[name]).is_file():
        pytest.skip(f"{MODELS / TEACHER_FILES[name]} not found")
    import torch

    image, human = photo
    teacher = build_teacher(name, MODELS, 0.5, threads=1)
    (found,) = teacher.detect_batch([image])
    assert found["boxes"].dtype == np.float32 and found["boxes"].shape == (len(found["scores"]), 4)
    assert (np.diff(found["scores"]) <= 0).all()  # by decreasing score
    iou = box_iou(torch.from_numpy(found["boxes"]), torch.from_numpy(human)).numpy()
    # dlib's tight squares against WIDER-style boxes: IoU 0.3 is the same face here
    assert (iou.max(axis=0) >= 0.3).sum() >= len(human) - 1, iou.max(axis=0)
    (empty,) = teacher.detect_batch([np.full((240, 320, 3), 128, np.uint8)])
    assert len(empty["boxes"]) == 0


def test_unknown_and_missing(tmp_path):
    with pytest.raises(ValueError, match="valid names"):
        build_teacher("retinaface", tmp_path, 0.5)
    with pytest.raises(FileNotFoundError, match="version-RFB-320.onnx"):
        build_teacher("ulfd320", tmp_path, 0.5)
