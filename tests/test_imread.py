"""Tests of the one image reader (awing.data.io.read_image: EXIF orientation parsed and applied by awing, robust
loading) and of awing.imread (caller arrays, folder listing)."""

from __future__ import annotations

import dataclasses
import json
import struct

import cv2
import numpy as np
import pytest
import torch

from awing.data.io import DataError, apply_orientation, jpeg_orientation, read_image
from awing.imread import as_rgb_image, list_images


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _exif(orientation: int, order: str = "<", kind: int = 3, extra_tag: bool = True) -> bytes:
    """APP1 EXIF segment: IFD0 with an unrelated ASCII tag (0x010F) first, then the orientation tag (0x0112)."""
    entries = []
    if extra_tag:
        entries.append(struct.pack(order + "HHI", 0x010F, 2, 4) + b"abc\x00")
    entries.append(struct.pack(order + "HHIH", 0x0112, kind, 1, orientation) + b"\x00\x00")
    ifd = struct.pack(order + "H", len(entries)) + b"".join(entries) + struct.pack(order + "I", 0)
    tiff = (b"II" if order == "<" else b"MM") + struct.pack(order + "HI", 42, 8) + ifd
    return _segment(0xE1, b"Exif\x00\x00" + tiff)


def _jpeg(image_rgb: np.ndarray, quality: int = 100) -> bytes:
    ok, buffer = cv2.imencode(".jpg", np.ascontiguousarray(image_rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buffer.tobytes()


def _with_exif(jpeg: bytes, segment: bytes, after_app0: bool = True) -> bytes:
    """Insert ``segment`` after OpenCV's APP0 (JFIF) segment, or right after SOI."""
    pos = 2 + (2 + int.from_bytes(jpeg[4:6], "big") if after_app0 and jpeg[2:4] == b"\xff\xe0" else 0)
    return jpeg[:pos] + segment + jpeg[pos:]


@pytest.fixture
def pattern() -> np.ndarray:
    """An asymmetric 24 x 40 RGB picture (smooth, so JPEG keeps it close)."""
    y, x = np.mgrid[0:24, 0:40]
    return np.stack([x * 6, y * 10, (x + 2 * y) * 2], axis=-1).astype(np.uint8)


class TestJpegOrientation:
    @pytest.mark.parametrize("order", ["<", ">"])
    @pytest.mark.parametrize("value", range(1, 9))
    def test_reads_both_byte_orders(self, pattern, order, value):
        assert jpeg_orientation(_with_exif(_jpeg(pattern), _exif(value, order))) == value

    def test_before_app0_too(self, pattern):
        assert jpeg_orientation(_with_exif(_jpeg(pattern), _exif(6), after_app0=False)) == 6

    def test_first_entry(self, pattern):
        assert jpeg_orientation(_with_exif(_jpeg(pattern), _exif(3, extra_tag=False))) == 3

    @pytest.mark.parametrize(
        "segment",
        [
            b"",  # no EXIF
            _exif(9),  # out of range
            _exif(0),
            _exif(6, kind=4),  # a LONG, not a SHORT
            _segment(0xE1, b"Exif\x00\x00II\x2b\x00\x08\x00\x00\x00"),  # wrong TIFF magic
            _segment(0xE1, b"Exif\x00\x00II\x2a\x00\xff\x00\x00\x00"),  # IFD offset past the end
            _segment(0xE1, b"Exif\x00\x00XX"),  # unknown byte order
            _segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00<x/>"),  # XMP, not EXIF
        ],
    )
    def test_absent_or_malformed_is_one(self, pattern, segment):
        assert jpeg_orientation(_with_exif(_jpeg(pattern), segment)) == 1

    def test_not_a_jpeg(self):
        assert jpeg_orientation(b"\x89PNG\r\n\x1a\n") == 1
        assert jpeg_orientation(b"") == 1


class TestApplyOrientation:
    # the 2 x 3 picture [[0, 1, 2], [3, 4, 5]] as a viewer shows it for each orientation
    EXPECTED = {
        1: [[0, 1, 2], [3, 4, 5]],
        2: [[2, 1, 0], [5, 4, 3]],
        3: [[5, 4, 3], [2, 1, 0]],
        4: [[3, 4, 5], [0, 1, 2]],
        5: [[0, 3], [1, 4], [2, 5]],
        6: [[3, 0], [4, 1], [5, 2]],
        7: [[5, 2], [4, 1], [3, 0]],
        8: [[2, 5], [1, 4], [0, 3]],
    }

    @pytest.mark.parametrize("value", range(1, 9))
    def test_golden(self, value):
        image = np.arange(6, dtype=np.uint8).reshape(2, 3)
        out = apply_orientation(image, value)
        assert out.tolist() == self.EXPECTED[value]
        assert out.flags.c_contiguous

    @pytest.mark.parametrize("value", [0, 9, True, 2.0])
    def test_error(self, value):
        with pytest.raises(ValueError, match="orientation must be an int in 1..8"):
            apply_orientation(np.zeros((2, 2), np.uint8), value)


class TestExifReadImage:
    @pytest.mark.parametrize("value", range(1, 9))
    def test_exif_orientation_matches_opencv_imread(self, tmp_path, pattern, value):
        """Our parser + transform equal OpenCV 4.x's own EXIF handling in ``cv2.imread``, bit for bit."""
        path = tmp_path / f"o{value}.jpg"
        path.write_bytes(_with_exif(_jpeg(pattern, 90), _exif(value, ">" if value % 2 else "<")))
        reference = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]
        np.testing.assert_array_equal(read_image(path), reference)

    def test_exif_rotation_moves_content(self, tmp_path, pattern):
        stored = read_image(self._write(tmp_path / "plain.jpg", _jpeg(pattern)))
        rotated = read_image(self._write(tmp_path / "rot.jpg", _with_exif(_jpeg(pattern), _exif(6))))
        assert stored.shape == (24, 40, 3) and rotated.shape == (40, 24, 3)
        np.testing.assert_array_equal(rotated, np.rot90(stored, -1))  # 6: 90 degrees clockwise

    @staticmethod
    def _write(path, data: bytes):
        path.write_bytes(data)
        return path

    def test_unicode_path_and_rgb_order(self, tmp_path):
        image = np.zeros((6, 8, 3), np.uint8)
        image[..., 0] = 200  # red
        path = self._write(tmp_path / "фото_顔 é.png", cv2.imencode(".png", image[:, :, ::-1])[1].tobytes())
        np.testing.assert_array_equal(read_image(path), image)

    def test_grey_rgba_and_16_bit(self, tmp_path):
        grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
        out = read_image(self._write(tmp_path / "g.png", cv2.imencode(".png", grey)[1].tobytes()))
        np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))
        bgra = np.dstack([np.full((6, 8), v, np.uint8) for v in (10, 20, 30, 0)])  # fully transparent
        out = read_image(self._write(tmp_path / "a.png", cv2.imencode(".png", bgra)[1].tobytes()))
        assert out.shape == (6, 8, 3) and out[0, 0].tolist() == [30, 20, 10]
        deep = np.full((6, 8), 65535, np.uint16)
        deep[0, 0] = 257 * 100
        out = read_image(self._write(tmp_path / "d.png", cv2.imencode(".png", deep)[1].tobytes()))
        assert out.dtype == np.uint8 and out[0, 0].tolist() == [100] * 3 and out[1, 1].tolist() == [255] * 3

    @pytest.mark.parametrize(
        "name, content, match",
        [
            ("empty.jpg", b"", "image file is empty"),
            ("text.jpg", b"hello, I am not a picture", "not a decodable image"),
            ("noise.png", bytes(range(256)) * 4, "not a decodable image"),
        ],
    )
    def test_bad_files_raise_naming_the_file(self, tmp_path, name, content, match):
        path = self._write(tmp_path / name, content)
        with pytest.raises(DataError, match=match) as info:
            read_image(path)
        assert name in str(info.value)

    def test_truncated_jpeg(self, tmp_path, pattern):
        data = _jpeg(np.tile(pattern, (4, 4, 1)), 90)
        with pytest.raises(DataError, match="truncated JPEG"):
            read_image(self._write(tmp_path / "cut.jpg", data[: len(data) // 2]))

    def test_truncated_png(self, tmp_path, pattern):
        data = cv2.imencode(".png", np.tile(pattern, (8, 8, 1)))[1].tobytes()
        with pytest.raises(DataError, match="cut.png"):
            read_image(self._write(tmp_path / "cut.png", data[: len(data) // 2]))

    def test_missing_and_folder(self, tmp_path):
        with pytest.raises(DataError, match="image not found"):
            read_image(tmp_path / "nope.jpg")
        with pytest.raises(DataError, match="is a folder"):
            read_image(tmp_path)


class TestAsRgbImage:
    def test_conversions(self):
        grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
        np.testing.assert_array_equal(as_rgb_image(grey), np.repeat(grey[:, :, None], 3, axis=2))
        rgba = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
        np.testing.assert_array_equal(as_rgb_image(rgba), rgba[:, :, :3])  # RGB order kept (no BGR swap)
        assert as_rgb_image(np.full((2, 3, 3), 65535, np.uint16)).max() == 255

    def test_errors(self):
        with pytest.raises(TypeError, match="numpy array"):
            as_rgb_image([[1, 2]])
        with pytest.raises(ValueError, match="non-empty"):
            as_rgb_image(np.zeros((0, 3, 3), np.uint8))
        with pytest.raises(ValueError, match="unsupported pixel type float32"):
            as_rgb_image(np.zeros((2, 3, 3), np.float32))


class TestListImages:
    def test_sorted_case_insensitive_and_recursive(self, tmp_path):
        for name in ("b.JPG", "a.png", "notes.txt", "sub/c.jpeg", "sub/deeper/d.webp"):
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(b"x")
        (tmp_path / "folder.jpg").mkdir()  # a folder with an image suffix is not an image
        assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG"]
        rel = [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)]
        assert rel == ["a.png", "b.JPG", "sub/c.jpeg", "sub/deeper/d.webp"]
        assert [p.name for p in list_images(tmp_path, True, extensions=["png", ".WEBP"])] == ["a.png", "d.webp"]

    def test_empty_and_not_a_folder(self, tmp_path):
        assert list_images(tmp_path) == []
        with pytest.raises(NotADirectoryError, match="not a folder"):
            list_images(tmp_path / "missing")


class TestOneReader:
    def test_rotated_jpeg_is_upright_for_eval_and_predict(self, tmp_path, pattern):
        """One EXIF rule: ``awing eval``'s data loading and ``awing predict`` see the same upright photo, so the
        same model, box and crop give the same landmarks."""
        from awing.cli import main
        from awing.config import DataConfig
        from awing.data.io import write_pts
        from awing.engine.evaluate import evaluate_model, open_dataset
        from awing.models import StackedHourglass, save_weights

        folder = tmp_path / "faces" / "test"
        folder.mkdir(parents=True)
        photo = folder / "rot.jpg"
        photo.write_bytes(_with_exif(_jpeg(pattern), _exif(6)))  # stored 40 wide x 24 high, shown 24 x 40
        points = np.array([[6, 12], [17, 12], [12, 20], [8, 28], [16, 28]], np.float32)  # upright frame
        write_pts(folder / "rot.pts", points)
        cfg = DataConfig(name="pts", root=str(tmp_path / "faces"), scheme="5", input_size=32, heatmap_size=8)
        faces = open_dataset(cfg, "test")
        np.testing.assert_array_equal(faces[0].image, np.rot90(read_image(_plain(tmp_path, pattern)), -1))

        torch.manual_seed(0)
        model = StackedHourglass(num_stacks=1, num_landmarks=5, features=16, depth=1, input_size=32).eval()
        weights = save_weights(model, tmp_path / "w.safetensors")
        box = faces.records[0].box.tolist()
        (tmp_path / "boxes.json").write_text(json.dumps({"rot.jpg": [box]}))
        argv = ["predict", str(photo), "--weights", str(weights), "--boxes", str(tmp_path / "boxes.json")]
        assert main([*argv, "--out", str(tmp_path / "out")]) == 0
        record = json.loads((tmp_path / "out" / "rot.json").read_text())
        assert (record["width"], record["height"]) == (24, 40)
        evaluated = evaluate_model(model, faces, dataclasses.replace(cfg, num_workers=0), device=torch.device("cpu"))
        # the same crop through the same routine; 1e-4 px allows for float32 summation order only
        np.testing.assert_allclose(record["faces"][0]["landmarks"], evaluated.landmarks_img[0], rtol=0, atol=1e-4)


def _plain(folder, pattern: np.ndarray):
    path = folder / "plain.jpg"
    path.write_bytes(_jpeg(pattern))
    return path
