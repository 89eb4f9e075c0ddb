"""The model-only two-view step: the ceiling that end-to-end pretraining is measured against.

Forward, backward and optimiser step of the config's method on two views already on the device —
no frame gathering, no augmentation, no Lightning — with the same backbone, heads, batch,
resolution, precision and compile setting as `pretrain(cfg, ...)`. SGD with momentum, as in the
reference ceiling script (shared/perf/model_ceiling.py): the ratio end-to-end / ceiling then
measures the input pipeline and the engine, not the optimiser.
"""
from __future__ import annotations

import time

import torch

from benchmark.pretrain.config import PretrainConfig
from benchmark.pretrain.run import resolve_precision

_AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}

# The optimiser of the ceiling, also the one of the end-to-end runs measured against it (`sslbench
# doctor`, `make perf`): plain SGD at a small fixed rate. The rate does not change a step's cost, but a
# method's own rate can diverge without its optimiser: VICReg at its LARS rate (0.3) under plain SGD
# reached an infinite loss at step 5 (batch 256, 112 px, on an H200), and the run stops on that.
RATE_LR = 0.01
RATE_HPARAMS = {"optimizer": "sgd", "lr": RATE_LR, "warmup": 0.0}


def model_only_views_per_s(cfg: PretrainConfig, batch_size: int, steps: int, device: torch.device,
                           warmup: int | None = None) -> float:
    """Views per second of the bare two-view step for `cfg` on `device` (`warmup` steps untimed:
    allocator, cudnn autotuning and compilation happen there)."""
    from benchmark.backbones import build_backbone
    from benchmark.device import channels_last
    from methods.registry import get_method

    cuda = device.type == "cuda"
    precision = resolve_precision(cfg.precision, cuda)
    method = get_method(cfg.method)(build_backbone(cfg.backbone), **cfg.hparams).to(device)
    views = [torch.rand(batch_size, 1, cfg.resolution, cfg.resolution, device=device) for _ in range(2)]
    if precision == "bf16-true":
        method = method.to(torch.bfloat16)
        views = [v.to(torch.bfloat16) for v in views]
    if cuda or channels_last(device, cfg.cpu_memory_format):  # as the engine lays out the model
        method = method.to(memory_format=torch.channels_last)
    if cuda:  # and the views, on a GPU
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    opt = torch.optim.SGD(method.parameters(), lr=RATE_LR, momentum=0.9)
    loss_fn = torch.compile(method.loss) if cfg.compile else method.loss
    dtype = _AUTOCAST.get(precision)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = loss_fn(views)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        method.update_momentum(0.5)  # EMA methods pay for their target update in the engine too

    for _ in range(warmup if warmup is not None else (5 if cuda else 2)):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    return 2 * batch_size * steps / (time.perf_counter() - start)
