from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from awing.losses.focal import SigmoidFocalLoss, focal_prior_bias, sigmoid_focal_loss


def reference(x: float, t: float, alpha: float, gamma: float) -> float:
    """The soft-target formula of methods.md §7, written with math on one element."""
    p = 1 / (1 + math.exp(-x))
    return -(alpha * t * (1 - p) ** gamma * math.log(p) + (1 - alpha) * (1 - t) * p**gamma * math.log(1 - p))


class TestSigmoidFocalLoss:
    def test_smoke(self, device, dtype):
        logits = torch.randn(3, 7, device=device, dtype=dtype)
        targets = torch.rand(3, 7, device=device, dtype=dtype)
        loss = sigmoid_focal_loss(logits, targets)
        assert loss.shape == (3, 7) and loss.dtype == dtype and torch.isfinite(loss).all() and (loss >= 0).all()

    def test_gamma_zero_is_alpha_weighted_bce(self, device):
        logits = torch.randn(50, device=device, dtype=torch.float64) * 3
        targets = (torch.rand(50, device=device) > 0.5).to(torch.float64)
        alpha = 0.25
        weight = alpha * targets + (1 - alpha) * (1 - targets)
        expected = F.binary_cross_entropy_with_logits(logits, targets, weight=weight, reduction="none")
        torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=0.0), expected)

    def test_hard_targets_match_alpha_t_form(self):
        logits = torch.tensor([2.0, -1.0, 0.5, -3.0], dtype=torch.float64)
        targets = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
        p = torch.sigmoid(logits)
        p_t = torch.where(targets == 1, p, 1 - p)
        alpha_t = torch.where(targets == 1, 0.25, 0.75)
        expected = -alpha_t * (1 - p_t) ** 2 * torch.log(p_t)
        torch.testing.assert_close(sigmoid_focal_loss(logits, targets), expected)

    def test_soft_targets_hard_coded(self):
        logits = torch.tensor([2.0, -1.0, 0.0, 1.5], dtype=torch.float64)
        targets = torch.tensor([1.0, 0.0, 0.6, 0.3], dtype=torch.float64)
        out = sigmoid_focal_loss(logits, targets)
        expected = [reference(x, t, 0.25, 2.0) for x, t in zip(logits.tolist(), targets.tolist(), strict=True)]
        torch.testing.assert_close(out, torch.tensor(expected, dtype=torch.float64))
        # x = 0, t = 0.6: p = 0.5, 0.25 * 0.6 * 0.25 * ln 2 + 0.75 * 0.4 * 0.25 * ln 2
        assert out[2].item() == pytest.approx(0.1125 * math.log(2), rel=1e-12)

    def test_reductions_and_normalizer(self):
        logits, targets = torch.randn(4, 5), torch.rand(4, 5)
        per = sigmoid_focal_loss(logits, targets, reduction="none")
        assert per.shape == (4, 5)
        torch.testing.assert_close(sigmoid_focal_loss(logits, targets, reduction="sum"), per.sum())
        torch.testing.assert_close(sigmoid_focal_loss(logits, targets, reduction="mean"), per.mean())
        torch.testing.assert_close(sigmoid_focal_loss(logits, targets, reduction="sum", normalizer=4), per.sum() / 4)
        # the positive count is clamped to >= 1 (methods.md §7)
        torch.testing.assert_close(sigmoid_focal_loss(logits, targets, reduction="sum", normalizer=0), per.sum())
        torch.testing.assert_close(
            sigmoid_focal_loss(logits, targets, reduction="sum", normalizer=torch.tensor(2.0)), per.sum() / 2
        )

    def test_weight_masks_elements(self):
        logits, targets = torch.randn(6), torch.rand(6)
        weight = torch.tensor([1.0, 0.0, 1.0, 0.0, 2.0, 1.0])
        per = sigmoid_focal_loss(logits, targets)
        torch.testing.assert_close(
            sigmoid_focal_loss(logits, targets, weight=weight, reduction="sum"), (per * weight).sum()
        )

    def test_large_logits_are_finite(self):
        logits = torch.tensor([100.0, -100.0, 100.0], requires_grad=True)
        targets = torch.tensor([0.0, 1.0, 1.0])
        loss = sigmoid_focal_loss(logits, targets, reduction="none")
        assert torch.isfinite(loss).all()
        assert loss[0].item() == pytest.approx(0.75 * 100) and loss[1].item() == pytest.approx(0.25 * 100)
        loss.sum().backward()
        assert torch.isfinite(logits.grad).all()

    def test_errors(self):
        x = torch.zeros(3)
        with pytest.raises(ValueError, match="same shape"):
            sigmoid_focal_loss(x, torch.zeros(4))
        with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]"):
            sigmoid_focal_loss(x, torch.tensor([0.0, 1.5, 0.0]))
        with pytest.raises(ValueError, match="alpha"):
            sigmoid_focal_loss(x, x, alpha=1.5)
        with pytest.raises(ValueError, match="gamma"):
            sigmoid_focal_loss(x, x, gamma=-1)
        with pytest.raises(ValueError, match="reduction"):
            sigmoid_focal_loss(x, x, reduction="avg")
        with pytest.raises(ValueError, match="normalizer"):
            sigmoid_focal_loss(x, x, reduction="mean", normalizer=3)
        with pytest.raises(TypeError, match="dtype"):
            sigmoid_focal_loss(x, x.double())
        with pytest.raises(TypeError, match="torch.Tensor"):
            sigmoid_focal_loss([0.0], x)

    def test_gradcheck(self):
        logits = torch.randn(6, dtype=torch.float64, requires_grad=True)
        targets = torch.rand(6, dtype=torch.float64)
        assert torch.autograd.gradcheck(
            lambda x: sigmoid_focal_loss(x, targets, reduction="sum", normalizer=3), (logits,)
        )

    def test_module_equals_functional(self):
        logits, targets = torch.randn(2, 9), torch.rand(2, 9)
        weight = torch.rand(2, 9)
        module = SigmoidFocalLoss(alpha=0.4, gamma=1.5, reduction="sum")
        expected = sigmoid_focal_loss(logits, targets, 0.4, 1.5, "sum", weight=weight, normalizer=5)
        torch.testing.assert_close(module(logits, targets, weight=weight, normalizer=5), expected)
        assert "alpha=0.4" in repr(module)
        with pytest.raises(ValueError, match="gamma"):
            SigmoidFocalLoss(gamma=-2)


class TestFocalPriorBias:
    def test_value(self):
        bias = focal_prior_bias(0.01)
        assert bias == pytest.approx(-math.log(99))
        assert bias == pytest.approx(-4.59512, abs=1e-5)
        assert torch.sigmoid(torch.tensor(bias, dtype=torch.float64)).item() == pytest.approx(0.01)

    @pytest.mark.parametrize("prior", [0.0, 1.0, -0.1, "0.01"])
    def test_errors(self, prior):
        with pytest.raises(ValueError, match="prior"):
            focal_prior_bias(prior)
