"""Tests of awing.losses.native: the C kernel equals the eager implementation, builds, caches and falls back."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from awing.losses import AdaptiveWingLoss, adaptive_wing_loss, native

needs_kernel = pytest.mark.skipif(not native.available(), reason="the native AWing kernel could not be built here")


def heatmaps(shape, seed=0, density=0.3):
    """float32 targets in [0, 1] with exact 0, 0.2 and 1 values (and pixels over the map threshold), predictions."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=gen)
    target[target > density] = 0.0
    target.view(-1)[:: max(target.numel() // 7, 1)] = 0.2
    target.view(-1)[3 :: max(target.numel() // 5, 1)] = 1.0
    pred = target + 0.4 * torch.randn(shape, generator=gen)
    return pred, target


def loss_and_grad(fn, pred, *args, eager=False, **kwargs):
    leaf = pred.clone().requires_grad_()
    if eager:
        with native.disabled():
            loss = fn(leaf, *args, **kwargs)
    else:
        loss = fn(leaf, *args, **kwargs)
    loss.backward(torch.ones_like(loss))
    return loss.detach(), leaf.grad


@needs_kernel
class TestNativeEqualsEager:
    @pytest.mark.parametrize("shape", [(2, 5, 12, 10), (1, 1, 5, 7), (3, 2, 1, 9), (2, 3, 6, 1), (4, 4, 64, 64)])
    @pytest.mark.parametrize("kernel_size", [1, 3, 5])
    @pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
    def test_module(self, shape, kernel_size, reduction):
        pred, target = heatmaps(shape)
        visibility = (torch.rand(*shape[:2], 1, 1, generator=torch.Generator().manual_seed(1)) > 0.3).float()
        for weight in (None, visibility, torch.tensor(0.5)):
            module = AdaptiveWingLoss(kernel_size=kernel_size, reduction=reduction)
            got, got_grad = loss_and_grad(module, pred, target, weight)
            want, want_grad = loss_and_grad(module, pred, target, weight, eager=True)
            # float32 rounding: each element to 1e-6 of the largest (the two order their operations differently)
            torch.testing.assert_close(got, want, rtol=2e-5, atol=1e-6 * want.abs().max().item())
            torch.testing.assert_close(got_grad, want_grad, rtol=2e-5, atol=1e-6 * want_grad.abs().max().item())

    @pytest.mark.parametrize("constants", [{}, {"omega": 10.0, "theta": 0.3, "epsilon": 2.0, "alpha": 2.5}])
    def test_functional_against_float64(self, constants):
        pred, target = heatmaps((3, 4, 9, 11))
        weight = torch.rand(3, 4, 1, 1, generator=torch.Generator().manual_seed(2))  # one weight per heatmap
        got, got_grad = loss_and_grad(adaptive_wing_loss, pred, target, weight, **constants)
        double = (pred.double(), target.double(), weight.double())
        want, want_grad = loss_and_grad(adaptive_wing_loss, *double, **constants)
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=0)
        torch.testing.assert_close(got_grad.double(), want_grad, rtol=1e-4, atol=1e-10)

    def test_served_inputs(self):
        pred = torch.zeros(2, 3, 4, 4)
        assert native.serves(pred, None) and native.serves(pred, torch.ones(2, 3, 1, 1))
        assert native.serves(pred, torch.tensor(2.0))
        assert not native.serves(pred, torch.ones(2, 3, 4, 4))  # per-pixel weights: eager
        assert not native.serves(pred, torch.ones(4))
        assert not native.serves(pred.double(), None)
        with native.disabled():
            assert not native.serves(pred, None) and not native.available()
        assert native.available()

    def test_nan_prediction_gives_nan(self):
        pred, target = heatmaps((1, 2, 4, 4))
        pred[0, 1, 2, 3] = float("nan")
        got, grad = loss_and_grad(AdaptiveWingLoss(), pred, target)
        assert torch.isnan(got) and torch.isnan(grad[0, 1, 2, 3]) and torch.isfinite(grad[0, 0]).all()

    @pytest.mark.parametrize("bad, message", [(float("nan"), "min nan and max nan"), (1.5, "min 0 and max 1.5")])
    def test_target_range(self, bad, message):
        pred, target = heatmaps((2, 2, 4, 4))
        target[1, 0, 3, 3] = bad
        with pytest.raises(ValueError, match=message):
            AdaptiveWingLoss()(pred, target)

    def test_same_result_for_any_thread_count(self):
        pred, target = heatmaps((4, 9, 16, 16))
        threads = torch.get_num_threads()
        try:
            results = []
            for n in (1, 2, 3):
                torch.set_num_threads(n)
                results.append(loss_and_grad(AdaptiveWingLoss(), pred, target))
        finally:
            torch.set_num_threads(threads)
        # Bit-exact on purpose: the kernel sums each plane in a fixed order and reduces the per-plane sums in a
        # fixed order, so its result does not depend on the thread count (awing_kernel.c); that is the feature.
        for loss, grad in results[1:]:
            assert torch.equal(loss, results[0][0]) and torch.equal(grad, results[0][1])

    def test_loading_keeps_subnormal_numbers(self):
        """The kernel is built without -ffast-math, whose start-up code would flush subnormals process-wide."""
        assert (torch.tensor([1e-40]) * 1.0).item() != 0.0
        assert np.float32(1e-40) * np.float32(1.0) != 0.0


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env=os.environ | env, capture_output=True, text=True, timeout=300, check=True
    )


@needs_kernel
def test_builds_into_the_cache_dir(tmp_path):
    code = "from awing.losses import native; print(native.available(), native.cache_dir())"
    out = run_python(code, AWING_CACHE_DIR=str(tmp_path)).stdout.split()
    assert out == ["True", str(tmp_path)]
    built = list((tmp_path / "kernels").glob("awing_kernel-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    assert run_python(code, AWING_CACHE_DIR=str(tmp_path)).stdout.split()[0] == "True"
    assert built[0].stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert list((tmp_path / "kernels").iterdir()) == built  # no temporary files left


@needs_kernel
def test_corrupt_cached_kernel_is_rebuilt(tmp_path):
    code = "from awing.losses import native; print(native.available())"
    run_python(code, AWING_CACHE_DIR=str(tmp_path))
    (built,) = (tmp_path / "kernels").glob("awing_kernel-*.so")
    built.write_bytes(b"\x7fELF truncated")  # a half-written or corrupted cache entry
    assert run_python(code, AWING_CACHE_DIR=str(tmp_path)).stdout.split() == ["True"]
    assert built.stat().st_size > 1000  # rebuilt in place


def test_private_build_folder_is_removed(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    cache.write_text("")  # a file where the cache folder should be: not writable as a folder
    monkeypatch.setenv("AWING_CACHE_DIR", str(cache))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(native.tempfile, "tempdir", None)  # re-read TMPDIR
    native._kernel.cache_clear()
    try:
        native.available()
        assert not list(tmp_path.glob("awing-kernel-*"))
    finally:
        monkeypatch.undo()
        native._kernel.cache_clear()


def test_disabled_by_environment():
    out = run_python("from awing.losses import native; print(native.available())", AWING_NATIVE="0").stdout
    assert out.strip() == "False"


def test_falls_back_when_the_compiler_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("AWING_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_compiler", lambda: "/bin/false")
    native._kernel.cache_clear()
    try:
        assert not native.available()
        pred, target = heatmaps((2, 3, 8, 8))
        loss, grad = loss_and_grad(AdaptiveWingLoss(), pred, target)
        want, want_grad = loss_and_grad(AdaptiveWingLoss(), pred, target, eager=True)
        assert torch.equal(loss, want) and torch.equal(grad, want_grad)
        assert not list(tmp_path.rglob("*.so"))
    finally:
        monkeypatch.undo()
        native._kernel.cache_clear()
