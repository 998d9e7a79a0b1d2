"""Shared fixtures. ``--device`` and ``--dtype`` select where device-aware tests run (kornia's discipline)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TESTS_DIR = Path(__file__).resolve().parent
DATA_DIR = TESTS_DIR / "data"
SHARED_DATA = TESTS_DIR.parent.parent / "shared" / "data"


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="torch device for device-aware tests: cpu or cuda")
    parser.addoption("--dtype", default="float32", help="float32 or float64")


@pytest.fixture
def device(request) -> torch.device:
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    return torch.device(name)


@pytest.fixture
def dtype(request) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[request.config.getoption("--dtype")]


@pytest.fixture
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """One intra-op thread for tests of tiny tensors: faster, and immune to OpenMP stalls on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
