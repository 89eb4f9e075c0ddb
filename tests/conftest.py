"""Shared fixtures."""
from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """One intra-op torch thread: tiny tensors gain nothing from more, OpenMP spin-waits on a small
    shared machine made them 10× slower, and a reference run then computes exactly as one-thread
    subprocesses do."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
