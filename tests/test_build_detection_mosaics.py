"""scripts/build_detection_mosaics.py on a fake AFLW-21 root: mosaic tiles and single crops hold the right faces at
the right boxes, each face is used once, and the face-mask files are linked."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from script_loader import load_script

from awing.data import AFLWDataset, aflw_is_validation
from awing.detection.data import build_detection_dataset


@pytest.fixture(scope="module")
def script():
    return load_script("build_detection_mosaics")


@pytest.fixture
def roots(script, tmp_path) -> tuple[Path, Path]:
    """An AFLW-21 root with 6 training crops, each a flat grey of its own level, and a one-image face-mask root."""
    names = [n for n in (f"image{i:05d}.jpg" for i in range(40)) if not aflw_is_validation(n)][:6]
    aflw = tmp_path / "aflw"
    (aflw / "crops").mkdir(parents=True)
    for k, name in enumerate(names):
        assert cv2.imwrite(str(aflw / "crops" / name), np.full((120, 120, 3), 30 * (k + 1), np.uint8))
    (aflw / "names.txt").write_text("\n".join(names) + "\n")
    rng = np.random.default_rng(0)
    pts = rng.uniform(30, 90, size=(len(names), 2, 21))  # ROI (0, 0, 120, 120): crop pixels = image pixels
    np.save(aflw / "pts21.npy", pts.astype(np.float32))
    np.save(aflw / "crop_roi_box.npy", np.tile(np.array([0, 0, 120, 120], np.float32), (len(names), 1)))
    np.save(aflw / "yaw_deg.npy", np.zeros(len(names), np.float32))
    mask = tmp_path / "mask"
    voc = script.voc_xml("maksssksksss0.png", 8, [np.array([1, 1, 5, 5])])
    for sub, name, text in (("images", "maksssksksss0.png", None), ("annotations", "maksssksksss0.xml", voc)):
        (mask / sub).mkdir(parents=True)
        if text is None:
            assert cv2.imwrite(str(mask / sub / name), np.zeros((8, 8, 3), np.uint8))
        else:
            (mask / sub / name).write_text(text)
    return aflw, mask


def test_mosaics_and_singles(script, roots, tmp_path):
    aflw, mask = roots
    out = tmp_path / "mix"
    assert script.main(["--aflw", str(aflw), "--face-mask", str(mask), "--out", str(out), "--count", "1",
                        "--singles", "2"]) == 0  # fmt: skip
    assert (out / "images" / "maksssksksss0.png").is_symlink()
    faces = AFLWDataset(aflw, "train")
    order = np.random.default_rng(0).permutation(len(faces))  # the script's face order for --seed 0
    levels = {int(faces[i].image[0, 0, 0]): i for i in range(len(faces))}
    records = {
        Path(r.image_path).stem: r for split in ("train", "val") for r in build_detection_dataset(
            "face_mask", out, split).records if Path(r.image_path).stem.startswith("aflw_")
    }  # fmt: skip
    assert sorted(records) == ["aflw_mosaic_00000", "aflw_single_00000", "aflw_single_00001"]

    mosaic = cv2.imread(str(out / "images" / "aflw_mosaic_00000.jpg"))
    assert mosaic.shape == (240, 240, 3)
    used = []
    for t, box in enumerate(records["aflw_mosaic_00000"].boxes):
        dy, dx = 120 * (t // 2), 120 * (t % 2)
        face = faces[levels[int(np.median(mosaic[dy : dy + 120, dx : dx + 120, 0]) + 15) // 30 * 30]]
        expected = np.clip(script.aflw_face_box(face.landmarks_img, face.visible), 0, 119) + [dx, dy, dx, dy]
        np.testing.assert_allclose(box, np.round(expected), atol=1.0)  # VOC stores rounded 1-based corners
        used.append(levels[int(face.image[0, 0, 0])])
    for m in range(2):
        single = cv2.imread(str(out / "images" / f"aflw_single_{m:05d}.jpg"))
        assert single.shape == (120, 120, 3)
        index = levels[(int(np.median(single[..., 0])) + 15) // 30 * 30]
        (box,) = records[f"aflw_single_{m:05d}"].boxes
        expected = np.clip(script.aflw_face_box(faces[index].landmarks_img, faces[index].visible), 0, 119)
        np.testing.assert_allclose(box, np.round(expected), atol=1.0)
        used.append(index)
    assert used == [int(i) for i in order[:6]]  # four mosaic tiles, then the singles: six different faces
