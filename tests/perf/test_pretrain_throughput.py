"""Pretraining throughput: end-to-end views/s of `pretrain()` against the model-only two-view step
ceiling (same backbone, resolution, batch, precision and compile setting, same process), and the
augmentation kernels that were chosen by measurement.

On a GPU the goal is end-to-end >= 95 % of the ceiling (issue 4); on a CPU only sanity is asserted
(there the augmentation competes with the model for the same cores). Both settings use SGD, as the
reference ceiling script in shared/perf does, so the ratio measures the input pipeline and the
engine, not the optimiser. Run with `make perf`; figures go to pytest-benchmark's extra_info.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.augment import ViewAugment, augment, default_views
from benchmark.data.cache import FrameCache

pytestmark = pytest.mark.perf

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
# (backbone, resolution, batch, compile, epochs, frames)
if CUDA:
    SETTINGS = [("efficientnet_lite0", 112, 256, False, 4, 4096),  # the standard preset's backbone/resolution
                ("resnet18", 224, 256, False, 4, 4096),
                ("resnet18", 224, 256, True, 4, 4096)]
    AUG_BATCH, AUG_FRAME, AUG_VIEW = 512, 256, 224
else:
    SETTINGS = [("resnet18", 32, 16, False, 2, 128)]
    AUG_BATCH, AUG_FRAME, AUG_VIEW = 128, 128, 64


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    """On CPU, one intra-op thread: on a small shared machine two spinning OpenMP threads per process
    made every kernel here 10-50× slower and the figures meaningless."""
    if CUDA:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pool(root: Path, n: int, size: int) -> FrameCache:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
    index = pd.DataFrame({"video_id": [f"v{i // 32}" for i in range(n)], "subject_id": [f"s{i // 64}" for i in range(n)],
                          "frame_idx": [i % 32 for i in range(n)], "label": -1, "split": "pretrain"})
    return FrameCache(root=root, frames=frames, index=index, class_names=[], meta={"fingerprint": f"perf{n}x{size}"})


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: f"{s[0]}-{s[1]}px-b{s[2]}{'-compiled' if s[3] else ''}")
def test_end_to_end_vs_model_only_ceiling(benchmark, tmp_path, setting):
    from benchmark.checkpoint import read_meta
    from benchmark.pretrain.ceiling import RATE_HPARAMS, model_only_views_per_s
    from benchmark.pretrain.config import PretrainConfig
    from benchmark.pretrain.run import pretrain

    backbone, resolution, batch, compile_, epochs, frames = setting
    cache_size = max(resolution, 256 if CUDA else resolution)
    pool = _pool(tmp_path / "pool", frames, cache_size)
    cfg = PretrainConfig(method="vicreg", backbone=backbone, resolution=resolution, steps=epochs * frames // batch,
                         batch_size=batch, hparams=dict(RATE_HPARAMS), compile=compile_)
    result: dict = {}

    def run_once():
        final = pretrain(cfg, pool, tmp_path / "runs", progress=False, checkpoint_every=10_000)
        result["meta"] = read_meta(final)

    benchmark.pedantic(run_once, rounds=1, iterations=1)
    end_to_end = result["meta"]["views_per_s"]
    ceiling = model_only_views_per_s(cfg, batch, steps=30 if CUDA else 6, device=DEVICE)
    ratio = end_to_end / ceiling
    info = {"device": torch.cuda.get_device_name() if CUDA else "cpu", "threads": torch.get_num_threads(),
            "backbone": backbone, "resolution": resolution, "batch": batch, "compile": compile_,
            "end_to_end_views_per_s": round(end_to_end, 1), "ceiling_views_per_s": round(ceiling, 1),
            "ratio": round(ratio, 3)}
    benchmark.extra_info.update(info)
    print(json.dumps(info))
    assert math.isfinite(end_to_end) and end_to_end > 0 and ceiling > 0
    if CUDA:
        assert ratio >= 0.95, info
    else:
        assert 0.2 < ratio < 1.5, info  # sane: the engine neither stalls nor outruns the bare model step


def _aug_frames() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (AUG_BATCH, AUG_FRAME, AUG_FRAME), dtype=torch.uint8, generator=g).to(DEVICE)


def _timed(benchmark, fn):
    def run():
        out = fn()
        if CUDA:
            torch.cuda.synchronize()
        return out

    return benchmark.pedantic(run, rounds=10 if CUDA else 5, iterations=1, warmup_rounds=2)


@pytest.mark.parametrize("view", ["view1", "view2", "identity"])
def test_augmentation_ms_per_batch(benchmark, view):
    frames = _aug_frames()
    cfg = {"view1": default_views()[0], "view2": default_views()[1], "identity": ViewAugment.identity()}[view]
    g = torch.Generator(device=DEVICE).manual_seed(0)
    out = _timed(benchmark, lambda: augment(frames, cfg, AUG_VIEW, g))
    benchmark.extra_info.update({"device": DEVICE.type, "batch": AUG_BATCH, "frame": AUG_FRAME, "view": AUG_VIEW})
    assert out.shape == (AUG_BATCH, 1, AUG_VIEW, AUG_VIEW)


@pytest.mark.parametrize("kernel", ["own_grouped_conv", "kornia_gaussian_blur2d"])
def test_blur_kernel_choice(benchmark, kernel):
    """Why benchmark/augment.py blurs with its own kernel: per-sample-sigma blur, ours vs kornia's."""
    import kornia

    from benchmark.augment import _blur

    x = _aug_frames()[:, :AUG_VIEW, :AUG_VIEW].float().unsqueeze(1) / 255
    cfg = default_views()[0]
    g = torch.Generator(device=DEVICE).manual_seed(0)
    scale = AUG_VIEW / 224
    sigma = (0.1 + 1.9 * torch.rand(AUG_BATCH, 1, device=DEVICE)).repeat(1, 2) * scale
    k = 2 * math.ceil(3 * 2.0 * scale) + 1
    if kernel == "own_grouped_conv":
        fn = lambda: _blur(x, cfg, torch.zeros(AUG_BATCH, device=DEVICE), g)  # noqa: E731
    else:
        fn = lambda: kornia.filters.gaussian_blur2d(x, (k, k), sigma, border_type="reflect", separable=True)  # noqa: E731
    out = _timed(benchmark, fn)
    assert out.shape == x.shape


@pytest.mark.parametrize("kernel", ["grid_sample", "roi_align_adaptive", "roi_align_1"])
def test_crop_kernel_choice(benchmark, kernel):
    """Why benchmark/augment.py crops with grid_sample: per-sample resized crops, three ways."""
    import torch.nn.functional as F
    from torchvision.ops import roi_align

    x = _aug_frames().float().unsqueeze(1) / 255
    b, s, h = AUG_BATCH, AUG_VIEW, AUG_FRAME
    frac = 0.5 + 0.5 * torch.rand(b, device=DEVICE)
    if kernel == "grid_sample":
        zero = torch.zeros_like(frac)
        theta = torch.stack([torch.stack([frac, zero, zero], 1), torch.stack([zero, frac, zero], 1)], 1)
        fn = lambda: F.grid_sample(x, F.affine_grid(theta, [b, 1, s, s], align_corners=False),  # noqa: E731
                                   align_corners=False)
    else:
        side = frac * h
        boxes = torch.stack([torch.arange(b, device=DEVICE, dtype=x.dtype), torch.zeros_like(side),
                             torch.zeros_like(side), side, side], 1)
        ratio = -1 if kernel == "roi_align_adaptive" else 1
        fn = lambda: roi_align(x, boxes, (s, s), 1.0, ratio, True)  # noqa: E731
    out = _timed(benchmark, fn)
    assert out.shape == (b, 1, s, s)


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
@pytest.mark.parametrize("backbone, resolution", [("efficientnet_lite0", 48), ("efficientnet_lite0", 112),
                                                  ("resnet18", 48)])
def test_memory_format_choice(benchmark, memory_format, backbone, resolution):
    """Why a CPU run lays its networks out in channels_last (benchmark.device, a preset's
    `cpu_memory_format`): one SGD step of a backbone with a linear head at the fine-tune batch of 32,
    in each layout; at the cpu and smoke tracks' 48 px and the standard track's 112 px, and ResNet-18,
    whose dense convolutions gain little from it."""
    from benchmark.backbones import build_backbone

    torch.manual_seed(0)
    encoder = build_backbone(backbone)
    model = torch.nn.Sequential(encoder, torch.nn.Linear(encoder.feat_dim, 5)).to(DEVICE)
    if memory_format == "channels_last":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(32, 1, resolution, resolution, device=DEVICE)
    y = torch.randint(0, 5, (32,), device=DEVICE)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    loss = _timed(benchmark, step)
    benchmark.extra_info.update({"device": DEVICE.type, "threads": torch.get_num_threads(), "batch": 32,
                                 "backbone": backbone, "resolution": resolution})
    assert torch.isfinite(loss)
