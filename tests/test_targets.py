"""Tests of awing.data.targets (heatmaps, boundary, point weights) and awing.data.training (the torch Dataset,
the device-side image conversion and targets)."""

from __future__ import annotations

import dataclasses
import random
import traceback
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, default_collate

from awing.boundary import boundary_heatmap
from awing.codecs import HeatmapCodec
from awing.config import AugmentConfig, DataConfig
from awing.data import CocoKeypointsDataset, DataError, LandmarkDataset, LandmarkRecord
from awing.data.augment import GeometricParams, warp_face
from awing.data.sample import make_record
from awing.data.targets import face_targets, heatmap_targets, make_targets, point_weights
from awing.data.training import LandmarkTrainingSet, seed_worker
from awing.geometry import box_to_crop_matrix, transform_points, warp_image
from awing.inference import model_input
from awing.landmarks import get_scheme

WFLW_JSON = Path(__file__).parent / "data" / "mmpose" / "wflw" / "test_wflw.json"
PHOTOMETRIC = ("colour_prob", "occlusion_prob", "blur_prob", "noise_prob", "jpeg_prob")


def wflw_face():
    """The one WFLW face (98 points) of the mmpose fixture whose image is present."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fixture's other image is missing on purpose
        return CocoKeypointsDataset(WFLW_JSON, skip_invalid=True)[0]


class Draws(torch.utils.data.Dataset):
    """Each worker's draws from the global generators (module level so that spawned workers can unpickle it)."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        info = torch.utils.data.get_worker_info()
        noise = np.zeros(4, np.float64)
        cv2.randu(noise, 0.0, 1.0)
        return info.id, torch.initial_seed(), np.random.random(), random.random(), noise  # noqa: NPY002


class TestMakeTargets:
    codec = HeatmapCodec(256, 64, sigma=1.5)

    def test_weights_hard_coded(self):
        # x_hm = (x_crop + 0.5) / 4 - 0.5 must lie in [-0.5, 63.5): x_crop in [-0.5, 255.5)
        points = np.array(
            [[100, 100], [-0.6, 100], [-0.4, 100], [255.4, 100], [255.6, 100], [100, 300], [100, 100], [np.nan, 5]],
            dtype=np.float32,
        )
        visible = np.array([1, 1, 1, 1, 1, 1, 0, 1], bool)
        weight = point_weights(self.codec.to_heatmap(points), visible, (64, 64))
        assert weight.dtype == np.float32
        assert weight.tolist() == [1, 0, 1, 1, 0, 0, 0, 0]

    def test_channels_are_the_codec_and_boundary(self):
        face = wflw_face()
        scheme = get_scheme(98)
        warped = warp_face(face.image, face.landmarks_img, face.visible, face.box, scheme, 256)
        points, visible = warped.landmarks_crop.copy(), warped.visible.copy()
        visible[[3, 60]] = False
        points[70] = (-30.0, 40.0)  # outside the crop
        heatmaps, weight = make_targets(points, visible, self.codec, scheme)
        assert heatmaps.shape == (99, 64, 64) and heatmaps.dtype == np.float32
        assert weight.shape == (98,) and weight.dtype == np.float32
        assert np.flatnonzero(weight == 0).tolist() == [3, 60, 70]
        points_hm = self.codec.to_heatmap(points)
        assert np.array_equal(heatmaps[:98], self.codec.encode(points_hm, visible=weight > 0))
        assert np.array_equal(heatmaps[98], boundary_heatmap(points_hm, scheme, 64, sigma=1.0, visible=visible))
        assert not heatmaps[[3, 60, 70]].any()
        assert np.all(heatmaps[:98][weight > 0].max(axis=(1, 2)) > 0.8)
        plain, plain_weight = make_targets(points, visible, self.codec, scheme, with_boundary=False)
        assert np.array_equal(plain, heatmaps[:98]) and np.array_equal(plain_weight, weight)

    @pytest.mark.parametrize("mode", ["subpixel", "awing_official"])
    def test_flip_consistency(self, mode):
        """Targets of a flipped face == the unflipped targets mirrored on the grid, channels permuted."""
        face, scheme = wflw_face(), get_scheme(98)
        codec = HeatmapCodec(256, 64, mode=mode)
        order = list(scheme.flip_index)
        for params in (GeometricParams(1.1, 20.0, (5.0, -3.0)), GeometricParams(0.9, -35.0, (-30.0, 7.0))):
            flipped = dataclasses.replace(params, flip=True)
            a = warp_face(face.image, face.landmarks_img, face.visible, face.box, scheme, 256, params=params)
            b = warp_face(face.image, face.landmarks_img, face.visible, face.box, scheme, 256, params=flipped)
            heat_a, weight_a = make_targets(a.landmarks_crop, a.visible, codec, scheme)
            heat_b, weight_b = make_targets(b.landmarks_crop, b.visible, codec, scheme)
            assert np.abs(heat_b - heat_a[[*order, 98]][:, :, ::-1]).max() < 1e-5
            assert np.array_equal(weight_b, weight_a[order])
            assert heat_a[98].max() == 1.0  # the boundary channel is drawn

    def test_errors(self):
        points, visible = np.zeros((21, 2), np.float32), np.ones(21, bool)
        with pytest.raises(ValueError, match=r"landmarks_crop must have shape \(21, 2\) for scheme 21"):
            make_targets(points[:3], visible, self.codec, "aflw")
        with pytest.raises(ValueError, match=r"visible must have shape \(21,\)"):
            make_targets(points, visible[:3], self.codec, "aflw")
        with pytest.raises(TypeError, match="codec must be an awing.codecs.HeatmapCodec"):
            make_targets(points, visible, "subpixel", "aflw")


class TestHeatmapTargets:
    """The two halves: face_targets (worker, numpy) and heatmap_targets (batched, any device)."""

    codec = HeatmapCodec(256, 64, sigma=1.5)

    def faces(self) -> tuple[np.ndarray, np.ndarray]:
        """Two warped WFLW faces (2, 98, 2) with invisible and outside points, and their visibility (2, 98)."""
        face, scheme = wflw_face(), get_scheme(98)
        points, visible = [], []
        for params in (GeometricParams(1.1, 20.0, (5.0, -3.0)), GeometricParams(0.9, -35.0, (-30.0, 7.0), True)):
            warped = warp_face(face.image, face.landmarks_img, face.visible, face.box, scheme, 256, params=params)
            points.append(warped.landmarks_crop)
            visible.append(warped.visible)
        points, visible = np.stack(points), np.stack(visible)
        visible[0, [3, 60]] = False
        points[1, 70] = (-30.0, 40.0)
        return points, visible

    def test_face_targets(self):
        points, visible = self.faces()
        weight, boundary = face_targets(points[0], visible[0], self.codec, 98)
        points_hm = self.codec.to_heatmap(points[0])
        assert weight.dtype == np.float32 and np.array_equal(weight, point_weights(points_hm, visible[0], (64, 64)))
        assert np.flatnonzero(weight == 0).tolist() == [3, 60]
        expected = boundary_heatmap(points_hm, get_scheme(98), 64, sigma=1.0, visible=visible[0])
        assert boundary.dtype == np.float32 and np.array_equal(boundary, expected)
        assert face_targets(points[0], visible[0], self.codec, 98, with_boundary=False)[1] is None

    def test_batch_on_device_equals_numpy_per_face(self, device):
        points, visible = self.faces()
        halves = [face_targets(p, v, self.codec, 98) for p, v in zip(points, visible, strict=True)]
        weight = torch.from_numpy(np.stack([w for w, _ in halves])).to(device)
        boundary = torch.from_numpy(np.stack([b for _, b in halves])).to(device)
        got = heatmap_targets(torch.from_numpy(points).to(device), weight, self.codec, boundary)
        assert got.shape == (2, 99, 64, 64) and got.dtype == torch.float32 and got.device == weight.device
        for face in range(2):
            expected, expected_weight = make_targets(points[face], visible[face], self.codec, 98)
            assert np.array_equal(expected_weight, halves[face][0])
            np.testing.assert_allclose(got[face].cpu().numpy(), expected, rtol=0, atol=1e-6)
            # the landmark channels are the codec's Gaussians of the weight-1 points, the boundary is the worker's
            points_hm = self.codec.to_heatmap(points[face])
            np.testing.assert_array_equal(expected[:98], self.codec.encode(points_hm, visible=expected_weight > 0))
            np.testing.assert_array_equal(expected[98], halves[face][1])
        assert not got[1, 70].any() and not got[0, [3, 60]].any()
        assert got[0, 0].max() > 0.8  # a weight-1 point's Gaussian
        plain = heatmap_targets(torch.from_numpy(points).to(device), weight, self.codec)
        assert torch.equal(plain, got[:, :98])

    def test_weight_decides_the_channel(self):
        """A point of weight 0 gets a zero channel even inside the grid (the weight travels, not the visibility)."""
        points = torch.tensor([[100.0, 100.0], [120.0, 100.0]])
        heatmaps = heatmap_targets(points, torch.tensor([1.0, 0.0]), self.codec)
        # (100 + 0.5) / 4 - 0.5 = 24.625: pixel (x=25, y=25) is 0.375 px off on both axes
        assert heatmaps[0, 25, 25] == pytest.approx(np.exp(-(2 * 0.375**2) / (2 * 1.5**2)), rel=1e-6)
        assert not heatmaps[1].any()

    def test_errors(self):
        points, weight = torch.zeros(2, 5, 2), torch.ones(2, 5)
        with pytest.raises(ValueError, match=r"boundary must have shape \(2, 64, 64\), got \(2, 32, 32\)"):
            heatmap_targets(points, weight, self.codec, torch.zeros(2, 32, 32))
        with pytest.raises(ValueError, match=r"visible must have shape \(2, 5\), got \(2, 4\)"):
            heatmap_targets(points, weight[:, :4], self.codec)
        with pytest.raises(TypeError, match="landmarks_crop and point_weight must be tensors, got ndarray"):
            heatmap_targets(points.numpy(), weight, self.codec)


class TestModelInput:
    def test_values_and_layout(self, device):
        crop = np.zeros((4, 5, 3), np.uint8)
        crop[1, 2] = (0, 51, 255)  # RGB at row 1, column 2
        batch = torch.from_numpy(np.stack([crop, 255 - crop]))
        images = model_input(batch, device)
        assert images.shape == (2, 3, 4, 5) and images.dtype == torch.float32 and images.is_contiguous()
        assert images.device.type == device.type
        assert images[0, :, 1, 2].tolist() == pytest.approx([0.0, 0.2, 1.0], abs=1e-7)
        assert images[1, :, 1, 2].tolist() == pytest.approx([1.0, 0.8, 0.0], abs=1e-7)
        assert images[0].sum() == pytest.approx(1.2, abs=1e-6)
        # the values of the former float items: the crop permuted to CHW and divided by 255
        assert torch.equal(images.cpu(), torch.from_numpy(np.stack([crop, 255 - crop])).permute(0, 3, 1, 2) / 255)
        assert torch.equal(model_input(batch[0]), images[0].cpu())  # one item: (3, S, S)

    def test_errors(self):
        with pytest.raises(TypeError, match=r"uint8 \(\.\.\., S, S, 3\) tensor .*got torch.float32 \(2, 4, 4, 3\)"):
            model_input(torch.zeros(2, 4, 4, 3))
        with pytest.raises(TypeError, match=r"got torch.uint8 \(2, 3, 4, 4\)"):
            model_input(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))
        with pytest.raises(TypeError, match="got ndarray None"):
            model_input(np.zeros((4, 4, 3), np.uint8))


# --- the torch Dataset -------------------------------------------------------------------------------------------

SIZE, HEATMAP = 64, 16
BOX = [12.0, 10.0, 68.0, 76.0]


def write_dataset(tmp_path, count: int = 6, corrupt: int | None = None) -> LandmarkDataset:
    """``count`` faces (21 points, point 5 invisible) on PNG images; image ``corrupt`` is a broken file."""
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        path = tmp_path / f"face_{i}.png"
        if i == corrupt:
            path.write_bytes(b"\x89PNG\r\n\x1a\n not really")
        else:
            small = rng.integers(0, 256, (9, 8, 3), dtype=np.uint8)
            cv2.imwrite(str(path), cv2.resize(small, (80, 90), interpolation=cv2.INTER_LINEAR))
        points = rng.uniform(20, 60, (21, 2))
        visible = np.ones(21, bool)
        points[5], visible[5] = (0.0, 0.0), False
        records.append(
            make_record(
                points, num_points=21, image_path=path, file=tmp_path / "list.txt", line=i + 1, visible=visible, box=BOX
            )
        )
    return LandmarkDataset(records, "21")


def training_set(dataset, augment=None, **kwargs) -> LandmarkTrainingSet:
    return LandmarkTrainingSet(dataset, input_size=SIZE, heatmap_size=HEATMAP, sigma=1.0, augment=augment, **kwargs)


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key])), key


class TestLandmarkTrainingSet:
    def test_item_layout(self, tmp_path):
        train = training_set(write_dataset(tmp_path), augment=AugmentConfig())
        item = train[2]
        expected = {
            "image": ((SIZE, SIZE, 3), torch.uint8),
            "boundary": ((HEATMAP, HEATMAP), torch.float32),
            "point_weight": ((21,), torch.float32),
            "landmarks_crop": ((21, 2), torch.float32),
            "visible": ((21,), torch.bool),
            "matrix": ((2, 3), torch.float64),
        }
        for key, (shape, dtype) in expected.items():
            assert (tuple(item[key].shape), item[key].dtype) == (shape, dtype), key
        assert item.keys() == {*expected, "index"} and item["index"] == 2
        batch = default_collate([item, item])
        assert batch["image"].shape == (2, SIZE, SIZE, 3) and batch["index"].tolist() == [2, 2]
        assert train.targets(batch).shape == (2, 22, HEATMAP, HEATMAP)
        size = sum(v.numel() * v.element_size() for v in item.values() if isinstance(v, torch.Tensor))
        assert size == SIZE * SIZE * 3 + HEATMAP * HEATMAP * 4 + 21 * 4 + 21 * 8 + 21 + 48  # what a worker ships

    def test_evaluation_is_the_crop(self, tmp_path):
        dataset = write_dataset(tmp_path)
        item = training_set(dataset, crop_scale=1.4)[1]
        sample = dataset[1]
        matrix = box_to_crop_matrix(BOX, SIZE, scale=1.4)
        assert np.array_equal(item["matrix"].numpy(), matrix)
        crop = warp_image(sample.image, matrix, SIZE)  # RGB: channel 0 of the tensor is red
        assert torch.equal(item["image"], torch.from_numpy(crop))
        assert np.allclose(item["landmarks_crop"].numpy(), transform_points(matrix, sample.landmarks_img), atol=1e-4)

    def test_invisible_points_are_kept(self, tmp_path):
        dataset = write_dataset(tmp_path)
        data = training_set(dataset)
        item = data[0]
        placeholder = transform_points(item["matrix"].numpy(), np.zeros((1, 2), np.float32))[0]
        assert np.allclose(item["landmarks_crop"][5].numpy(), placeholder, atol=1e-4)
        assert item["point_weight"][5] == 0 and not item["visible"][5] and not data.targets(item)[5].any()
        assert item["point_weight"].sum() == 20

    def test_targets_match_the_points(self, tmp_path):
        train = training_set(write_dataset(tmp_path), augment=AugmentConfig(), seed=3)
        item = train[4]
        codec = HeatmapCodec(SIZE, HEATMAP, sigma=1.0)
        decoded, _ = codec.decode(train.targets(item)[:21].numpy())
        expected = codec.to_heatmap(item["landmarks_crop"].numpy())
        inner = (item["point_weight"].numpy() > 0) & ((expected >= 1) & (expected <= HEATMAP - 2)).all(axis=1)
        assert inner.sum() >= 10 and np.abs(decoded[inner] - expected[inner]).max() < 0.01

    def test_deterministic_per_seed_epoch_index(self, tmp_path):
        train = training_set(write_dataset(tmp_path), augment=dict.fromkeys(PHOTOMETRIC, 1.0), seed=7)
        first = train[3]
        assert_same(first, train[3])
        assert not torch.equal(first["image"], train[4]["image"])
        train.set_epoch(1)
        assert train.epoch == 1
        assert not torch.equal(first["image"], train[3]["image"])
        assert not torch.equal(first["matrix"], train[3]["matrix"])
        train.set_epoch(0)
        assert_same(first, train[3])
        other = training_set(train.dataset, augment=dict.fromkeys(PHOTOMETRIC, 1.0), seed=8)
        assert not torch.equal(first["matrix"], other[3]["matrix"])

    def test_dataloader_workers_match_in_process(self, tmp_path):
        train = training_set(write_dataset(tmp_path), augment=AugmentConfig(), seed=1)
        loader = DataLoader(
            train,
            batch_size=3,
            num_workers=2,
            multiprocessing_context="spawn",
            worker_init_fn=seed_worker,
            persistent_workers=True,
        )
        epochs = []
        for epoch in (0, 1):
            train.set_epoch(epoch)  # reaches the persistent workers through shared memory
            batches = list(loader)
            expected = [default_collate([train[i] for i in range(j, j + 3)]) for j in (0, 3)]
            # Bit-exact on purpose: a sample is a function of (seed, epoch, index) alone, built by the same
            # single-threaded code in a worker and in-process (no batched float arithmetic); that is the feature.
            for got, want in zip(batches, expected, strict=True):
                assert_same(got, want)
            epochs.append(batches)
        assert not torch.equal(epochs[0][0]["image"], epochs[1][0]["image"])

    def test_worker_seeds_differ(self):
        loader = DataLoader(
            Draws(), batch_size=None, num_workers=2, multiprocessing_context="spawn", worker_init_fn=seed_worker
        )
        (id_a, *draws_a), (id_b, *draws_b) = list(loader)
        assert {id_a, id_b} == {0, 1}
        for a, b in zip(draws_a, draws_b, strict=True):
            assert not np.array_equal(np.asarray(a), np.asarray(b))

    def test_corrupt_image_names_the_file(self, tmp_path):
        train = training_set(write_dataset(tmp_path, corrupt=4), augment=AugmentConfig())
        with pytest.raises(DataError, match=r"face_4\.png.*(annotation: .*list\.txt:5)"):
            train[4]
        loader = DataLoader(train, batch_size=2, num_workers=2, multiprocessing_context="spawn")
        with pytest.raises(DataError, match=r"face_4\.png") as error:
            list(loader)
        # Free the loader's iterator now: left to the cyclic GC, its workers take 5 s each to notice the shutdown.
        traceback.clear_frames(error.tb)

    def test_bad_box_names_the_file(self, tmp_path):
        dataset = write_dataset(tmp_path, count=1)
        record = dataset.records[0]
        dataset.records[0] = LandmarkRecord(record.image_path, record.landmarks_img, record.visible, np.zeros(4))
        with pytest.raises(DataError, match=r"face_0\.png: cannot build training sample 0: invalid box"):
            training_set(dataset)[0]

    def test_from_config(self, tmp_path):
        dataset = write_dataset(tmp_path)
        cfg = DataConfig(scheme="aflw", input_size=SIZE, heatmap_size=HEATMAP, codec="awing_official", boundary=False)
        train = LandmarkTrainingSet.from_config(dataset, cfg, train=True, seed=5)
        assert train.augmenter.config == cfg.augment and train.seed == 5 and train.codec.mode == "awing_official"
        assert "boundary" not in train[0] and train.targets(train[0]).shape == (21, HEATMAP, HEATMAP)
        assert LandmarkTrainingSet.from_config(dataset, cfg, train=False).augmenter is None

    def test_errors(self, tmp_path):
        dataset = write_dataset(tmp_path, count=1)
        with pytest.raises(ValueError, match="scheme 98 has 98 points but the dataset's scheme 21 has 21"):
            LandmarkTrainingSet(dataset, scheme="wflw")
        with pytest.raises(ValueError, match="input_size 64 must be a multiple of heatmap_size 24"):
            LandmarkTrainingSet(dataset, input_size=64, heatmap_size=24)
        with pytest.raises(ValueError, match="has no 'scheme' attribute"):
            LandmarkTrainingSet([dataset[0]])
        with pytest.raises(TypeError, match="augment must be an AugmentConfig"):
            training_set(dataset, augment="strong")
        with pytest.raises(ValueError, match="crop_scale must be a positive finite number, got 0"):
            training_set(dataset, crop_scale=0)
        with pytest.raises(ValueError, match="mode must be one of"):
            training_set(dataset, codec_mode="gaussian")
        with pytest.raises(ValueError, match="epoch must be a non-negative int"):
            training_set(dataset).set_epoch(-1)

    def test_real_aflw(self, shared_data):
        from awing.data import AFLWDataset

        train = LandmarkTrainingSet(AFLWDataset(shared_data / "aflw-21", split="val"), augment=AugmentConfig())
        for index in (0, 1, 2):
            item = train[index]
            target = train.targets(item)
            decoded, _ = train.codec.decode(target[:21].numpy())
            expected = train.codec.to_heatmap(item["landmarks_crop"].numpy())
            # DARK's modulation biases points near the edge; 3 px inside, the round trip is within 0.05 px
            inner = (item["point_weight"].numpy() > 0) & ((expected >= 3) & (expected <= 60)).all(axis=1)
            assert inner.sum() >= 5 and np.abs(decoded[inner] - expected[inner]).max() < 0.05
            assert target[21].max() == 1.0
