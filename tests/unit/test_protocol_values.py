"""Every range a protocol's settings must respect, checked on both sides of its boundary: a preset's
overrides go through the same checks as the file, so each case overrides one setting of the
shipped protocol and expects either a clear error naming the key, or a valid spec."""
from __future__ import annotations

import re

import pytest

from benchmark.errors import UserError
from protocols.spec import PROTOCOL_DIR, load_protocol, read_protocol_file

FRACTION = r"'fractions' must lie in \(0, 1\]"
REPEAT = r"'fractions' and 'seeds' must not repeat"
PROBE = r"'probe.l2_grid' must be >= 0, 'probe.max_iter' and 'features.batch_size' >= 1"
TRAIN = r"'train.lr' must be > 0, 'train.weight_decay' and 'train.warmup_epochs' >= 0"
SCALE = r"need 0 < 'augment.scale_min' <= 'augment.scale_max' <= 1"
LEVELS = r"needs at least 3 distinct levels in increasing order"
SUBSET = r"every level needs 1 <= subjects <= frames"

CASES = [
    # (protocol, overrides, error pattern or None when valid)
    ("linear_probe", {"fractions": [0.0, 0.5]}, FRACTION),
    ("linear_probe", {"fractions": [1.0]}, None),
    ("linear_probe", {"fractions": [1.01]}, FRACTION),
    ("linear_probe", {"fractions": [0.1, 0.1]}, REPEAT),
    ("linear_probe", {"seeds": [3, 3]}, REPEAT),
    ("linear_probe", {"seeds": [-1, 0]}, r"'seeds' must be >= 0"),
    ("linear_probe", {"seeds": [0]}, None),
    ("linear_probe", {"probe": {"select_metric": "auroc"}}, r"'select_metric' must be one of macro_f1"),
    ("linear_probe", {"probe": {"select_metric": "accuracy"}}, None),
    ("linear_probe", {"probe": {"l2_grid": [-1e-3, 0.1]}}, PROBE),
    ("linear_probe", {"probe": {"l2_grid": [0.0]}}, None),
    ("linear_probe", {"probe": {"max_iter": 0}}, PROBE),
    ("linear_probe", {"probe": {"max_iter": 1}}, None),
    ("linear_probe", {"features": {"batch_size": 0}}, PROBE),
    ("linear_probe", {"features": {"batch_size": 1}}, None),
    ("finetune", {"train": {"select_metric": "loss"}}, r"'select_metric' must be one of"),
    ("finetune", {"train": {"epochs": 0}}, r"key 'train.epochs' must be >= 1"),
    ("finetune", {"train": {"batch_size": 0}}, r"key 'train.batch_size' must be >= 1"),
    ("finetune", {"train": {"min_steps_per_epoch": 0}}, r"key 'train.min_steps_per_epoch' must be >= 1"),
    ("finetune", {"train": {"epochs": 1, "batch_size": 1, "min_steps_per_epoch": 1}}, None),
    ("finetune", {"train": {"lr": 0.0}}, TRAIN),
    ("finetune", {"train": {"weight_decay": -1e-6}}, TRAIN),
    ("finetune", {"train": {"warmup_epochs": -1}}, TRAIN),
    ("finetune", {"train": {"weight_decay": 0.0, "warmup_epochs": 0, "lr": 1e-9}}, None),
    ("finetune", {"augment": {"scale_min": 0.0}}, SCALE),
    ("finetune", {"augment": {"scale_min": 0.9, "scale_max": 0.8}}, SCALE),
    ("finetune", {"augment": {"scale_max": 1.01}}, SCALE),
    ("finetune", {"augment": {"scale_min": 1.0, "scale_max": 1.0}}, None),
    ("finetune", {"augment": {"hflip": 1.5}}, r"key 'augment.hflip' is a probability in \[0, 1\]"),
    ("finetune", {"augment": {"vflip": -0.1}}, r"key 'augment.vflip' is a probability in \[0, 1\]"),
    ("finetune", {"augment": {"hflip": 1.0, "vflip": 0.0}}, None),
    ("variance_vs_size", {"fraction": 0.0}, r"key 'fraction' must lie in \(0, 1\], got 0.0"),
    ("variance_vs_size", {"fraction": 1.01}, r"key 'fraction' must lie in \(0, 1\]"),
    ("variance_vs_size", {"fraction": 1.0}, None),
    ("variance_vs_size", {"seeds": [1, 1]}, r"key 'seeds' must be distinct integers >= 0"),
    ("variance_vs_size", {"seeds": [-1]}, r"key 'seeds' must be distinct integers >= 0"),
    ("variance_vs_size", {"seeds": [0]}, None),
    ("variance_vs_size", {"eval_protocols": ["linear_probe", "knn"]},
     r"key 'eval_protocols' must name protocols among linear_probe, finetune, got \['knn'\]"),
    ("variance_vs_size", {"eval_protocols": ["finetune"]}, None),
    ("variance_vs_size", {"pretrain_steps": 0}, r"'pretrain_steps' must be >= 1 and 'batch_size' >= 2"),
    ("variance_vs_size", {"batch_size": 1}, r"'pretrain_steps' must be >= 1 and 'batch_size' >= 2"),
    ("variance_vs_size", {"pretrain_steps": 1, "batch_size": 2}, None),
    ("variance_vs_size", {"diversity": {"subjects": [4, 8]}}, rf"key 'diversity.subjects' {LEVELS}"),
    ("variance_vs_size", {"diversity": {"subjects": [4, 4, 8]}}, rf"key 'diversity.subjects' {LEVELS}"),
    ("variance_vs_size", {"diversity": {"subjects": [8, 4, 16]}}, rf"key 'diversity.subjects' {LEVELS}"),
    ("variance_vs_size", {"size": {"frames": [96, 384]}}, rf"key 'size.frames' {LEVELS}"),
    ("variance_vs_size", {"size": {"frames": [384, 192, 96]}}, rf"key 'size.frames' {LEVELS}"),
    ("variance_vs_size", {"diversity": {"subjects": [0, 8, 16]}}, SUBSET),
    ("variance_vs_size", {"diversity": {"subjects": [4, 8, 16], "frames": 12}, "batch_size": 2},
     SUBSET + r", got 16 subjects for 12 frames"),
    ("variance_vs_size", {"diversity": {"subjects": [1, 2, 64], "frames": 64}, "batch_size": 64}, None),
    ("variance_vs_size", {"size": {"subjects": 4, "frames": [63, 96, 192]}, "batch_size": 64},
     r"a subset of 63 frames is smaller than 'batch_size' 64"),
    ("variance_vs_size", {"diversity": {"subjects": [4, 8, 16], "frames": 32}, "batch_size": 33},
     r"a subset of 32 frames is smaller than 'batch_size' 33"),
]


@pytest.mark.parametrize(("name", "overrides", "error"), CASES,
                         ids=[f"{n}-{sorted(o)[0]}-{i}" for i, (n, o, _) in enumerate(CASES)])
def test_each_setting_is_checked_at_its_boundary(name, overrides, error):
    if error is None:
        spec = load_protocol(name, overrides)
        for key, value in overrides.items():
            got = spec.settings[key]
            assert got == ({**got, **value} if isinstance(value, dict) else value)
        return
    with pytest.raises(UserError, match=error) as info:
        load_protocol(name, overrides)
    assert f"{name}.toml (with overrides" in str(info.value)


@pytest.mark.parametrize(("version", "ok"), [(0, False), (-3, False), (1, True), (7, True)])
@pytest.mark.parametrize("name", ["linear_probe", "variance_vs_size"])
def test_the_version_is_at_least_one(tmp_path, name, version, ok):
    text = re.sub(r"(?m)^version = \d+", f"version = {version}", (PROTOCOL_DIR / f"{name}.toml").read_text())
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    if ok:
        assert read_protocol_file(path)["version"] == version
    else:
        with pytest.raises(UserError, match=rf"{re.escape(str(path))}: key 'version' must be >= 1"):
            read_protocol_file(path)


def test_settings_are_a_copy_of_the_overrides_not_an_alias():
    spec = load_protocol("linear_probe", {"seeds": [0, 1], "probe": {"l2_grid": [0.1]}})
    spec.settings["seeds"].append(2)
    spec.settings["probe"]["l2_grid"].append(1.0)
    assert spec.overrides == {"seeds": [0, 1], "probe": {"l2_grid": [0.1]}}  # what the job key records
