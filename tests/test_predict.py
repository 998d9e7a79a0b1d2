"""Tests of ``awing predict`` (awing.predict_cli): outputs, formats and their round trips, exit codes, inputs.

The golden model is a tiny hourglass whose last head has zero weights and bias 1: every heatmap is flat 1, which
the official decoder reads as heatmap pixel (0, 0) (the first maximum; no quarter-pixel shift on the edge) with
score 1. So every landmark sits at crop pixel ``(0 + 0.5) * 4 - 0.5 = 1.5`` and maps back to the image by the
inverse crop matrix: ``x_img = (1.5 + 0.5) * side / 32 + cx - side / 2`` with ``side = 1.25 * max(w, h)``.
"""

from __future__ import annotations

import argparse
import json
import math

import cv2
import numpy as np
import pytest
import torch

from awing import aligner as aligner_module
from awing.aligner import Face, FaceAligner
from awing.cli import main
from awing.data.io import read_pts
from awing.detection import FaceDetectorNet, save_detector
from awing.detection.config import DetectorModelConfig, InferenceConfig
from awing.inference import InferenceSettings
from awing.models import StackedHourglass, save_weights
from awing.predict_cli import add_predict_parser

S = 32  # crop side of the test models


def _hourglass(seed: int) -> StackedHourglass:
    torch.manual_seed(seed)
    return StackedHourglass(num_stacks=1, num_landmarks=68, features=16, depth=1, input_size=S)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """``flat``: the golden model (module docstring); ``random``: random weights; ``detector``: random detector
    keeping every anchor (threshold 0) but at most two boxes per image."""
    root = tmp_path_factory.mktemp("models")
    flat = _hourglass(0)
    with torch.no_grad():
        flat.l0.weight.zero_()
        flat.l0.bias.fill_(1.0)
    official = InferenceSettings(codec="awing_official").to_metadata()
    torch.manual_seed(0)
    detector = FaceDetectorNet(DetectorModelConfig(width_mult=0.25))
    return {
        "flat": save_weights(flat, root / "flat.safetensors", extra_metadata=official),
        "random": save_weights(_hourglass(1), root / "random.safetensors"),
        "detector": save_detector(
            detector, root / "det.safetensors", InferenceConfig(score_threshold=0.0, pre_nms_top_k=20, max_detections=2)
        ),
    }


def golden(box) -> list[float]:
    x0, y0, x1, y1 = box
    side = 1.25 * max(x1 - x0, y1 - y0)
    return [2 * side / S + (x0 + x1) / 2 - side / 2, 2 * side / S + (y0 + y1) / 2 - side / 2]


def write_image(path, width: int = 100, height: int = 80, seed: int = 0):
    image = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buffer = cv2.imencode(path.suffix, image)
    assert ok
    buffer.tofile(path)  # unicode-safe
    return path


def run(capsys, *args) -> tuple[int, str, str]:
    code = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


class TestOutputs:
    def test_json_per_image_golden(self, tmp_path, capsys, models):
        image = write_image(tmp_path / "a.png", 100, 80)
        code, out, err = run(capsys, image, "--weights", models["flat"], "--detector", "none", "--out", tmp_path / "o")
        assert (code, out) == (0, "")
        record = json.loads((tmp_path / "o" / "a.json").read_text(encoding="utf-8"))
        assert record["image"] == str(image) and (record["width"], record["height"]) == (100, 80)
        (face,) = record["faces"]
        assert face["box"] == [-0.5, -0.5, 99.5, 79.5] and face["box_score"] is None and face["scheme"] == "68"
        assert golden(face["box"]) == [-5.1875, -15.1875]
        assert face["landmarks"] == [[-5.1875, -15.1875]] * 68  # exact: never rounded
        assert face["scores"] == [1.0] * 68

    def test_stdout_lines_and_unicode_names(self, tmp_path, capsys, models):
        paths = [write_image(tmp_path / "лицо 顔.png", 60, 40), write_image(tmp_path / "b.jpg", 50, 70)]
        code, out, err = run(capsys, *paths, "--weights", models["flat"], "--detector", "none", "--no-progress")
        assert code == 0 and out.isascii() and err == ""
        records = [json.loads(line) for line in out.splitlines()]
        assert [r["image"] for r in records] == [str(p) for p in paths]
        assert records[1]["faces"][0]["landmarks"][0] == golden([-0.5, -0.5, 49.5, 69.5])

    def test_unicode_output_file(self, tmp_path, capsys, models):
        image = write_image(tmp_path / "in" / "été_顔.png")
        code, *_ = run(capsys, image, "--weights", models["flat"], "--detector", "none", "--out", tmp_path / "o")
        assert code == 0
        record = json.loads((tmp_path / "o" / "été_顔.json").read_text(encoding="utf-8"))
        assert record["image"].endswith("été_顔.png")

    def test_jsonl_round_trip_equals_the_api(self, tmp_path, capsys, models):
        paths = [write_image(tmp_path / f"{i}.png", 90 + 7 * i, 64, seed=i) for i in range(2)]
        code, out, _ = run(
            capsys, *paths, "--weights", models["random"], "--detector", "none", "--format", "jsonl", "--out",
            tmp_path / "o", "--flip-test", "--batch-size", "1",
        )  # fmt: skip
        assert (code, out) == (0, "")
        lines = (tmp_path / "o" / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
        aligner = FaceAligner.from_pretrained(models["random"], "cpu", detector=None, flip_test=True)
        for line, path in zip(lines, paths, strict=True):
            record = json.loads(line)
            (face,) = [Face.from_dict(f) for f in record["faces"]]
            (expected,) = aligner.predict(path)
            np.testing.assert_array_equal(face.landmarks, expected.landmarks)
            np.testing.assert_array_equal(face.scores, expected.scores)

    def test_pts_round_trip_and_boxes(self, tmp_path, capsys, models):
        for name in ("two", "none", "missing"):
            write_image(tmp_path / "in" / f"{name}.png")
        boxes = {"two.png": [[10, 20, 50, 60], [30.5, 5, 70.5, 45, 0.9]], "none.png": []}
        (tmp_path / "boxes.json").write_text(json.dumps(boxes))
        code, out, err = run(
            capsys, tmp_path / "in", "--weights", models["flat"], "--boxes", tmp_path / "boxes.json",
            "--format", "pts", "--out", tmp_path / "o",
        )  # fmt: skip
        assert code == 1 and "missing.png: no entry in the --boxes file" in err
        assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["two.pts", "two_1.pts"]
        first, second = read_pts(tmp_path / "o" / "two.pts"), read_pts(tmp_path / "o" / "two_1.pts")
        np.testing.assert_allclose(first, [golden([10, 20, 50, 60])] * 68, atol=1e-5)
        np.testing.assert_allclose(second, [golden([30.5, 5, 70.5, 45])] * 68, atol=1e-5)
        assert golden([10, 20, 50, 60]) == [8.125, 18.125]

    def test_save_vis(self, tmp_path, capsys, models):
        image = write_image(tmp_path / "a.png", 120, 90)
        code, *_ = run(capsys, image, "--weights", models["flat"], "--detector", "none", "--save-vis", tmp_path / "vis")
        assert code == 0
        overlay = cv2.imread(str(tmp_path / "vis" / "a.jpg"))
        assert overlay.shape == (90, 120, 3)

    def test_detector_path_and_large_image(self, tmp_path, capsys, models):
        image = write_image(tmp_path / "big.jpg", 1600, 1200)
        detector = ["--detector", "awing", "--detector-weights", models["detector"]]
        code, out, _ = run(capsys, image, "--weights", models["random"], *detector, "--device", "cpu")
        assert code == 0
        (record,) = [json.loads(line) for line in out.splitlines()]
        assert (record["width"], record["height"]) == (1600, 1200)
        assert 1 <= len(record["faces"]) <= 2
        for face in record["faces"]:
            assert 0 <= face["box_score"] <= 1 and len(face["landmarks"]) == 68
            assert all(math.isfinite(v) for point in face["landmarks"] for v in point)

    def test_det_threshold_sets_the_operating_point(self, tmp_path, capsys, models):
        """The test detector stores threshold 0 (every anchor, at most 2 boxes); --det-threshold 1 keeps none, so the
        image has no face; the API's det_threshold= sets the same value on the detector."""
        image = write_image(tmp_path / "a.jpg", 160, 120)
        detector = ["--detector", "awing", "--detector-weights", models["detector"], "--device", "cpu"]
        code, out, _ = run(capsys, image, "--weights", models["random"], *detector)
        assert code == 0 and len(json.loads(out)["faces"]) == 2
        code, out, _ = run(capsys, image, "--weights", models["random"], *detector, "--det-threshold", "1")
        assert code == 0 and json.loads(out)["faces"] == []
        aligner = FaceAligner.from_pretrained(models["random"], "cpu", detector=models["detector"], det_threshold=0.7)
        assert aligner.detector.settings.score_threshold == 0.7
        with pytest.raises(ValueError, match="det_threshold applies to awing's detector"):
            FaceAligner.from_pretrained(models["random"], "cpu", detector="opencv", det_threshold=0.7)
        with pytest.raises(ValueError, match="score_threshold"):
            FaceAligner.from_pretrained(models["random"], "cpu", detector=models["detector"], det_threshold=2.0)

    def test_overlay_colours_and_labels_per_face(self):
        from awing.viz import PALETTE, draw_faces

        image = np.zeros((200, 300, 3), np.uint8)
        boxes = np.array([[20, 60, 100, 140], [160, 60, 240, 140]], np.float64)
        points = np.stack([np.full((68, 2), 60.0), np.full((68, 2), 200.0)])
        points[:, :, 1] = 100
        out = draw_faces(image, points, boxes, [0.91, None])

        def tinted(pixel, colour) -> bool:  # anti-aliased edges: a darker shade of the colour on black
            pixel, colour = np.asarray(pixel, float), np.asarray(colour, float)
            return pixel.max() > 60 and np.dot(pixel, colour) / np.linalg.norm(pixel) / np.linalg.norm(colour) > 0.99

        assert tinted(out[100, 20], PALETTE[0]) and tinted(out[100, 240], PALETTE[1])  # box edges
        assert tinted(out[100, 60], PALETTE[0]) and tinted(out[100, 200], PALETTE[1])  # the points
        assert not tinted(out[100, 20], PALETTE[1])
        label0, label1 = out[40:62, 20:100], out[40:62, 160:240]  # above each box: filled label, white text
        assert (label0 > 200).all(axis=2).any() and (label0 == PALETTE[0]).all(axis=2).any()
        assert (label1 > 200).all(axis=2).any() and (label1 == PALETTE[1]).all(axis=2).any()
        assert (label0 == PALETTE[0]).all(axis=2).sum() > (label1 == PALETTE[1]).all(axis=2).sum()  # "1: 0.91"
        assert not image.any()  # the input is untouched
        with pytest.raises(ValueError, match="scores"):
            draw_faces(image, points, boxes, [0.5])

    def test_exif_orientation_swaps_the_size(self, tmp_path, capsys, models):
        from test_imread import _exif, _with_exif

        image = np.zeros((30, 50, 3), np.uint8)
        (tmp_path / "r.jpg").write_bytes(_with_exif(cv2.imencode(".jpg", image)[1].tobytes(), _exif(8)))
        code, out, _ = run(capsys, tmp_path / "r.jpg", "--weights", models["flat"], "--detector", "none")
        record = json.loads(out)
        assert code == 0 and (record["width"], record["height"]) == (30, 50)
        assert record["faces"][0]["landmarks"][0] == golden([-0.5, -0.5, 29.5, 49.5])


class TestInputs:
    def test_folders_recursion_and_name_collisions(self, tmp_path, capsys, models):
        for name in ("a.jpg", "a.png", "sub/b.png", "notes.txt"):
            if name.endswith("txt"):
                (tmp_path / "in" / name).write_text("hi")
            else:
                write_image(tmp_path / "in" / name)
        common = ["--weights", models["flat"], "--detector", "none"]
        code, *_ = run(capsys, tmp_path / "in", *common, "--out", tmp_path / "flat")
        assert code == 0 and sorted(p.name for p in (tmp_path / "flat").iterdir()) == ["a.json", "a.png.json"]
        code, *_ = run(capsys, tmp_path / "in", *common, "--out", tmp_path / "deep", "--recursive")
        assert code == 0 and (tmp_path / "deep" / "sub" / "b.json").is_file()

    def test_glob(self, tmp_path, capsys, models):
        for name in ("x1.png", "x2.png", "y.png"):
            write_image(tmp_path / name)
        code, out, _ = run(capsys, tmp_path / "x*.png", "--weights", models["flat"], "--detector", "none")
        assert code == 0 and [json.loads(line)["image"] for line in out.splitlines()] == [
            str(tmp_path / "x1.png"),
            str(tmp_path / "x2.png"),
        ]

    def test_failures_are_named_and_the_rest_processed(self, tmp_path, capsys, models):
        good = write_image(tmp_path / "good.png")
        (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
        (tmp_path / "empty.png").write_bytes(b"")
        (tmp_path / "nothing").mkdir()
        inputs = [tmp_path / "broken.jpg", good, tmp_path / "nope.png", tmp_path / "nothing", tmp_path / "z*.png"]
        code, out, err = run(capsys, *inputs, tmp_path / "empty.png", "--weights", models["flat"], "--detector", "none")
        assert code == 1
        assert [json.loads(line)["image"] for line in out.splitlines()] == [str(good)]
        for text in ("broken.jpg", "nope.png: no such file", "nothing: no image files", "z*.png: no file matches",
                     "empty.png: image file is empty"):  # fmt: skip
            assert text in err
        assert len(err.strip().splitlines()) == 5

    def test_only_failures(self, tmp_path, capsys, models):
        code, out, err = run(capsys, tmp_path / "nope.png", "--weights", models["flat"], "--detector", "none")
        assert (code, out) == (1, "") and "nope.png" in err
        code, out, err = run(capsys, tmp_path / "nope.png", "--weights", tmp_path / "missing.safetensors")
        assert code == 2 and "missing.safetensors" in err  # a usage error outranks failed inputs

    def test_output_folder_is_a_file(self, tmp_path, capsys, models):
        (tmp_path / "taken").write_text("x")
        args = [write_image(tmp_path / "a.png"), "--weights", models["flat"], "--detector", "none"]
        code, _, err = run(capsys, *args, "--out", tmp_path / "taken", "--format", "jsonl")
        assert code == 2 and "cannot open the output" in err
        code, _, err = run(capsys, *args, "--out", tmp_path / "taken")
        assert code == 1 and "a.png: cannot write " in err and "a.json" in err


class TestUsageErrors:
    @pytest.mark.parametrize(
        "extra, match",
        [
            (["--format", "pts"], "--format pts writes one file per face: give --out DIR"),
            (["--detector", "none", "--detector-weights", "d.safetensors"], "--detector-weights needs"),
            (["--detector", "opencv", "--det-threshold", "0.5"], "--det-threshold needs --detector awing"),
            (["--weights", "missing.safetensors"], "weights file not found: missing.safetensors"),
            (["--boxes", "nope.json"], "--boxes file not found"),
        ],
    )
    def test_exit_2(self, tmp_path, capsys, monkeypatch, extra, match):
        monkeypatch.chdir(tmp_path)
        write_image(tmp_path / "a.png")
        code, out, err = run(capsys, "a.png", *extra)
        assert (code, out) == (2, "") and match in err

    def test_bad_boxes_file(self, tmp_path, capsys, models):
        write_image(tmp_path / "a.png")
        for content, match in (("{", "not valid JSON"), ("[1, 2]", "must hold a JSON object")):
            (tmp_path / "b.json").write_text(content)
            code, _, err = run(capsys, tmp_path / "a.png", "--weights", models["flat"], "--boxes", tmp_path / "b.json")
            assert code == 2 and match in err

    def test_missing_bundled_model_is_named(self, tmp_path, capsys, monkeypatch):
        monkeypatch.setattr(aligner_module, "BUNDLED_LANDMARKS", tmp_path / "assets" / "landmarks_68.safetensors")
        code, _, err = run(capsys, write_image(tmp_path / "a.png"))
        assert code == 2 and "bundled accurate landmark model not found" in err and "landmarks_68.safetensors" in err
        code, _, err = run(capsys, tmp_path / "a.png", "--model", "fast", "--weights", tmp_path / "w.safetensors")
        assert code == 2 and "not both" in err

    def test_model_choices_are_the_bundled_models(self):
        parser = argparse.ArgumentParser()
        actions = {a.dest: a for a in add_predict_parser(parser.add_subparsers())._actions}
        assert tuple(actions["model"].choices) == aligner_module.LANDMARK_MODELS

    def test_unavailable_device(self, tmp_path, capsys, models):
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
        code, _, err = run(capsys, write_image(tmp_path / "a.png"), "--weights", models["flat"], "--device", "cuda")
        assert code == 2 and "CUDA is not available" in err

    @pytest.mark.parametrize(
        "extra", [["--batch-size", "0"], ["--format", "xml"], [], ["a.png", "--det-threshold", "1.5"],
                  ["a.png", "--det-threshold", "x"]]
    )  # fmt: skip
    def test_argparse_errors_exit_2(self, capsys, extra):
        with pytest.raises(SystemExit) as info:
            main(["predict", *extra] if extra else ["predict"])
        assert info.value.code == 2

    def test_registered(self, capsys):
        with pytest.raises(SystemExit):
            main(["--help"])
        assert "predict" in capsys.readouterr().out
