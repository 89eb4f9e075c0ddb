"""The choices the engine makes for a device, checked on a CPU: where the frame cache lives, which
BatchNorm layers DDP synchronises, and the precision a config runs in."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.errors import UserError
from benchmark.pretrain.loader import RESIDENT_FRACTION, choose_placement, make_loader
from benchmark.pretrain.run import resolve_precision, sync_batchnorm
from benchmark.pretrain.sampler import PairSampler, parse_positives

pytestmark = pytest.mark.usefixtures("one_thread")
GIB = 2 ** 30


def test_the_cache_stays_resident_only_while_it_leaves_most_gpu_memory_to_the_model():
    free = 80 * GIB
    assert choose_placement(int(RESIDENT_FRACTION * free) - 1, free) == "resident"
    assert choose_placement(int(RESIDENT_FRACTION * free) + 1, free) == "streamed"
    assert choose_placement(10 * GIB, free, "streamed") == "streamed"  # forced either way
    assert choose_placement(70 * GIB, free, "resident") == "resident"


def test_a_bad_placement_is_named_even_on_a_cpu():
    frames = np.zeros((8, 16, 16), np.uint8)
    index = pd.DataFrame({"video_id": ["v"] * 8, "subject_id": ["s"] * 8, "frame_idx": range(8)})
    sampler = PairSampler(index, np.arange(8), parse_positives("same_frame"), batch_size=4, seed=0)
    loader = make_loader(frames, sampler, lambda: 0, 2, torch.device("cpu"))
    assert loader.placement == "cpu" and len(list(loader)) == 2
    with pytest.raises(UserError, match="frame placement 'pinned' is not one of auto, resident, streamed"):
        make_loader(frames, sampler, lambda: 0, 2, torch.device("cpu"), placement="pinned")


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "resnet18"])
def test_synchronised_batchnorm_computes_what_the_network_computed(backbone):
    """torch's converter (Lightning's sync_batchnorm=True) drops the ReLU6 fused into timm's
    BatchNormAct2d, so a DDP run would train another network than the one evaluated."""
    from benchmark.backbones import build_backbone

    torch.manual_seed(0)
    encoder = build_backbone(backbone).eval()
    x = torch.rand(2, 1, 32, 32)
    expected = encoder(x)
    synced = sync_batchnorm(encoder).eval()
    norms = [m for m in synced.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
    torch.testing.assert_close(synced(x), expected)


def test_precision_names():
    assert resolve_precision("auto", cuda=True) == "bf16-mixed"
    assert resolve_precision("auto", cuda=False) == "32-true"
    assert resolve_precision("32", cuda=True) == "32-true"
    assert resolve_precision("bf16-mixed", cuda=False) == "bf16-mixed"
