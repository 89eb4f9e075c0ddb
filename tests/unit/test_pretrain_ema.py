"""The EMA target of BYOL and MoCo under the engine's real `pretrain()`.

After optimiser step k (k = 0 … K−1) the target moves to τ_k · target + (1 − τ_k) · online, with
τ_k = 1 − (1 − τ_base)(cos(πk/K) + 1)/2 (BYOL, Grill et al. 2020, §3.2): the first update uses
`momentum_base` itself. The target after the run is computed here from the online weights seen at
every step, and must match to float precision.
"""
from __future__ import annotations

import pytest
import torch
from lightly.utils.scheduler import cosine_schedule

import benchmark.backbones
import methods.registry
from benchmark.pretrain.config import PretrainConfig
from benchmark.pretrain.run import pretrain
from methods.base import _SCHEDULE_STEPS
from tests.fake_source import tiny_pool
from tests.unit.downstream_fakes import TinyEncoder

STEPS = 4
SMALL = {"byol": {"proj_hidden_dim": 16, "proj_output_dim": 8, "pred_hidden_dim": 16, "momentum_base": 0.9},
         "moco": {"proj_hidden_dim": 16, "proj_output_dim": 8, "queue_size": 16, "momentum_base": 0.9}}

pytestmark = pytest.mark.usefixtures("one_thread")


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def recording(cls):
    """`cls` keeping, at every loss() call, a copy of the online side of each momentum pair: at call k
    it holds the weights after k optimiser steps."""

    class Recording(cls):
        instances: list = []

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.initial_targets = [_params(target) for _, target in self.momentum_pairs()]
            self.online_seen: list[list[list[torch.Tensor]]] = []
            Recording.instances.append(self)

        def loss(self, views):
            self.online_seen.append([_params(online) for online, _ in self.momentum_pairs()])
            return super().loss(views)

    return Recording


@pytest.mark.parametrize("name", ["byol", "moco"])
def test_the_target_follows_the_online_network_by_ema_under_pretrain(name, tmp_path, monkeypatch):
    cls = recording(methods.registry.get_method(name))
    monkeypatch.setattr(methods.registry, "get_method", lambda _: cls)
    monkeypatch.setattr(benchmark.backbones, "build_backbone", lambda *a, **k: TinyEncoder())
    cfg = PretrainConfig(method=name, resolution=16, steps=STEPS, batch_size=4, hparams=SMALL[name])
    final = pretrain(cfg, tiny_pool(tmp_path / "pool"), tmp_path / "runs", progress=False)
    assert final.exists()
    (method,) = cls.instances
    assert len(method.online_seen) == STEPS
    # The target starts as a copy of the online network.
    for initial, online in zip(method.initial_targets, method.online_seen[0], strict=True):
        assert all(torch.equal(a, b) for a, b in zip(initial, online, strict=True))

    online_after = [*method.online_seen[1:], [_params(online) for online, _ in method.momentum_pairs()]]
    expected = [list(t) for t in method.initial_targets]
    base = SMALL[name]["momentum_base"]
    for k, online in enumerate(online_after):
        m = cosine_schedule(round(k / STEPS * _SCHEDULE_STEPS), _SCHEDULE_STEPS + 1, base, 1.0)
        expected = [[m * t + (1 - m) * o for t, o in zip(ts, os, strict=True)]
                    for ts, os in zip(expected, online, strict=True)]
    for (_, target), want, initial in zip(method.momentum_pairs(), expected, method.initial_targets, strict=True):
        got = _params(target)
        assert any(not torch.equal(g, i) for g, i in zip(got, initial, strict=True)), "the target never moved"
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)


def test_momentum_progress_is_clamped_to_the_schedule():
    """Progress below 0 uses momentum_base; above 1 it is 1 and the target stays where it is."""
    torch.manual_seed(0)
    method = methods.registry.get_method("byol")(TinyEncoder(), **SMALL["byol"])
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(1.0)  # the online network moved away from its copy
    target = _params(method.target_encoder)
    method.update_momentum(7.0)
    assert all(torch.equal(a, b) for a, b in zip(_params(method.target_encoder), target, strict=True))
    method.update_momentum(-3.0)
    base = SMALL["byol"]["momentum_base"]
    for got, old, online in zip(_params(method.target_encoder), target, _params(method.encoder), strict=True):
        torch.testing.assert_close(got, base * old + (1 - base) * online)
