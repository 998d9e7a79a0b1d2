from __future__ import annotations

import pytest
import torch

from awing.losses.noisy_anchor import cleanliness, noisy_anchor_weights, normalize_weights, select_candidates


class TestCleanliness:
    def test_hand_values(self, device, dtype):
        loc = torch.tensor([0.9, 0.5, 0.0, 1.0], device=device, dtype=dtype)
        cls = torch.tensor([0.1, 0.5, 0.8, 1.0], device=device, dtype=dtype)
        expected = torch.tensor([0.7, 0.5, 0.2, 1.0], device=device, dtype=dtype)  # 0.75 loc + 0.25 cls
        torch.testing.assert_close(cleanliness(loc, cls), expected)
        torch.testing.assert_close(cleanliness(loc, cls, alpha=0.5), (loc + cls) / 2)

    def test_no_gradient(self):
        loc = torch.tensor([0.4], requires_grad=True)
        assert not cleanliness(loc, torch.tensor([0.2])).requires_grad

    def test_errors(self):
        with pytest.raises(ValueError, match="same shape"):
            cleanliness(torch.zeros(2), torch.zeros(3))
        with pytest.raises(ValueError, match="alpha"):
            cleanliness(torch.zeros(2), torch.zeros(2), alpha=2.0)
        with pytest.raises(TypeError, match="floating-point"):
            cleanliness(torch.zeros(2, dtype=torch.long), torch.zeros(2))


class TestNoisyAnchorWeights:
    def test_hand_values(self):
        loc = torch.tensor([0.5, 0.0, 0.75], dtype=torch.float64)
        cls = torch.tensor([0.2, 0.0, 0.5], dtype=torch.float64)
        # f(0.5) = 2, f(0.2) = 1.25, f(0) = 1, f(0.75) = 4, f(0.5) = 2
        expected = torch.tensor([0.75 * 2 + 0.25 * 1.25, 1.0, 0.75 * 4 + 0.25 * 2], dtype=torch.float64)
        torch.testing.assert_close(noisy_anchor_weights(loc, cls), expected)
        torch.testing.assert_close(noisy_anchor_weights(loc, cls, gamma=2.0), expected**2)
        torch.testing.assert_close(noisy_anchor_weights(loc, cls, gamma=0.0), torch.ones(3, dtype=torch.float64))

    def test_clamp_keeps_weights_finite(self):
        w = noisy_anchor_weights(torch.tensor([1.0], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))
        assert w.item() == pytest.approx(1e6, rel=1e-6)

    def test_no_gradient_and_errors(self):
        assert not noisy_anchor_weights(torch.tensor([0.3], requires_grad=True), torch.tensor([0.3])).requires_grad
        with pytest.raises(ValueError, match="gamma"):
            noisy_anchor_weights(torch.zeros(1), torch.zeros(1), gamma=-1)


class TestNormalizeWeights:
    def test_preserves_total_loss(self):
        generator = torch.Generator().manual_seed(0)
        losses = torch.rand(20, generator=generator, dtype=torch.float64)
        weights = 1 + 3 * torch.rand(20, generator=generator, dtype=torch.float64)
        normalized = normalize_weights(weights, losses)
        torch.testing.assert_close((normalized * losses).sum(), losses.sum())
        torch.testing.assert_close(normalized / weights, torch.full_like(weights, (normalized / weights)[0].item()))

    def test_equal_losses_reduce_to_count_over_sum(self):
        weights = torch.tensor([1.0, 2.0, 5.0])
        torch.testing.assert_close(normalize_weights(weights, torch.full((3,), 0.7)), weights * 3 / 8)

    def test_zero_losses_and_errors(self):
        weights = torch.tensor([1.0, 2.0])
        torch.testing.assert_close(normalize_weights(weights, torch.zeros(2)), weights)
        assert normalize_weights(torch.zeros(0), torch.zeros(0)).shape == (0,)
        with pytest.raises(ValueError, match="same shape"):
            normalize_weights(weights, torch.zeros(3))


class TestSelectCandidates:
    def test_top_n_per_object(self):
        iou = torch.tensor(
            [
                [0.50, 0.00],
                [0.30, 0.40],  # top-2 of both objects: goes to object 1 (0.4 > 0.3)
                [0.00, 0.60],
                [0.20, 0.00],
                [0.10, 0.05],
            ]
        )
        assigned, overlap = select_candidates(iou, top_n=2)
        assert assigned.tolist() == [0, 1, 1, -1, -1]
        torch.testing.assert_close(overlap, torch.tensor([0.5, 0.4, 0.6, 0.0, 0.0]))
        assert select_candidates(iou, top_n=3)[0].tolist() == [0, 1, 1, 0, 1]  # object 1 also takes its 0.05

    def test_always_iou_and_zero_overlap(self):
        iou = torch.tensor([[0.9], [0.8], [0.7], [0.0]])
        assert select_candidates(iou, top_n=1)[0].tolist() == [0, -1, -1, -1]
        assert select_candidates(iou, top_n=1, always_iou=0.75)[0].tolist() == [0, 0, -1, -1]
        # more candidates than overlapping anchors: anchors with IoU 0 never become candidates
        assert select_candidates(iou, top_n=10)[0].tolist() == [0, 0, 0, -1]

    def test_empty_and_errors(self):
        assigned, overlap = select_candidates(torch.zeros(5, 0), top_n=3)
        assert assigned.tolist() == [-1] * 5 and overlap.tolist() == [0.0] * 5
        with pytest.raises(ValueError, match="top_n"):
            select_candidates(torch.zeros(3, 1), top_n=0)
        with pytest.raises(ValueError, match=r"\(A, G\)"):
            select_candidates(torch.zeros(3), top_n=1)
