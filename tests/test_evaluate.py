from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from awing.codecs import HeatmapCodec, flip_heatmaps_back
from awing.config import ConfigError, DataConfig
from awing.data import LandmarkDataset, LandmarkTrainingSet
from awing.data.io import write_pts
from awing.data.sample import make_record
from awing.engine.commands import add_eval_parser
from awing.engine.evaluate import default_norm, evaluate_model, landmark_report, open_dataset
from awing.geometry import flip_landmarks
from awing.inference import model_input, resolve_device
from awing.landmarks import get_scheme
from awing.metrics import nme
from awing.models import build_model, save_weights
from awing.viz import draw_ced, draw_landmarks

SCHEME5 = get_scheme("5")  # left eye, right eye, nose, left and right mouth corners; inter-ocular = points 0, 1


def exact_auc(nmes: np.ndarray, t: float) -> float:
    """The exact integral of the CED step function over [0, t], divided by t: mean of max(t - e, 0) / t."""
    return float(np.mean(np.clip(t - np.asarray(nmes), 0, None)) / t)


class TestLandmarkReport:
    def gt(self):
        """Three 5-point faces; eyes 10, 20 and 40 px apart (inter-ocular); boxes of the points 10x10, 20x20, 40x40."""
        unit = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [1.0, 1.0]])
        return np.stack([unit * s + 5 for s in (10.0, 20.0, 40.0)])

    def test_hand_computed(self):
        gt = self.gt()
        pred = gt.copy()
        pred[0] += [0.3, 0.4]  # every point 0.5 px off: NME 0.5 / 10 = 0.05
        pred[1, 2] += [0.0, 5.0]  # one point of five 5 px off: NME 1 / 20 = 0.05
        pred[2, :2] += [6.0, 8.0]  # two points 10 px off: NME 4 / 40 = 0.1 (not > 0.10: no failure)
        visible = np.ones((3, 5), bool)
        report, nmes = landmark_report(pred, gt, visible, "5", norm="inter_ocular", subsets={"big": np.array([2])})
        np.testing.assert_allclose(nmes, [0.05, 0.05, 0.1])
        assert report["norm"] == "inter_ocular" and report["num_faces"] == 3
        assert report["nme_inter_ocular"] == pytest.approx(0.2 / 3)
        assert report["nme_box"] == pytest.approx(0.2 / 3)  # sqrt(w h) equals the eye distance here
        assert report["fr@0.10"] == 0.0
        assert report["auc@0.10"] == pytest.approx(exact_auc(nmes, 0.1), abs=2e-4)
        assert report["auc@0.10"] == pytest.approx((0.05 + 0.05 + 0.0) / 0.1 / 3, abs=2e-4)
        big = report["subsets"]["big"]
        assert big["num_faces"] == 1 and big["nme_inter_ocular"] == pytest.approx(0.1)
        report5, _ = landmark_report(pred, gt, visible, "5", norm="box", threshold=0.08)
        assert report5["fr@0.08"] == pytest.approx(1 / 3) and "fr@0.10" not in report5

    def test_invisible_points_and_undefined_norms(self):
        gt = self.gt()
        pred = gt + [3.0, 4.0]  # 5 px everywhere
        visible = np.ones((3, 5), bool)
        visible[1, 0] = False  # face 1: left eye unannotated (its placeholder must not enter any NME)
        gt[1, 0] = 0.0
        report, nmes = landmark_report(pred, gt, visible, "5", norm="box", subsets={"none": np.array([], int)})
        np.testing.assert_allclose(nmes, [0.5, 0.25, 0.125])  # 5 px over box sides 10, 20 (eye dropped), 40
        # inter-ocular needs both eyes: defined on faces 0 and 2 only.
        assert report["num_faces_inter_ocular"] == 2
        assert report["nme_inter_ocular"] == pytest.approx((0.5 + 0.125) / 2)
        assert report["fr@0.10"] == 1.0 and report["subsets"]["none"] == {"num_faces": 0}

    def test_errors(self):
        gt = self.gt()
        with pytest.raises(ValueError, match="norm must be one of"):
            landmark_report(gt, gt, np.ones((3, 5), bool), "5", norm="inter_canthal")
        with pytest.raises(ValueError, match="have the same shape"):
            landmark_report(gt[:, :4], gt, np.ones((3, 5), bool), "5", norm="box")

    def test_default_norms(self):
        assert default_norm("WFLW") == "inter_ocular" and default_norm("aflw") == "box"
        assert default_norm("cofw") == "inter_pupil" and default_norm("aflw2000-3d") == "box"


class TestFlipHeatmapsBack:
    def test_equals_heatmaps_of_the_unmirrored_points(self):
        codec = HeatmapCodec(64, 16, sigma=1.5)
        points_crop = np.array([[20.3, 24.1], [40.2, 23.7], [31.0, 35.5], [22.4, 47.0], [41.9, 46.2]], np.float32)
        plain = codec.encode(codec.to_heatmap(points_crop))
        mirrored_points = flip_landmarks(points_crop, 64, SCHEME5.flip_index)
        mirrored = torch.from_numpy(codec.encode(codec.to_heatmap(mirrored_points)))[None]
        back = flip_heatmaps_back(mirrored, SCHEME5.flip_index)
        torch.testing.assert_close(back[0], torch.from_numpy(plain), atol=1e-6, rtol=0)

    def test_errors(self):
        with pytest.raises(ValueError, match="flip_index of K entries"):
            flip_heatmaps_back(torch.zeros(1, 4, 8, 8), SCHEME5.flip_index)
        with pytest.raises(ValueError, match="B x K x H x W"):
            flip_heatmaps_back(torch.zeros(5, 8, 8), SCHEME5.flip_index)


def write_image(path: Path, seed: int, size: int = 80) -> None:
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8))


FACES = [  # 5-point faces in 80 x 80 images: (left eye, right eye, nose, mouth left, mouth right)
    np.array([[25, 30], [55, 30], [40, 42], [28, 55], [52, 55]], np.float32),
    np.array([[22.5, 24], [50.5, 27], [37, 40], [26, 50], [49, 53]], np.float32),
    np.array([[33, 33], [45, 33], [39.5, 41], [32, 50], [46, 50]], np.float32),  # narrow eyes: NME > 0.1
]


@pytest.fixture
def five_point_set(tmp_path):
    records = []
    for i, points in enumerate(FACES):
        write_image(tmp_path / f"{i}.png", i)
        subsets = ("even",) if i % 2 == 0 else ()
        records.append(
            make_record(
                points, num_points=5, image_path=tmp_path / f"{i}.png", file="x", attributes={"subsets": subsets}
            )
        )
    return LandmarkDataset(records, "5")


class Oracle(nn.Module):
    """Returns stored heatmaps for the crops it knows (found by exact match), others for their mirror images."""

    def __init__(self, crops: torch.Tensor, heatmaps: torch.Tensor, mirrored_heatmaps: torch.Tensor) -> None:
        super().__init__()
        self.crops, self.heatmaps, self.mirrored_heatmaps = crops, heatmaps, mirrored_heatmaps

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for image in images:
            plain = [i for i, crop in enumerate(self.crops) if torch.equal(crop, image)]
            mirror = [i for i, crop in enumerate(self.crops) if torch.equal(crop.flip(-1), image)]
            out.append(self.heatmaps[plain[0]] if plain else self.mirrored_heatmaps[mirror[0]])
        return [torch.stack(out)]


class TestEvaluateModel:
    # Crop offsets in crop pixels: the plain prediction is off by PLAIN, the mirrored one by MIRROR (unmirrored
    # frame); the flip test averages the two Gaussians, whose midpoint is the truth.
    PLAIN = np.array([3.0, -4.0], np.float32)
    MIRROR = -PLAIN

    def oracle(self, faces: LandmarkDataset, cfg: DataConfig) -> tuple[Oracle, list[float]]:
        data = LandmarkTrainingSet.from_config(faces, cfg, train=False)
        items = [data[i] for i in range(len(data))]
        codec = data.codec
        crops = model_input(torch.stack([item["image"] for item in items]))

        def encode(points):
            return torch.from_numpy(codec.encode(codec.to_heatmap(points)))

        plain = torch.stack([encode(item["landmarks_crop"].numpy() + self.PLAIN) for item in items])
        mirrored = torch.stack(
            [
                encode(flip_landmarks(item["landmarks_crop"].numpy() + self.MIRROR, cfg.input_size, SCHEME5.flip_index))
                for item in items
            ]
        )
        zooms = [float(item["matrix"][0, 0]) for item in items]
        return Oracle(crops, plain, mirrored), zooms

    def test_hand_computed_nme_with_and_without_flip(self, five_point_set):
        cfg = DataConfig(
            name="pts", scheme="5", input_size=128, heatmap_size=32, crop_scale=2.0, batch_size=2, num_workers=0
        )
        model, zooms = self.oracle(five_point_set, cfg)
        # The crop is square, crop_scale x the points box's longer side, unrotated: zoom = 128 / (2 * side). The
        # points stay more than 3 sigma from the heatmap's edges, where decoding is exact to about 1e-3 px.
        sides = [float(np.ptp(p, axis=0).max()) for p in FACES]
        np.testing.assert_allclose(zooms, [128 / (2.0 * s) for s in sides], rtol=1e-6)
        eyes = [float(np.linalg.norm(p[1] - p[0])) for p in FACES]
        expected = np.array([5.0 / z / d for z, d in zip(zooms, eyes, strict=True)])  # |PLAIN| = 5 crop px

        result = evaluate_model(model, five_point_set, cfg, device=torch.device("cpu"))
        np.testing.assert_allclose(result.nmes, expected, rtol=5e-4)
        report = result.report
        assert report["norm"] == "inter_ocular" and report["dataset"] == "pts" and report["flip_test"] is False
        assert report["nme_inter_ocular"] == pytest.approx(expected.mean(), rel=5e-4)
        assert report["fr@0.10"] == pytest.approx(1 / 3) and expected[2] > 0.1 > expected[:2].max()
        assert report["auc@0.10"] == pytest.approx(exact_auc(expected, 0.1), abs=1e-3)
        assert report["subsets"]["even"]["num_faces"] == 2
        assert report["subsets"]["even"]["nme_inter_ocular"] == pytest.approx(expected[[0, 2]].mean(), rel=5e-4)
        truth = np.stack(FACES)
        offsets = result.landmarks_img - truth
        np.testing.assert_allclose(
            offsets, np.broadcast_to(self.PLAIN / np.array(zooms)[:, None, None], offsets.shape), atol=0.002
        )

        flipped = evaluate_model(model, five_point_set, cfg, device=torch.device("cpu"), flip=True)
        assert flipped.report["flip_test"] is True
        np.testing.assert_allclose(flipped.landmarks_img, truth, atol=0.02)
        assert flipped.report["nme_inter_ocular"] < 1e-3

    def test_ced_curves(self, five_point_set):
        cfg = DataConfig(name="pts", scheme="5", input_size=64, heatmap_size=16, num_workers=0)
        result = evaluate_model(self.oracle(five_point_set, cfg)[0], five_point_set, cfg, device=torch.device("cpu"))
        curves = result.ced_curves(0.1)
        assert list(curves) == ["all", "even"]
        x, y = curves["all"]
        assert len(x) == 1001 and y[-1] == pytest.approx(1 - result.report["fr@0.10"])


class TestRunEvaluation:
    def test_cli_report_png_and_consistency(self, tmp_path, capsys):
        folder = tmp_path / "faces" / "test"
        folder.mkdir(parents=True)
        for i, points in enumerate(FACES):
            write_image(folder / f"{i}.png", i)
            write_pts(folder / f"{i}.pts", points)
        torch.manual_seed(0)
        model = build_model(num_stacks=1, num_landmarks=5, features=16, input_size=64).eval()
        weights = save_weights(model, tmp_path / "w.safetensors")
        config = tmp_path / "c.yaml"
        config.write_text(
            f"data: {{name: pts, root: {tmp_path / 'faces'}, scheme: '5', input_size: 64, heatmap_size: 16, "
            "num_workers: 0}\nrun: {device: cpu}\n",
            encoding="utf-8",
        )
        parser = argparse.ArgumentParser()
        add_eval_parser(parser.add_subparsers())
        args = parser.parse_args(["eval", str(config), "--weights", str(weights), "--split", "test", "--no-progress"])
        assert args.run(args) == 0
        printed = json.loads(capsys.readouterr().out)
        out = tmp_path / "eval_pts_test"
        assert json.loads((out / "report.json").read_text()) == printed
        assert printed["split"] == "test" and printed["weights"] == str(weights) and printed["num_faces"] == 3
        png = cv2.imread(str(out / "ced.png"))
        assert png.shape == (480, 640, 3)

        # The same numbers by hand: crop, run, decode, map back, NME.
        data_cfg = DataConfig(name="pts", root=str(tmp_path / "faces"), scheme="5", input_size=64, heatmap_size=16)
        data = LandmarkTrainingSet.from_config(open_dataset(data_cfg, "test"), data_cfg, train=False)
        preds = []
        for i in range(3):
            item = data[i]
            with torch.no_grad():
                heatmaps = model(model_input(item["image"][None]))[-1][:, :5]
            points_crop = data.codec.to_crop(data.codec.decode(heatmaps)[0][0]).numpy().astype(np.float64)
            matrix = item["matrix"].numpy()
            preds.append(np.linalg.solve(matrix[:, :2], (points_crop - matrix[:, 2]).T).T)
        expected = nme(np.stack(preds), np.stack(FACES), "inter_ocular", "5")
        assert printed["nme_inter_ocular"] == pytest.approx(100 * expected.mean(), rel=1e-5)  # in percent
        assert printed["fr@10%"] == pytest.approx(100 * (expected > 0.1).mean())
        assert 0 <= printed["auc@10%"] <= 100 and "%" in printed["units"]

    def test_errors(self, tmp_path):
        from awing.config import TrainConfig
        from awing.engine.evaluate import run_evaluation

        weights = save_weights(
            build_model(num_stacks=1, num_landmarks=5, features=16, input_size=64), tmp_path / "w.safetensors"
        )
        with pytest.raises(ConfigError, match="predict 5 points but data.scheme='98' has 98"):
            run_evaluation(TrainConfig(), weights)
        with pytest.raises(ConfigError, match="multiple of 0.0001"):
            run_evaluation(TrainConfig(), weights, threshold=0.12345)
        with pytest.raises(ConfigError, match="unknown data.name 'nope'"):
            open_dataset(DataConfig(name="nope"), "test")
        with pytest.raises(ConfigError, match="run.device must be"):
            resolve_device("gpu", "run.device")


class TestViz:
    def test_ced_plot_draws_each_curve(self):
        x = np.linspace(0, 0.1, 1001)
        canvas = draw_ced({"a": (x, np.clip(x / 0.05, 0, 1)), "b": (x, x * 5)})
        assert canvas.shape == (480, 640, 3) and canvas.dtype == np.uint8
        blue = np.all(canvas == (31, 119, 180), axis=-1)
        orange = np.all(canvas == (255, 127, 14), axis=-1)
        assert blue.sum() > 200 and orange.sum() > 200
        with pytest.raises(ValueError, match="at least one curve"):
            draw_ced({})
        with pytest.raises(ValueError, match="equal length"):
            draw_ced({"a": (x, x[:-1])})

    def test_draw_landmarks(self):
        image = np.zeros((40, 50, 3), np.uint8)
        out = draw_landmarks(image, np.array([[10.0, 20.0], [np.nan, 3.0]]), boxes=[5, 5, 30, 35], radius=2)
        assert image.max() == 0 and out.shape == image.shape
        assert tuple(out[20, 10]) == (0, 255, 0) and out[5, 20, 0] > 0  # dot centre; the box's top edge
        several = draw_landmarks(image[..., 0], np.array([[[5.0, 5.0]], [[40.0, 30.0]]]))
        assert several.shape == (40, 50, 3) and several[30, 40, 1] == 255
        with pytest.raises(ValueError, match="landmarks must have shape"):
            draw_landmarks(image, np.zeros(4))
        with pytest.raises(TypeError, match="uint8"):
            draw_landmarks(image.astype(np.float32), np.zeros((1, 2)))
