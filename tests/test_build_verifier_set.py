"""scripts/build_verifier_set.py (proposal labels) and scripts/train_verifier.py (a two-stage detector file)."""

from __future__ import annotations

import numpy as np
import torch
from script_loader import load_script

from awing.detection import DetectorModelConfig, FaceDetectorNet, load_detector, save_detector
from awing.detection.verifier import crop_squares, encode_offsets

build = load_script("build_verifier_set")
train = load_script("train_verifier")


def test_proposal_labels_follow_iou_and_ignore_regions():
    faces = np.array([[0.0, 0, 100, 100]], np.float32)
    ignore = np.array([[300.0, 300, 340, 340]], np.float32)
    proposals = np.array(
        [
            [0, 0, 90, 100],  # IoU 0.9: face
            [0, 0, 60, 100],  # 0.6: face
            [0, 0, 40, 100],  # 0.4: part (offsets only)
            [0, 0, 20, 100],  # 0.2: non-face
            [305, 300, 340, 340],  # on an ignore region: dropped
            [500, 500, 540, 540],  # nowhere: non-face
            [-50, -50, 150, 150],  # IoU 0.25, but twice the face around its centre: part
            [-100, -100, 200, 200],  # three times the face: non-face
        ],
        np.float32,
    )
    labels, match = build.label_proposals(proposals, faces, ignore)
    assert labels.tolist() == [1, 1, -1, 0, -2, 0, -1, 0]
    assert match[[0, 1, 2, 6]].tolist() == [0, 0, 0, 0]
    assert build.label_proposals(proposals, faces[:0], ignore[:0])[0].tolist() == [0] * 8


def test_jittered_boxes_stay_near_their_face():
    faces = np.array([[10.0, 10, 60, 80], [100, 50, 130, 90]], np.float32)
    moved = build.jittered(faces, np.random.default_rng(0))
    size = faces[:, 2:] - faces[:, :2]
    centre_shift = np.abs((moved[:, :2] + moved[:, 2:]) / 2 - (faces[:, :2] + faces[:, 2:]) / 2)
    assert (centre_shift <= 0.1 * size + 1e-4).all()
    ratio = (moved[:, 2:] - moved[:, :2]) / size
    assert (ratio >= 0.85 - 1e-5).all() and (ratio <= 1.2 + 1e-5).all()
    np.testing.assert_allclose(ratio[:, 0], ratio[:, 1], rtol=1e-5)  # one scale for both sides


def test_train_writes_a_two_stage_detector(tmp_path, one_thread):  # one_thread restores the count main() sets
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.concatenate([rng.uniform(0, 100, (32, 2)), np.zeros((32, 2))], 1)
    boxes[:, 2:] = boxes[:, :2] + rng.uniform(20, 50, (32, 1))
    crops, squares = crop_squares(image, boxes)
    labels = np.array([1, 0, -1, 0] * 8, np.int8)
    offsets = np.where(labels[:, None] != 0, encode_offsets(squares, boxes), np.nan).astype(np.float32)
    for split in ("train", "val"):
        np.savez(tmp_path / f"{split}.npz", crops=crops, labels=labels, offsets=offsets)
    torch.manual_seed(0)
    small = FaceDetectorNet(DetectorModelConfig(fpn_channels=8, context=False))
    first = save_detector(small, tmp_path / "first.safetensors")
    out = tmp_path / "both.safetensors"
    args = ["--data", str(tmp_path), "--detector", str(first), "--out", str(out), "--epochs", "1", "--batch-size", "16"]
    assert train.main([*args, "--proposal-threshold", "0.2", "--threads", "1"]) == 0
    model, settings = load_detector(out)
    first_model, _ = load_detector(first)
    assert model.verifier is not None and settings.proposal_threshold == 0.2
    torch.testing.assert_close(model.heads[0].weight, first_model.heads[0].weight)  # the first stage is unchanged
    assert not list(tmp_path.glob("*.partial*"))
