"""Test configuration: torch is imported before tensorflow whenever both are needed in one
process (the other order has crashed on some builds), one torch thread in each pytest-xdist
process, and paths to shared data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# torch first: test modules that need both frameworks may then import tensorflow freely.
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One of pytest-xdist's processes (`tasks.py test` runs two on CI's two cores): torch keeps
    # one intra-op thread, or two processes' two spinning threads each share two cores (three
    # Adam epochs of a digits-sized MLP in each of two processes at once: 1.5 s with two threads,
    # 0.1 s with one). TensorFlow keeps its default (measured: no such slowdown).
    torch.set_num_threads(1)


@pytest.fixture
def shared_mnist() -> Path:
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the real MNIST test set is not present at {SHARED_MNIST}")
    return SHARED_MNIST
