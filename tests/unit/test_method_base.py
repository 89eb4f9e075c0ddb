"""The method base class: hyper-parameter resolution, weight-decay groups, the fp32 loss guard and the
momentum schedule, exactly (what every method inherits decides how every method is trained)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmark.errors import UserError
from methods.base import SSLMethod, fp32_loss, resolve_hparams
from tests.unit.downstream_fakes import TinyEncoder


class Toy(SSLMethod):
    name = "toy"
    family = "information"
    defaults = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 1e-4, "warmup": 0.0, "batch_size": 4,
                "flag": False, "maybe": None, "label": "x"}

    def __init__(self, encoder, **hparams):
        super().__init__(encoder, **hparams)
        self.head = nn.Sequential(nn.Linear(encoder.feat_dim, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def test_overrides_keep_defaults_convert_ints_to_floats_and_keep_types():
    got = resolve_hparams(Toy, {"lr": 1, "batch_size": 8, "flag": True, "maybe": 3, "label": "y"})
    assert got == {"optimizer": "sgd", "lr": 1.0, "weight_decay": 1e-4, "warmup": 0.0, "batch_size": 8,
                   "flag": True, "maybe": 3, "label": "y"}
    assert type(got["lr"]) is float and type(got["batch_size"]) is int
    assert resolve_hparams(Toy, {}) == Toy.defaults and resolve_hparams(Toy, {}) is not Toy.defaults


@pytest.mark.parametrize(("overrides", "message"), [
    ({"tau": 1, "alpha": 2}, "method 'toy' has no hyper-parameter(s) alpha, tau; known: batch_size, flag, label, "
                             "lr, maybe, optimizer, warmup, weight_decay (and the optimiser's lars_clip, and a "
                             "continued run's encoder_lr_scale, encoder_bn, head_warmup_steps)"),
    ({"lars_clip": "no"}, "method 'toy': hyper-parameter lars_clip expects bool (default True), got 'no'"),
    ({"lr": "fast"}, "method 'toy': hyper-parameter lr expects float (default 0.1), got 'fast'"),
    ({"lr": True}, "method 'toy': hyper-parameter lr expects float (default 0.1), got True"),
    ({"batch_size": 8.0}, "method 'toy': hyper-parameter batch_size expects int (default 4), got 8.0"),
    ({"batch_size": False}, "method 'toy': hyper-parameter batch_size expects int (default 4), got False"),
    ({"flag": 1}, "method 'toy': hyper-parameter flag expects bool (default False), got 1"),
    ({"label": 5}, "method 'toy': hyper-parameter label expects str (default 'x'), got 5"),
    ({"optimizer": "adagrad"}, "method 'toy': optimizer must be one of lars, sgd, adamw, got 'adagrad'"),
    ({"encoder_bn": "fixed"}, "method 'toy': encoder_bn must be one of train, frozen, got 'fixed'"),
    ({"encoder_lr_scale": -0.1}, "method 'toy': encoder_lr_scale multiplies the encoder's learning rate and must "
                                 "be >= 0, got -0.1"),
    ({"head_warmup_steps": 2.5}, "method 'toy': hyper-parameter head_warmup_steps expects int (default 0), got 2.5"),
    ({"head_warmup_steps": -1}, "method 'toy': head_warmup_steps must be an integer >= 0, got -1"),
])
def test_bad_overrides_are_refused_with_the_name_the_type_and_the_default(overrides, message):
    with pytest.raises(UserError) as info:
        resolve_hparams(Toy, overrides)
    assert str(info.value) == message


class Scaled(Toy):
    name = "scaled"
    defaults = {**Toy.defaults, "lr_scaling": "sqrt"}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"lr_scaling": "cubic"}, "method 'scaled': lr_scaling must be one of linear, sqrt, got 'cubic'"),
    ({"warmup": 1.0}, "method 'scaled': warmup is a fraction of the run's steps in [0, 1), got 1.0"),
    ({"warmup": 1.5}, "method 'scaled': warmup is a fraction of the run's steps in [0, 1), got 1.5"),
    ({"warmup": -0.1}, "method 'scaled': warmup is a fraction of the run's steps in [0, 1), got -0.1"),
])
def test_the_lr_scaling_rule_and_the_warmup_fraction_are_checked(overrides, message):
    with pytest.raises(UserError) as info:
        resolve_hparams(Scaled, overrides)
    assert str(info.value) == message
    assert resolve_hparams(Scaled, {"lr_scaling": "linear", "warmup": 0.99})["warmup"] == 0.99


def test_weights_decay_biases_and_norms_do_not_and_frozen_parameters_are_left_out():
    method = Toy(TinyEncoder())
    groups = method.parameter_groups()
    assert [(g["name"], g.get("weight_decay")) for g in groups] == [("weights", None), ("bias_norm", 0.0)]
    names = {id(p): n for n, p in method.named_parameters()}
    weights = sorted(names[id(p)] for p in groups[0]["params"])
    no_decay = sorted(names[id(p)] for p in groups[1]["params"])
    assert weights == ["encoder.body.0.weight", "encoder.body.3.weight", "encoder.proj.weight", "head.0.weight",
                       "head.2.weight"]
    assert no_decay == ["encoder.body.0.bias", "encoder.body.1.bias", "encoder.body.1.weight", "encoder.body.3.bias",
                        "encoder.proj.bias", "head.0.bias", "head.1.bias", "head.1.weight", "head.2.bias"]


def test_fp32_loss_runs_the_criterion_in_float32_with_autocast_off():
    seen = []

    def criterion(*tensors):
        seen.append(([t.dtype for t in tensors], torch.is_autocast_enabled("cpu")))
        return sum((t @ t.T).sum() for t in tensors)

    a, b = torch.randn(3, 4), torch.randn(3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.is_autocast_enabled("cpu")
        loss = fp32_loss(criterion, a.bfloat16(), b.bfloat16())
        single = fp32_loss(criterion, a.bfloat16())
    assert seen == [([torch.float32, torch.float32], False), ([torch.float32], False)]
    assert loss.dtype == torch.float32 and single.dtype == torch.float32


@pytest.mark.parametrize("progress", [0.0, 0.25, 0.5, 0.9])
def test_the_momentum_follows_byols_cosine_from_its_base_to_one(progress):
    """τ = 1 − (1 − τ_base)(cos(π · progress) + 1)/2, applied as target ← τ · target + (1 − τ) · online."""

    class Pair(Toy):
        defaults = {**Toy.defaults, "momentum_base": 0.9}

        def momentum_pairs(self):
            return [(self.head, self.frozen_head)]

        def __init__(self, encoder, **hparams):
            super().__init__(encoder, **hparams)
            self.frozen_head = nn.Sequential(nn.Linear(encoder.feat_dim, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))

    method = Pair(TinyEncoder())
    with torch.no_grad():
        for p in method.head.parameters():
            p.fill_(1000.0)
        for p in method.frozen_head.parameters():
            p.zero_()
    method.update_momentum(progress)
    tau = 1 - 0.1 * (math.cos(math.pi * progress) + 1) / 2
    for p in method.frozen_head.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 1000.0 * (1 - tau)), rtol=1e-6, atol=1e-4)


def test_the_optimisers_options_are_taken_by_every_method_and_enter_a_run_only_when_given():
    """`lars_clip` (methods.base.OPTIMIZER_OPTIONS) is accepted without being declared, and absent from the
    resolved hyper-parameters unless given, so no existing run's config key changes; it reaches LARS."""
    from benchmark.pretrain.module import build_optimizer

    assert "lars_clip" not in resolve_hparams(Toy, {})
    assert resolve_hparams(Toy, {"lars_clip": False})["lars_clip"] is False
    method = Toy(TinyEncoder())
    for clip in (True, False):
        hp = resolve_hparams(Toy, {"optimizer": "lars", "lars_clip": clip})
        opt = build_optimizer(method, hp, global_batch=256)
        assert all(g["trust_clip"] is clip for g in opt.param_groups)
    default = build_optimizer(method, resolve_hparams(Toy, {"optimizer": "lars"}), global_batch=256)
    assert all(g["trust_clip"] is True for g in default.param_groups)


@pytest.mark.parametrize("dims, batch, warned", [
    ((2048, 2048), 64, True),     # 32 dimensions per sample: the cpu-v3 collapse
    ((256, 256), 64, False),      # 4 per sample, the paper's ratio
    ((512, 512), 64, False),      # 8 per sample, solo-learn's: the limit, not above it
    ((2048, 256), 64, True),      # the hidden layer counts too
    ((2048, 2048), 256, False),   # solo-learn's GPU recipe
    ((2048, 2048), 2 * 32, True),  # the global batch, over devices, is what the loss sees
])
def test_barlow_twins_warns_of_a_projector_too_wide_for_its_batch_and_says_the_fix(dims, batch, warned):
    from methods.registry import get_method

    bt = get_method("barlowtwins")(TinyEncoder(), proj_hidden_dim=dims[0], proj_output_dim=dims[1])
    got = bt.setting_warnings(batch)
    assert len(got) == int(warned)
    if warned:
        assert f"a {max(dims)}-d projector at a global batch of {batch}" in got[0]
        assert f"rank at most {batch - 1}" in got[0]
        assert got[0].endswith(f"--set proj_hidden_dim={4 * batch} --set proj_output_dim={4 * batch}")


def test_the_other_built_in_methods_warn_of_nothing_even_at_a_batch_of_two():
    from methods.registry import available_methods

    others = {n: c for n, c in available_methods().items() if n != "barlowtwins" and c.__module__.startswith("methods.")}
    assert len(others) == 6
    for name, cls in others.items():
        assert cls(TinyEncoder()).setting_warnings(2) == [], name


def test_a_hyper_parameter_declared_later_keeps_earlier_runs_keys_at_the_value_they_had():
    """`SSLMethod.defaults_since`: MoCo's `proj_batch_norm` (False before it existed) is left out of the
    config key at False, so MoCo's committed runs keep their keys; at True it is a new run."""
    import hashlib
    import json

    from benchmark.pretrain.config import ENGINE_VERSION, PretrainConfig
    from methods.registry import get_method

    assert get_method("moco").defaults_since == {"proj_batch_norm": False}
    default = PretrainConfig(method="moco", hparams={"lr": 1.2})
    assert default.resolved_hparams()["proj_batch_norm"] is False
    assert "proj_batch_norm" not in default.key_hparams()
    payload = {k: v for k, v in vars(default).items() if k != "compile"}
    hparams = {k: v for k, v in default.resolved_hparams().items() if k != "proj_batch_norm"}
    payload.update(hparams=hparams, data="d", engine=ENGINE_VERSION)
    assert default.key("d") == hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    with_bn = PretrainConfig(method="moco", hparams={"lr": 1.2, "proj_batch_norm": True})
    assert with_bn.key_hparams()["proj_batch_norm"] is True
    assert with_bn.key("d") != default.key("d")
