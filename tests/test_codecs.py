"""Tests of awing.codecs.HeatmapCodec: construction, frames, encode/decode in both modes, round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from awing.codecs import OFFICIAL_SIGMA, HeatmapCodec


def _random_points(rng: np.random.Generator, count: int, size: int = 64, margin: float = 2.0) -> np.ndarray:
    return rng.uniform(margin, size - 1 - margin, (count, 2)).astype(np.float32)


class TestConstruction:
    def test_defaults(self):
        codec = HeatmapCodec()
        assert codec.input_size == (256, 256)
        assert codec.heatmap_size == (64, 64)
        assert codec.stride == (4.0, 4.0)
        assert codec.sigma == 1.5
        assert codec.mode == "subpixel"
        assert "heatmap_size=(64, 64)" in repr(codec)

    def test_pairs_are_width_height(self):
        codec = HeatmapCodec(input_size=(192, 256), heatmap_size=(48, 32))
        assert codec.stride == (4.0, 8.0)
        assert codec.encode(np.zeros((3, 2))).shape == (3, 32, 48)

    def test_official_sigma_is_fixed(self):
        assert HeatmapCodec(mode="awing_official").sigma == OFFICIAL_SIGMA == 1.75
        assert HeatmapCodec(mode="awing_official", sigma=1.75).sigma == 1.75

    @pytest.mark.parametrize("size", [0, -4, 2.5, (64,), (64, 0), "64", True, (64, 64, 64)])
    def test_bad_size(self, size):
        with pytest.raises(ValueError, match="heatmap_size must be a positive int or a \\(W, H\\) pair"):
            HeatmapCodec(heatmap_size=size)
        with pytest.raises(ValueError, match="input_size"):
            HeatmapCodec(input_size=size)

    def test_tiny_heatmap(self):
        with pytest.raises(ValueError, match="at least 3 x 3"):
            HeatmapCodec(heatmap_size=(2, 64))

    def test_bad_mode(self):
        with pytest.raises(ValueError, match="mode must be one of .*'subpixel'.* got 'dark'"):
            HeatmapCodec(mode="dark")

    @pytest.mark.parametrize("sigma", [0, -1.0, math.nan, math.inf, "1.5", True])
    def test_bad_sigma(self, sigma):
        with pytest.raises(ValueError, match="sigma must be a positive finite number"):
            HeatmapCodec(sigma=sigma)

    def test_official_rejects_other_sigma(self):
        with pytest.raises(ValueError, match="fixed std 1.75"):
            HeatmapCodec(mode="awing_official", sigma=2.0)


class TestFrames:
    def test_golden(self):
        codec = HeatmapCodec(256, 64)
        crop = np.array([[1.5, -0.5], [255.5, 127.5]], dtype=np.float32)
        expected = np.array([[0.0, -0.5], [63.5, 31.5]], dtype=np.float32)  # (x + 0.5) / 4 - 0.5
        np.testing.assert_allclose(codec.to_heatmap(crop), expected)
        np.testing.assert_allclose(codec.to_crop(expected), crop)

    def test_per_axis_stride(self):
        codec = HeatmapCodec(input_size=(256, 128), heatmap_size=(64, 64))
        np.testing.assert_allclose(codec.to_heatmap(np.array([9.5, 9.5])), [2.0, 4.5])

    def test_round_trip_numpy_and_torch(self, device):
        codec = HeatmapCodec(256, 64)
        points = np.random.default_rng(0).uniform(-5, 260, (2, 5, 2)).astype(np.float32)
        back = codec.to_crop(codec.to_heatmap(points))
        assert back.dtype == np.float32 and back.shape == points.shape
        np.testing.assert_allclose(back, points, atol=1e-4)
        tensor = torch.from_numpy(points).to(device)
        out = codec.to_heatmap(tensor)
        assert isinstance(out, torch.Tensor) and out.device == tensor.device
        np.testing.assert_allclose(out.cpu().numpy(), codec.to_heatmap(points), atol=1e-6)

    def test_bad_shape(self):
        with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\), got \(4, 3\)"):
            HeatmapCodec().to_heatmap(np.zeros((4, 3)))


class TestEncodeSubpixel:
    def test_golden_values(self):
        codec = HeatmapCodec(sigma=1.5)
        heatmaps = codec.encode(np.array([[20.3, 40.7]]))
        assert heatmaps.shape == (1, 64, 64) and heatmaps.dtype == np.float32
        # pixel (x=21, y=40): d^2 = 0.7^2 + 0.7^2 = 0.98
        assert heatmaps[0, 40, 21] == pytest.approx(math.exp(-0.98 / 4.5), rel=1e-6)
        assert heatmaps[0, 41, 20] == pytest.approx(math.exp(-(0.09 + 0.09) / 4.5), rel=1e-6)
        assert heatmaps.max() < 1.0  # the peak 1 lies between pixels

    def test_integer_point_peak_is_one(self):
        heatmaps = HeatmapCodec().encode(np.array([[10.0, 7.0]]))
        assert heatmaps[0, 7, 10] == 1.0
        assert np.unravel_index(heatmaps[0].argmax(), (64, 64)) == (7, 10)

    @pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
    def test_matches_formula_and_radial_truncation(self, sigma):
        points = _random_points(np.random.default_rng(1), 6)
        heatmaps = HeatmapCodec(sigma=sigma).encode(points)
        ys, xs = np.mgrid[0:64, 0:64]
        for channel, (x, y) in zip(heatmaps, points.astype(np.float64), strict=True):
            d2 = (xs - x) ** 2 + (ys - y) ** 2
            expected = np.where(d2 <= 9 * sigma**2, np.exp(-d2 / (2 * sigma**2)), 0.0)
            np.testing.assert_allclose(channel, expected, atol=2e-6)
            assert (channel[d2 > 9 * sigma**2 + 1e-3] == 0).all()
            assert (channel[d2 < 9 * sigma**2 - 1e-3] > 0).all()

    def test_invalid_points_give_zero_channels(self):
        points = np.array(
            [[-0.6, 10], [63.5, 10], [10, 64.0], [10, -0.51], [np.nan, 3], [3, np.nan], [-0.5, 10], [63.49, 63.49]]
            + [[5, 5]],
            dtype=np.float32,
        )
        visible = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0], dtype=bool)
        heatmaps = HeatmapCodec().encode(points, visible)
        assert np.isfinite(heatmaps).all()
        np.testing.assert_array_equal(heatmaps.reshape(9, -1).max(axis=1) > 0, [0, 0, 0, 0, 0, 0, 1, 1, 0])

    def test_support_is_closed_disc(self):
        """r = 3 sigma exactly is kept (exp(-4.5)); just beyond it, and every value below exp(-4.5), is 0."""
        heatmap = HeatmapCodec(sigma=1.5).encode(np.array([[10.5, 20.0]]))[0]
        assert heatmap[20, 15] == pytest.approx(math.exp(-4.5), rel=1e-6)  # dx = 4.5, dy = 0
        assert heatmap[20, 6] == pytest.approx(math.exp(-4.5), rel=1e-6)  # dx = -4.5
        assert heatmap[20, 16] == 0 and heatmap[21, 15] == 0 and heatmap[20, 5] == 0
        assert ((heatmap == 0) | (heatmap >= np.float32(math.exp(-4.5)) * (1 - 1e-6))).all()

    @pytest.mark.parametrize("mode", ["subpixel", "awing_official"])
    def test_batched_tensor_on_device_equals_numpy(self, device, mode):
        """(B, K, 2) tensors -> (B, K, H, W) on their device, equal to the numpy encoding of each face."""
        rng = np.random.default_rng(3)
        points = rng.uniform(-3, 66, (2, 3, 40, 2)).astype(np.float32)  # some outside the grid
        points[0, 1, 5] = (np.nan, 7.0)
        visible = rng.random((2, 3, 40)) < 0.8
        codec = HeatmapCodec(mode=mode)
        got = codec.encode(torch.from_numpy(points).to(device), torch.from_numpy(visible).to(device))
        assert isinstance(got, torch.Tensor) and got.shape == (2, 3, 40, 64, 64) and got.dtype == torch.float32
        assert got.device.type == device.type
        for index in np.ndindex(2, 3):
            expected = codec.encode(points[index], visible[index])
            assert isinstance(expected, np.ndarray)
            np.testing.assert_allclose(got[index].cpu().numpy(), expected, rtol=0, atol=1e-6)
        assert (got.flatten(-2).amax(-1) > 0).sum() >= 150  # most channels are drawn
        f64 = codec.encode(torch.from_numpy(points).double(), visible=visible)  # numpy visibility, float64 points
        assert f64.dtype == torch.float32 and torch.equal(f64, got.cpu())

    def test_accepts_tensor_and_list_points(self):
        points = np.array([[3.25, 9.5]], dtype=np.float32)
        codec = HeatmapCodec()
        tensor = codec.encode(torch.from_numpy(points))
        assert isinstance(tensor, torch.Tensor)  # tensor in, tensor out
        np.testing.assert_array_equal(tensor.numpy(), codec.encode(points))
        np.testing.assert_array_equal(codec.encode([[3.25, 9.5]]), codec.encode(points))
        pair = np.array([[3.25, 9.5], [40.0, 20.5]], dtype=np.float32)
        flipped = codec.encode(pair[::-1], visible=np.array([True, False])[::-1])  # negative-stride views
        np.testing.assert_array_equal(flipped, codec.encode(pair[::-1].copy(), visible=[False, True]))

    def test_errors(self):
        codec = HeatmapCodec()
        with pytest.raises(ValueError, match=r"landmarks_hm must have shape \(\.\.\., K, 2\), got \(5,\)"):
            codec.encode(np.zeros(5))
        with pytest.raises(ValueError, match=r"landmarks_hm must have shape \(\.\.\., K, 2\), got \(2, 3\)"):
            codec.encode(torch.zeros(2, 3))
        with pytest.raises(ValueError, match=r"visible must have shape \(3,\), got \(2,\)"):
            codec.encode(np.zeros((3, 2)), visible=np.ones(2, dtype=bool))
        with pytest.raises(ValueError, match=r"visible must have shape \(2, 3\), got \(3,\)"):
            codec.encode(torch.zeros(2, 3, 2), visible=torch.ones(3, dtype=torch.bool))


class TestDecodeSubpixel:
    @pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
    def test_round_trip(self, sigma):
        points = _random_points(np.random.default_rng(2), 500)
        codec = HeatmapCodec(sigma=sigma)
        landmarks, scores = codec.decode(codec.encode(points))
        error = np.linalg.norm(landmarks - points, axis=1)
        assert error.mean() <= 0.05  # measured 0.0004 / 0.0015 / 0.008 for sigma 1 / 1.5 / 2
        assert error.max() <= 0.3
        assert (scores > 0.7).all()

    @pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
    def test_round_trip_without_modulation_is_exact(self, sigma):
        points = _random_points(np.random.default_rng(3), 500, margin=0.0)
        codec = HeatmapCodec(sigma=sigma, modulation=False)
        landmarks, _ = codec.decode(codec.encode(points))
        np.testing.assert_allclose(landmarks, points, atol=1e-4)

    def test_interior_round_trip_with_modulation(self):
        points = _random_points(np.random.default_rng(4), 300, margin=6.0)
        codec = HeatmapCodec(sigma=1.5)
        landmarks, _ = codec.decode(codec.encode(points))
        np.testing.assert_allclose(landmarks, points, atol=2e-3)

    def test_shapes_kinds_and_batch(self, device):
        rng = np.random.default_rng(5)
        codec = HeatmapCodec()
        batch = np.stack([codec.encode(_random_points(rng, 7)) for _ in range(3)])
        landmarks, scores = codec.decode(batch)
        assert isinstance(landmarks, np.ndarray) and landmarks.shape == (3, 7, 2) and scores.shape == (3, 7)
        assert landmarks.dtype == np.float32 and scores.dtype == np.float32
        tensor = torch.from_numpy(batch).to(device)
        t_landmarks, t_scores = codec.decode(tensor)
        assert t_landmarks.device == tensor.device and t_landmarks.shape == (3, 7, 2)
        np.testing.assert_allclose(t_landmarks.cpu().numpy(), landmarks, atol=1e-5)
        single, single_scores = codec.decode(tensor[1])
        assert single.shape == (7, 2) and single_scores.shape == (7,)
        np.testing.assert_allclose(single.cpu().numpy(), landmarks[1], atol=1e-5)
        flipped, _ = codec.decode(batch[..., ::-1])  # a negative-stride numpy view
        np.testing.assert_allclose(flipped[..., 0], 63 - landmarks[..., 0], atol=1e-4)
        f64, _ = codec.decode(tensor.double())
        assert f64.dtype == torch.float32
        np.testing.assert_allclose(f64.cpu().numpy(), landmarks, atol=1e-4)

    def test_score_is_peak(self):
        heatmaps = torch.zeros(1, 2, 64, 64)
        heatmaps[0, 0, 10, 20] = 0.7
        heatmaps[0, 1, 3, 4] = 0.2
        _, scores = HeatmapCodec().decode(heatmaps)
        torch.testing.assert_close(scores, torch.tensor([[0.7, 0.2]]))

    @pytest.mark.parametrize("modulation", [True, False])
    def test_zero_channel(self, modulation):
        landmarks, scores = HeatmapCodec(modulation=modulation).decode(torch.zeros(2, 3, 64, 64))
        assert torch.isfinite(landmarks).all() and (landmarks == 0).all() and (scores == 0).all()

    def test_spike_decodes_to_its_pixel(self):
        """A blurred spike is a centred Gaussian, also in a corner (the stencil moves inside the map)."""
        heatmaps = torch.zeros(1, 1, 64, 64)
        heatmaps[0, 0, 0, 63] = 1.0  # a corner: half the blur window is outside the map
        heatmaps_mid = torch.zeros(1, 1, 64, 64)
        heatmaps_mid[0, 0, 30, 12] = 1.0
        codec = HeatmapCodec()
        torch.testing.assert_close(codec.decode(heatmaps_mid)[0], torch.tensor([[[12.0, 30.0]]]))
        torch.testing.assert_close(codec.decode(heatmaps)[0], torch.tensor([[[63.0, 0.0]]]), atol=1e-4, rtol=0)

    def test_taylor_step_matches_formula(self):
        """Without modulation the offset is clamp(-Hs^-1 g, -0.5, 0.5) of the log-heatmap's central differences."""
        rng = np.random.default_rng(6)
        codec = HeatmapCodec(modulation=False)
        heatmaps = np.zeros((50, 64, 64), dtype=np.float64)
        expected = np.zeros((50, 2))
        for i in range(50):
            window = rng.uniform(0.05, 0.95, (3, 3))
            window[1, 1] = 1.0
            heatmaps[i, 20:23, 30:33] = window
            logs = np.log(window)
            g = np.array([logs[1, 2] - logs[1, 0], logs[2, 1] - logs[0, 1]]) / 2
            hxx = logs[1, 2] - 2 * logs[1, 1] + logs[1, 0]
            hyy = logs[2, 1] - 2 * logs[1, 1] + logs[0, 1]
            hxy = (logs[2, 2] - logs[2, 0] - logs[0, 2] + logs[0, 0]) / 4
            hess = np.array([[hxx, hxy], [hxy, hyy]])
            if hess[0, 0] < 0 and np.linalg.det(hess) > 0:
                step = np.clip(-np.linalg.solve(hess, g), -0.5, 0.5)
            else:
                step = 0.25 * np.sign([window[1, 2] - window[1, 0], window[2, 1] - window[0, 1]])
            expected[i] = [31 + step[0], 21 + step[1]]
        landmarks, _ = codec.decode(heatmaps)
        np.testing.assert_allclose(landmarks, expected, atol=1e-5)

    def test_saddle_falls_back_to_quarter_shift(self):
        window = np.array([[0.9, 0.5, 0.01], [0.9, 1.0, 0.95], [0.01, 0.5, 0.9]])  # strong x-y coupling: det < 0
        heatmaps = np.zeros((1, 64, 64))
        heatmaps[0, 9:12, 19:22] = window
        landmarks, _ = HeatmapCodec(modulation=False).decode(heatmaps)
        np.testing.assert_allclose(landmarks, [[20.25, 10.0]])

    def test_errors(self):
        codec = HeatmapCodec()
        with pytest.raises(ValueError, match=r"heatmaps must have shape \(B, K, 64, 64\) .* got \(1, 2, 32, 32\)"):
            codec.decode(torch.zeros(1, 2, 32, 32))
        with pytest.raises(ValueError, match="got \\(64, 64\\)"):
            codec.decode(torch.zeros(64, 64))
        with pytest.raises(TypeError, match="floating torch tensor or numpy array"):
            codec.decode(torch.zeros(1, 2, 64, 64, dtype=torch.int64))
        with pytest.raises(TypeError, match="floating torch tensor or numpy array"):
            codec.decode([[0.0]])


class TestOfficialMode:
    # 1-D profile of the 7x7 patch: exp(-k^2 / (2 * 1.75^2)), k = 0..3
    PROFILE = np.exp(-(np.arange(4) ** 2) / (2 * 1.75**2))

    def test_patch_values(self):
        codec = HeatmapCodec(mode="awing_official")
        heatmap = codec.encode(np.array([[20.2, 30.4]]))[0]
        assert heatmap[30, 20] == 1.0
        assert round(float(heatmap[30, 17]), 2) == 0.23 and round(float(heatmap[27, 20]), 2) == 0.23
        np.testing.assert_allclose(self.PROFILE, [1.0, 0.8494, 0.5205, 0.2301], atol=1e-4)
        rows, cols = np.nonzero(heatmap)
        assert (rows.min(), rows.max(), cols.min(), cols.max(), len(rows)) == (27, 33, 17, 23, 49)
        profile = np.concatenate((self.PROFILE[:0:-1], self.PROFILE))
        np.testing.assert_allclose(heatmap[27:34, 17:24], np.outer(profile, profile), rtol=1e-6)

    def test_patch_clipped_at_the_border(self):
        heatmap = HeatmapCodec(mode="awing_official").encode(np.array([[1.0, 62.9]]))[0]
        rows, cols = np.nonzero(heatmap)
        assert (rows.min(), rows.max(), cols.min(), cols.max()) == (60, 63, 0, 4)
        assert heatmap[63, 1] == 1.0

    @pytest.mark.parametrize(
        ("x_crop", "cell"),
        [(80.0, 20), (79.4, 19), (79.5, 20), (83.49, 20), (83.5, 21), (-0.5, 0), (255.49, 63), (0.0, 0)],
    )
    def test_cell_is_floor_of_corner_coordinate(self, x_crop, cell):
        """The official cell floor((x_crop + 0.5) / 4) equals floor(x_hm + 0.5) on our grid."""
        codec = HeatmapCodec(mode="awing_official")
        assert math.floor((x_crop + 0.5) / 4) == cell
        x_hm = codec.to_heatmap(np.array([[x_crop, 100.0]], dtype=np.float32))
        heatmap = codec.encode(x_hm)[0]
        assert np.unravel_index(heatmap.argmax(), heatmap.shape)[1] == cell

    def test_decode_shift_rule(self):
        heatmaps = torch.zeros(4, 64, 64)
        heatmaps[0, 10, 20], heatmaps[0, 10, 21], heatmaps[0, 10, 19] = 1.0, 0.5, 0.2  # right larger: +0.25
        heatmaps[0, 11, 20], heatmaps[0, 9, 20] = 0.1, 0.3  # above larger: -0.25
        heatmaps[1, 5, 6], heatmaps[1, 5, 7], heatmaps[1, 5, 5] = 1.0, 0.4, 0.4  # ties: no shift
        heatmaps[2, 0, 30], heatmaps[2, 0, 31], heatmaps[2, 1, 30] = 1.0, 0.9, 0.9  # top row: no shift
        heatmaps[3, 40, 63], heatmaps[3, 40, 62], heatmaps[3, 41, 63] = 1.0, 0.9, 0.9  # right column: no shift
        landmarks, scores = HeatmapCodec(mode="awing_official").decode(heatmaps)
        torch.testing.assert_close(landmarks, torch.tensor([[20.25, 9.75], [6.0, 5.0], [30.0, 0.0], [63.0, 40.0]]))
        torch.testing.assert_close(scores, torch.ones(4))

    def test_round_trip(self):
        points = _random_points(np.random.default_rng(7), 500, margin=1.0)
        codec = HeatmapCodec(mode="awing_official")
        landmarks, _ = codec.decode(codec.encode(points))
        error = np.abs(landmarks - points)
        assert error.max() <= 0.75 + 1e-6
        # The patch is symmetric about its cell, so the shift is 0 and the result is the cell itself.
        np.testing.assert_array_equal(landmarks, np.floor(points + 0.5))
