"""Tests of the ONNX export (crop -> heatmaps, dynamic batch) against PyTorch with onnxruntime."""

from __future__ import annotations

import json

import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from awing.cli import main  # noqa: E402
from awing.export import PARITY_TOLERANCE, _require, check_onnx, export_onnx  # noqa: E402
from awing.models import StackedHourglass, save_weights  # noqa: E402

SMALL = {"num_stacks": 2, "num_landmarks": 5, "features": 32, "depth": 2, "input_size": 64}


def _model(**overrides) -> StackedHourglass:
    torch.manual_seed(0)
    return StackedHourglass(**{**SMALL, **overrides})


class TestExportOnnx:
    def test_parity_dynamic_batch(self, tmp_path):
        model = _model()
        path = tmp_path / "m.onnx"
        diff = export_onnx(model, path)
        assert diff is not None and diff <= PARITY_TOLERANCE
        assert model.training  # the caller's model is left as it was
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["heatmaps", "boundary"]
        model.eval()
        for batch in (1, 3):
            x = torch.rand(batch, 3, 64, 64)
            heatmaps, boundary = session.run(None, {"input": x.numpy()})
            with torch.inference_mode():
                expected = model(x)[-1]
            assert heatmaps.shape == (batch, 5, 16, 16) and boundary.shape == (batch, 1, 16, 16)
            assert float((torch.from_numpy(heatmaps) - expected[:, :5]).abs().max()) <= 1e-4
            assert float((torch.from_numpy(boundary) - expected[:, 5:]).abs().max()) <= 1e-4

    def test_metadata(self, tmp_path):
        model = _model(num_landmarks=68)
        export_onnx(model, tmp_path / "m.onnx", check=False)
        metadata = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
        assert json.loads(metadata["awing.model_config"]) == model.config.to_dict()
        assert metadata["awing.scheme"] == "68" and metadata["awing.input_size"] == "64"

    def test_without_boundary(self, tmp_path):
        model = _model(with_boundary=False, num_stacks=1).eval()
        export_onnx(model, tmp_path / "m.onnx", check=False)
        assert check_onnx(model, tmp_path / "m.onnx", batch_sizes=(2,)) <= PARITY_TOLERANCE
        session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
        assert [o.name for o in session.get_outputs()] == ["heatmaps"]

    def test_parity_failure_raises(self, tmp_path):
        model = _model().eval()
        export_onnx(model, tmp_path / "m.onnx", check=False)
        with torch.no_grad():
            model.l1.bias += 1.0
        with pytest.raises(RuntimeError, match="onnxruntime differs from PyTorch by 1 > 0.0001"):
            check_onnx(model, tmp_path / "m.onnx")

    def test_errors(self, tmp_path):
        with pytest.raises(TypeError, match="expects a StackedHourglass, got Linear"):
            export_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx")
        with pytest.raises(ImportError, match=r"needs 'not_a_module_awing'.*pip install 'awing\[export\]'"):
            _require("not_a_module_awing")

    def test_cli(self, tmp_path, capsys):
        weights = save_weights(_model().eval(), tmp_path / "w.safetensors")
        out = tmp_path / "cli.onnx"
        assert main(["export", "--weights", str(weights), "--out", str(out)]) == 0
        captured = capsys.readouterr()
        assert captured.out.strip() == str(out) and "max abs difference" in captured.err
        assert main(["export", "--weights", str(tmp_path / "none.safetensors"), "--out", str(out)]) == 1
        assert "weights file not found" in capsys.readouterr().err
